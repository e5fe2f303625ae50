"""Worker stages that need no LLM: preprocessing, work time, context fitting and citations."""
from __future__ import annotations

import datetime

import pytest

from huixiangdou.config import WorkTimeConfig
from huixiangdou.service.worker.extract import Extract
from huixiangdou.service.worker.generate import fit_context, format_context
from huixiangdou.service.worker.intention import parse_intention
from huixiangdou.service.worker.preprocess import Preprocess
from huixiangdou.service.worker.session import ErrorCode, Passage, Session
from huixiangdou.service.worker.work_time import WorkTime


@pytest.mark.parametrize('text', [
    # Mentions were removed by the frontend from the platform's data: every "@" left is the user's.
    'git clone git@github.com:org/repo 报错 Permission denied (publickey) 怎么办',
    '加了 @torch.compile 以后第一次调用很慢，正常吗？',
    '邮件发到 admin@example.com 还是提 issue？',
    '@bot how do I rebuild the index?',
    '点击「设置」以后在哪里填 webhook？',
    '「李四: 端口被占用」\n怎么改端口',                    # looked like a WeChat quote to the old regex
    '「报错：ModuleNotFoundError」这个怎么解决',
    '>>> import faiss\nModuleNotFoundError: No module named faiss 怎么办',  # a pasted REPL line
    '> npm i 以后报错 https://example.com/a:b 怎么处理',
])
async def test_the_users_own_text_survives_preprocessing(text):
    # Quoted messages come as Session.quote and mentions are the frontend's job: the text is the user's own.
    session = Session(query=text)
    await Preprocess().run(session)
    assert session.code is None
    assert session.query == session.text == text


@pytest.mark.parametrize('text,code', [
    ('[图片]', ErrorCode.NOT_A_QUESTION),
    ('https://example.com/a.png', ErrorCode.NOT_A_QUESTION),
    ('👍👍', ErrorCode.NOT_A_QUESTION),
    ('[捂脸][捂脸]', ErrorCode.NOT_A_QUESTION),
    ('好的', ErrorCode.QUESTION_TOO_SHORT),
    ('ok', ErrorCode.QUESTION_TOO_SHORT),
    ('怎么重建索引？', None),
    ('How do I set the webhook secret?', None),
])
async def test_preprocess_codes(text, code):
    session = Session(query=text)
    await Preprocess(min_query_length=4).run(session)
    assert session.code == code


async def test_preprocess_detects_language():
    zh, en = Session(query='请问怎么配置飞书？'), Session(query='How to configure Lark?')
    stage = Preprocess()
    await stage.run(zh)
    await stage.run(en)
    assert (zh.language, en.language) == ('zh', 'en')


@pytest.mark.parametrize('now,silent', [
    (datetime.datetime(2026, 11, 24, 10, 0), False),   # Tuesday morning
    (datetime.datetime(2026, 11, 24, 23, 0), True),    # Tuesday night
    (datetime.datetime(2026, 11, 28, 10, 0), True),    # Saturday
])
async def test_work_time(now, silent):
    stage = WorkTime(WorkTimeConfig(enable=1, start='08:00:00', end='22:00:00', has_weekday=1), now=lambda: now)
    session = Session(query='怎么重建索引？')
    await stage.run(session)
    assert (session.code == ErrorCode.NOT_WORK_TIME) == silent


def test_context_is_trimmed_to_budget_and_numbered():
    passages = [Passage('a' * 300, 'x.md#A'), Passage('b' * 300, 'y.md'), Passage('c' * 300, 'z.md')]
    kept = fit_context(passages, 500)
    assert sum(len(p.text) for p in kept) <= 501 and len(kept) == 2
    assert format_context(kept).startswith('[1] aaa') and '[2] bbb' in format_context(kept)


def test_intention_verdict_parsing():
    assert parse_intention('sure: {"is_question": false, "kind": "greeting"} ok')['kind'] == 'greeting'
    assert parse_intention('no json at all') == {}


def test_retrieval_puts_the_page_in_the_questions_language_first_among_near_equals():
    from huixiangdou.primitive.chunk import Chunk
    from huixiangdou.service.feature_store.store import ScoredChunk
    from huixiangdou.primitive.page_language import path_language
    from huixiangdou.service.worker.retrieve import prefer_language

    assert [path_language(p) for p in ('mmpose/docs/zh_cn/faq.md', 'lmdeploy/docs/en/faq.md', 'README_zh-CN.md',
                                       'zh/特征库.md', 'README.md', 'docs/encoding.md')] == ['zh', 'en', 'zh', 'zh', '', '']
    found = [ScoredChunk(Chunk('FAQ in English', 'p/docs/en/faq.md'), 0, fused=1.0),
             ScoredChunk(Chunk('同一页的中文版', 'p/docs/zh_cn/faq.md'), 1, fused=0.9),
             ScoredChunk(Chunk('其他页面', 'p/docs/zh_cn/other.md'), 2, fused=0.5)]
    assert [s.row for s in prefer_language(found, 'zh', 1.3)] == [1, 0, 2]
    assert [s.row for s in prefer_language(found, 'en', 1.3)] == [0, 1, 2]
    assert [s.row for s in prefer_language(found, 'zh', 1.0)] == [0, 1, 2]


def test_names_no_document_uses_are_found_and_colloquial_words_are_not(sample_feature_store):
    from huixiangdou.service.feature_store.query_features import query_tokens
    from huixiangdou.service.worker.retrieve import unmentioned

    knows = sample_feature_store.sparse.knows
    for query, language, expected in (('飞书机器人能接 Slack 和 telegram 吗', 'zh', ['Slack', 'telegram']),
                                      ('能接入钉钉群吗', 'zh', ['钉钉']),
                                      ('Can it answer in a Slack channel?', 'en', ['Slack']),
                                      # colloquial words, numbers and identifiers the documents happen not to use
                                      ('装完 咋办，报 E4711 per-class 错误', 'zh', []),
                                      ('报错：ConnectionError: https://open.feishu.cn/x:443 连不上', 'zh', []),
                                      ('怎么配置飞书 webhook', 'zh', []),
                                      # lowercase English words and a sentence's first word are not names
                                      ('Which class answers the slack questions? Chatty bots annoy.', 'en', [])):
        assert unmentioned(query_tokens(query), knows, query, language) == expected, query


async def test_retrieval_tells_the_answer_what_the_documents_never_mention(sample_feature_store):
    from huixiangdou.service.worker.retrieve import Retrieve

    session = Session(query='茴香豆能接 Slack 吗？')
    session.language = 'zh'
    await Retrieve(sample_feature_store).run(session)
    assert session.unmentioned == ['Slack'] and session.passages
    answer = Extract().answer(session.query, session.passages, language='zh', unmentioned=session.unmentioned)
    lines = answer.text.splitlines()
    assert lines[0] == '文档里没有提到 Slack，最接近的内容是：' and lines[1].startswith('> ')
    english = Extract().answer('Can it answer in Slack?', session.passages, language='en', unmentioned=['Slack'])
    assert english.text.splitlines()[0] == 'The documents do not mention Slack; the closest they come:'
