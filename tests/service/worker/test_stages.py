"""Worker stages that need no LLM: preprocessing, work time, context fitting and citations."""
from __future__ import annotations

import datetime

import pytest

from huixiangdou.config import WorkTimeConfig
from huixiangdou.service.worker.generate import cited_references, fit_context, format_context
from huixiangdou.service.worker.intention import parse_intention
from huixiangdou.service.worker.preprocess import Preprocess, clean_query
from huixiangdou.service.worker.session import ErrorCode, Passage, Session
from huixiangdou.service.worker.work_time import WorkTime


def test_mentions_are_stripped():
    assert clean_query('@茴香豆\u2005怎么重建索引？') == '怎么重建索引？'
    assert clean_query('@bot how do I rebuild the index?') == 'how do I rebuild the index?'


@pytest.mark.parametrize('text', [
    '点击「设置」以后在哪里填 webhook？',
    '「李四: 端口被占用」\n怎么改端口',                    # looked like a WeChat quote to the old regex
    '「报错：ModuleNotFoundError」这个怎么解决',
    '>>> import faiss\nModuleNotFoundError: No module named faiss 怎么办',  # a pasted REPL line
    '> npm i 以后报错 https://example.com/a:b 怎么处理',
])
def test_the_users_own_quote_marks_survive(text):
    # Quoted messages come as Session.quote; whatever is in the text is the user's own words.
    assert clean_query(text) == text


@pytest.mark.parametrize('text,code', [
    ('[图片]', ErrorCode.NOT_A_QUESTION),
    ('https://example.com/a.png', ErrorCode.NOT_A_QUESTION),
    ('👍👍', ErrorCode.NOT_A_QUESTION),
    ('[捂脸][捂脸]', ErrorCode.NOT_A_QUESTION),
    ('@茴香豆 好', ErrorCode.QUESTION_TOO_SHORT),
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


def test_references_follow_citations_or_fall_back_to_context():
    passages = [Passage('t1', 'a.md'), Passage('t2', 'b.md#Install'), Passage('t3', 'a.md')]
    assert cited_references('See [2] and [9].', passages) == ['b.md#Install']
    assert cited_references('No citation here.', passages) == ['a.md', 'b.md#Install']


def test_intention_verdict_parsing():
    assert parse_intention('sure: {"is_question": false, "kind": "greeting"} ok')['kind'] == 'greeting'
    assert parse_intention('no json at all') == {}
