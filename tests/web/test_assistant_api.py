"""The assistant as an OpenAI-compatible API, driven by the official openai SDK: an on-topic question is
answered with citations and references, chatter gets an empty answer and the reason, streamed or not."""
from __future__ import annotations

import openai
import pytest

from tests.web.conftest import CHATTER, ON_TOPIC

ANSWER = '在 config.ini 的 [frontend.lark_group] 段填写 encrypt_key 和 verification_token [1]。'


@pytest.fixture
def client(web_server):
    web_server.fake.responder = lambda messages: ANSWER
    with openai.OpenAI(base_url=f'{web_server.base_url}/v1', api_key='unused', max_retries=0) as sdk:
        yield sdk


def test_models_lists_the_assistant(client):
    assert [m.id for m in client.models.list()] == ['huixiangdou']


def test_an_on_topic_question_is_answered_with_references(client, web_server):
    completion = client.chat.completions.create(model='huixiangdou', messages=[
        {'role': 'system', 'content': 'ignored: the assistant has its own prompt'},
        {'role': 'user', 'content': '你好'}, {'role': 'assistant', 'content': '你好！'},
        {'role': 'user', 'content': ON_TOPIC}])
    choice = completion.choices[0]
    assert choice.message.content == ANSWER and choice.finish_reason == 'stop'
    extra = completion.model_extra['huixiangdou']
    assert extra['code'] == 'SUCCESS' and extra['outcome'] == 'answered'
    assert extra['references'] and all(isinstance(r, str) for r in extra['references'])
    # The earlier turns reached the LLM as history, the last user message as the question.
    sent = web_server.fake.requests[-1].body['messages']
    assert {'role': 'user', 'content': '你好'} in sent and ON_TOPIC in sent[-1]['content']


def test_chatter_gets_an_empty_answer_and_the_reason(client):
    completion = client.chat.completions.create(model='huixiangdou',
                                                messages=[{'role': 'user', 'content': CHATTER}])
    assert completion.choices[0].message.content == '' and completion.choices[0].finish_reason == 'stop'
    extra = completion.model_extra['huixiangdou']
    assert extra['outcome'] == 'ignored' and extra['code'] == 'UNRELATED' and extra['references'] == []
    assert 'not about the documents' in extra['reason']


def test_streaming_sends_the_answer_in_pieces_and_the_outcome_on_the_last_chunk(client):
    chunks = list(client.chat.completions.create(model='huixiangdou', stream=True,
                                                 messages=[{'role': 'user', 'content': ON_TOPIC}]))
    text = ''.join(c.choices[0].delta.content or '' for c in chunks)
    assert text == ANSWER and len([c for c in chunks if c.choices[0].delta.content]) > 1
    last = chunks[-1]
    assert last.choices[0].finish_reason == 'stop'
    assert last.model_extra['huixiangdou']['outcome'] == 'answered' and last.model_extra['huixiangdou']['references']
    assert all('huixiangdou' not in c.model_extra for c in chunks[:-1])

    chatter = list(client.chat.completions.create(model='huixiangdou', stream=True,
                                                  messages=[{'role': 'user', 'content': CHATTER}]))
    assert ''.join(c.choices[0].delta.content or '' for c in chatter) == ''
    assert chatter[-1].choices[0].finish_reason == 'stop'
    assert chatter[-1].model_extra['huixiangdou']['outcome'] == 'ignored'


async def test_the_async_client_works_too(web_server):
    web_server.fake.responder = lambda messages: ANSWER
    async with openai.AsyncOpenAI(base_url=f'{web_server.base_url}/v1', api_key='unused', max_retries=0) as sdk:
        completion = await sdk.chat.completions.create(model='huixiangdou',
                                                       messages=[{'role': 'user', 'content': ON_TOPIC}])
    assert completion.choices[0].message.content == ANSWER


def test_other_models_and_bad_requests_are_refused_in_the_openai_error_format(client):
    with pytest.raises(openai.NotFoundError, match='huixiangdou'):
        client.chat.completions.create(model='gpt-4o', messages=[{'role': 'user', 'content': ON_TOPIC}])
    with pytest.raises(openai.BadRequestError, match='no user message'):
        client.chat.completions.create(model='huixiangdou', messages=[{'role': 'system', 'content': 'hi'}])
