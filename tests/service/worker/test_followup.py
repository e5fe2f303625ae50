"""Follow-ups in context through the real Worker on the sample store: a reply that asks about its quote is
answered with the quote as context; thanks, jokes, "+1", a new subject, or a follow-up to chatter stay silent."""
from __future__ import annotations

import json

import pytest

from huixiangdou.config import WorkerConfig
from huixiangdou.service.feature_store import FeatureStore
from huixiangdou.service.worker.followup import FollowUp, ReplyKind, reply_kind
from huixiangdou.service.worker.pipeline import Worker
from huixiangdou.service.worker.session import ErrorCode, Session

ERROR = '报错：ConnectionError: https://open.feishu.cn/open-apis/bot/v2/hook/abc:443 连不上'
CHATTER = '周末有人一起去爬山吗？天气预报说不下雨'
QUESTION = '飞书群应用的加密密钥在哪里配置？'
ANSWER = '在 config.ini 的 [frontend.lark_group] 段填写 encrypt_key 和 verification_token，然后重启服务 [1]'


@pytest.fixture(scope='module')
def store(sample_store, embedder):
    return FeatureStore.load(sample_store[0], embedder)


def chat_requests(fake):
    return [r for r in fake.requests if r.path == '/v1/chat/completions']


def lark_passage(session: Session) -> bool:
    return any('飞书' in p.reference or 'lark' in p.reference.lower() for p in session.passages[:2])


@pytest.mark.parametrize('reply', ['这个怎么解决？', '同问', '为啥', '还是不行'])
async def test_a_follow_up_under_an_on_topic_quote_is_answered_with_the_quote(store, llm, fake_openai, tmp_path,
                                                                             reply):
    fake_openai.responder = lambda messages: '检查 webhook 地址和网络 [1]'
    log = tmp_path / 'work.txt'
    session = await Worker(WorkerConfig(), store, llm, log_path=log).run(Session(query=reply, quote=ERROR))
    assert session.code == ErrorCode.SUCCESS, session.debug
    assert session.debug['follow_up'] == {'reply': 'asking', 'quote_from': 'user', 'context': 'quote'}
    assert session.query == reply and session.context == ERROR
    assert session.features.text == f'{reply}\n{ERROR}'   # reject and retrieval read the reply and its quote
    assert lark_passage(session), session.debug['retrieve']
    prompt = chat_requests(fake_openai)[-1].body['messages'][-1]['content']
    assert ERROR in prompt and reply in prompt
    record = json.loads(log.read_text(encoding='utf-8'))
    assert record['follow_up']['context'] == 'quote' and record['query'] == reply


async def test_the_quoted_answer_picks_its_sentences_with_the_quote(store, llm):
    session = await Worker(WorkerConfig(answer_mode='extract'), store, llm).run(
        Session(query='这个怎么解决？', quote=ERROR))
    assert session.code == ErrorCode.SUCCESS, session.debug
    assert lark_passage(session) and session.reply.startswith('>')


@pytest.mark.parametrize('reply', ['谢谢，学到了', '+1', '哈哈哈哈哈哈', '好的收到，我试试', '👍', '中午吃什么好呢？'])
@pytest.mark.parametrize('quote,from_bot', [(ERROR, False), (ANSWER, True)])
async def test_thanks_jokes_and_new_subjects_under_an_on_topic_quote_stay_silent(store, llm, fake_openai, reply,
                                                                                 quote, from_bot):
    session = await Worker(WorkerConfig(), store, llm).run(Session(query=reply, quote=quote, quote_from_bot=from_bot))
    assert not session.code.should_reply, session.debug
    assert session.context == '' and session.text == reply   # judged alone, as before follow-ups
    assert chat_requests(fake_openai) == []


async def test_a_thank_you_to_the_bots_answer_found_in_the_history_stays_silent(store, llm, fake_openai):
    # The motivating case: judged with the bot's answer, a thank-you scores 0.99 (docs/worker.md).
    session = Session(query='谢谢，学到了', quote=ANSWER, history=[(QUESTION, ANSWER)])
    session = await Worker(WorkerConfig(), store, llm).run(session)
    assert session.code == ErrorCode.UNRELATED
    assert session.debug['follow_up'] == {'reply': 'acknowledging', 'quote_from': 'bot'}
    assert chat_requests(fake_openai) == []


async def test_a_follow_up_to_the_bots_answer_is_judged_with_the_question_it_answered(store, llm, fake_openai):
    fake_openai.responder = lambda messages: '确认 encrypt_key 与开放平台一致 [1]'
    # WeChat quotes the posted text: the answer with its references under it.
    quote = f'{ANSWER}\n\n[1] zh/飞书接入.md'
    session = Session(query='还是不行，怎么办？', quote=quote, history=[('今天天气如何', '晴'), (QUESTION, ANSWER)])
    session = await Worker(WorkerConfig(), store, llm).run(session)
    assert session.code == ErrorCode.SUCCESS, session.debug
    assert session.debug['follow_up']['context'] == 'bot_question' and session.context == QUESTION
    assert lark_passage(session), session.debug['retrieve']
    # Without the history the frontend's field says it; the answer's text is then the context.
    session = await Worker(WorkerConfig(), store, llm).run(
        Session(query='还是不行，怎么办？', quote=ANSWER, quote_from_bot=True))
    assert session.code == ErrorCode.SUCCESS and session.context == ANSWER


@pytest.mark.parametrize('reply', ['这个怎么解决？', '同问', '为啥', '然后呢'])
async def test_a_follow_up_under_a_chatter_quote_stays_silent(store, llm, fake_openai, reply):
    session = await Worker(WorkerConfig(), store, llm).run(Session(query=reply, quote=CHATTER))
    assert session.code == ErrorCode.UNRELATED and session.context == CHATTER
    assert chat_requests(fake_openai) == []


async def test_a_question_of_its_own_under_chatter_is_still_answered(store, llm, fake_openai):
    fake_openai.responder = lambda messages: '在 [frontend.lark_group] 段填写 encrypt_key [1]'
    query = '飞书群应用的 encrypt_key 加密密钥应该在 config.ini 哪里配置？'
    session = await Worker(WorkerConfig(), store, llm).run(Session(query=query, quote=CHATTER))
    assert session.code == ErrorCode.SUCCESS, session.debug


async def test_a_quote_costs_no_extra_embedding_and_no_quote_changes_nothing(store, llm, fake_openai, monkeypatch):
    fake_openai.responder = lambda messages: '检查网络 [1]'
    calls = []
    featurize = store.featurize
    monkeypatch.setattr(store, 'featurize', lambda texts: calls.append(list(texts)) or featurize(texts))
    worker = Worker(WorkerConfig(), store, llm)
    await worker.run(Session(query='这个怎么解决？', quote=ERROR))
    plain = await worker.run(Session(query=QUESTION))
    assert calls == [[f'这个怎么解决？\n{ERROR}'], [QUESTION]]
    assert 'follow_up' not in plain.debug['ms'] and plain.context == '' and plain.text == QUESTION


@pytest.mark.parametrize('reply,kind', [
    ('同问', ReplyKind.ASKING), ('为啥', ReplyKind.ASKING), ('然后呢', ReplyKind.ASKING), ('还是不行', ReplyKind.ASKING),
    ('what about windows?', ReplyKind.ASKING), ('谢谢，那 windows 上呢？', ReplyKind.ASKING),
    ('谢谢', ReplyKind.ACKNOWLEDGING), ('+1', ReplyKind.ACKNOWLEDGING), ('哈哈哈', ReplyKind.ACKNOWLEDGING),
    ('学到了', ReplyKind.ACKNOWLEDGING), ('🙏', ReplyKind.ACKNOWLEDGING), ('This is great', ReplyKind.ACKNOWLEDGING),
    ('我晚点再看', ReplyKind.OTHER)])
def test_reply_kind(reply, kind):
    assert reply_kind(reply) is kind


def test_context_chars_is_validated():
    with pytest.raises(ValueError, match='context_chars'):
        FollowUp(context_chars=10)
