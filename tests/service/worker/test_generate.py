"""The Generate stage with the real sample store, the real LLM server app on loopback and the fake
OpenAI upstream behind it: answer modes, the fallback from a degenerate answer to quoted sentences,
and run and stream ending in the same state. The last test uses the bundled local model for real."""
from __future__ import annotations

import pytest

from huixiangdou.config import LLMConfig, LLMServerConfig
from huixiangdou.service.llm_client import LLMClient
from huixiangdou.service.worker.degenerate import detect_degeneration
from huixiangdou.service.worker.generate import Generate
from huixiangdou.service.worker.prompts import prompt
from huixiangdou.service.worker.session import ErrorCode, Passage, Session

QUERY_ZH = 'chunk_size 默认是多少？'
QUERY_EN = 'Which port does the hybrid LLM server listen on?'
LOOP = '# # 1. # # 2. # # 3. # # 4. # # 5. # # 6. # # 7. # # 8. # # 9. # # 10. # # 11. # # 12.'


def chat_requests(fake):
    return [r for r in fake.requests if r.path == '/v1/chat/completions']


def retrieved(store, query: str, language: str) -> Session:
    session = Session(query=query, language=language)
    session.passages = [Passage(s.chunk.text, s.chunk.reference, s.fused, s.cosine) for s in store.search(query, k=5)]
    return session


def final_state(session: Session) -> tuple:
    return session.code, session.reply, session.references, session.debug.get('generate')


async def test_a_good_answer_is_kept_with_the_passages_it_cites(sample_feature_store, llm, fake_openai):
    fake_openai.responder = lambda messages: 'chunk_size 默认是 256 个 token [2]。'
    session = retrieved(sample_feature_store, QUERY_ZH, 'zh')
    await Generate(llm, embedder=sample_feature_store.embedder).run(session)
    # The second passage is the only source cited: the reader sees it as [1], the first reference.
    assert session.code is None and session.reply == 'chunk_size 默认是 256 个 token [1]。'
    assert session.references == [session.passages[1].reference]
    assert 'fallback' not in session.debug['generate']


@pytest.mark.parametrize('bad,reason', [(LOOP, 'loop'), ('', 'empty'), (None, 'scaffold')],
                         ids=['loop', 'empty', 'prompt-echo'])
async def test_auto_quotes_the_passages_instead_of_a_degenerate_answer(sample_feature_store, llm, fake_openai,
                                                                        bad, reason):
    if bad is not None:   # None: the fake's default, which echoes the prompt back
        fake_openai.responder = lambda messages: bad
    session = retrieved(sample_feature_store, QUERY_ZH, 'zh')
    await Generate(llm, answer_mode='auto', embedder=sample_feature_store.embedder).run(session)
    assert session.code is None, session.debug
    assert session.debug['generate']['fallback'] == 'extract' and session.debug['generate']['reason'] == reason
    assert '256' in session.reply and LOOP[:9] not in session.reply
    assert all(line.startswith('> ') for line in session.reply.splitlines())
    assert set(session.references) <= {p.reference for p in session.passages}
    assert detect_degeneration(session.reply) is None


async def test_generate_mode_stays_silent_on_a_degenerate_answer(sample_feature_store, llm, fake_openai):
    fake_openai.responder = lambda messages: LOOP
    session = retrieved(sample_feature_store, QUERY_ZH, 'zh')
    await Generate(llm, answer_mode='generate').run(session)
    assert session.code == ErrorCode.BAD_ANSWER and not session.code.should_reply
    assert session.debug['generate']['degenerate'].startswith('loop')


async def test_extract_mode_never_calls_the_llm(sample_feature_store, llm, fake_openai):
    session = retrieved(sample_feature_store, QUERY_EN, 'en')
    pieces = [p async for p in Generate(llm, answer_mode='extract', embedder=sample_feature_store.embedder)
              .stream(session)]
    assert chat_requests(fake_openai) == []
    assert pieces == [session.reply] and '8888' in session.reply
    assert session.debug['generate']['mode'] == 'extract' and session.references


async def test_auto_without_a_capable_model_quotes_without_asking_the_llm(sample_feature_store, llm, fake_openai):
    session = retrieved(sample_feature_store, QUERY_EN, 'en')
    await Generate(llm, answer_mode='auto', embedder=sample_feature_store.embedder, capable_llm=False).run(session)
    assert chat_requests(fake_openai) == []
    assert '8888' in session.reply and session.references
    assert session.debug['generate'] | {'quoted': None} == {'mode': 'auto', 'fallback': 'extract',
                                                          'reason': 'no capable model', 'quoted': None}


def test_only_the_bundled_model_counts_as_not_capable(tmp_path):
    from huixiangdou.service.worker.pipeline import has_capable_llm
    from tests.conftest import write_config
    from huixiangdou.config import load_config
    assert not has_capable_llm(load_config(write_config(tmp_path / 'a.ini')))
    assert has_capable_llm(load_config(write_config(tmp_path / 'b.ini', llm={'enable_remote': 1})))
    assert has_capable_llm(load_config(write_config(tmp_path / 'c.ini', **{'llm.server': {'local_llm_path': 'x.gguf'}})))


async def test_an_answer_cut_at_the_token_limit_is_not_posted(sample_feature_store, fake_openai):
    """The upstream stops at max_tokens mid-sentence (finish_reason "length"): auto quotes instead."""
    from tests.conftest import llm_client_for

    fake_openai.responder = lambda messages: ('The LLM server listens on port 8888 by default and you can '
                                              'change it in config.ini under the llm server section.')
    session = retrieved(sample_feature_store, QUERY_EN, 'en')
    async with llm_client_for(fake_openai, remote_max_new_tokens=40) as client:
        await Generate(client, embedder=sample_feature_store.embedder).run(session)
    debug = session.debug['generate']
    assert debug['finish_reason'] == 'length' and debug['reason'] == 'cut'
    assert debug['fallback'] == 'extract' and session.reply.startswith('> ') and '8888' in session.reply


async def test_an_llm_failure_stays_an_llm_error(sample_feature_store, llm, fake_openai):
    fake_openai.fail('500')
    session = retrieved(sample_feature_store, QUERY_ZH, 'zh')
    await Generate(llm, answer_mode='auto').run(session)
    assert session.code == ErrorCode.LLM_ERROR and not session.reply


@pytest.mark.parametrize('answer', ['chunk_size 默认是 256 [1]。', LOOP], ids=['good', 'loop'])
async def test_run_and_stream_end_in_the_same_state(sample_feature_store, llm, fake_openai, answer):
    fake_openai.responder = lambda messages: answer
    stage = Generate(llm, embedder=sample_feature_store.embedder)
    by_run = retrieved(sample_feature_store, QUERY_ZH, 'zh')
    await stage.run(by_run)
    by_stream = retrieved(sample_feature_store, QUERY_ZH, 'zh')
    pieces = [p async for p in stage.stream(by_stream)]
    assert final_state(by_stream) == final_state(by_run)
    assert ''.join(pieces).strip() == answer.strip()   # what was streamed is what the model said


async def test_a_loop_stops_the_stream_early(sample_feature_store, llm, fake_openai):
    fake_openai.responder = lambda messages: 'Answer: ' + 'again and again, ' * 200
    session = retrieved(sample_feature_store, QUERY_EN, 'en')
    pieces = [p async for p in Generate(llm).stream(session)]
    assert len(pieces) < 100 and session.debug['generate']['stopped_early'] == len(pieces)
    assert session.debug['generate']['reason'] == 'loop' and '8888' in session.reply


async def test_the_prompt_carries_the_system_message_question_and_passages_without_paths(
        sample_feature_store, llm, fake_openai):
    fake_openai.responder = lambda messages: 'It listens on 8888 [1].'
    session = retrieved(sample_feature_store, QUERY_EN, 'en')
    session.group_introduction = 'HuixiangDou users'
    await Generate(llm).run(session)
    messages = chat_requests(fake_openai)[-1].body['messages']
    sent = '\n'.join(m['content'] for m in messages)
    assert prompt('en', 'system') in sent and QUERY_EN in sent and 'HuixiangDou users' in sent
    assert '[1]' in messages[-1]['content'] and session.passages[0].reference not in sent
    assert messages[0] == {'role': 'system', 'content': prompt('en', 'system')}  # a real system message


def test_the_quoted_message_and_group_introduction_reach_the_prompt():
    session = Session(query='这个怎么解决？', language='zh', quote='ModuleNotFoundError: No module named tomllib',
                      group_introduction='茴香豆安装与使用', passages=[Passage('需要 Python 3.11。', 'install.md')])
    request = Generate(None).build_prompt(session)
    assert request.user.startswith('本群主题：茴香豆安装与使用\n用户引用的消息：ModuleNotFoundError')
    assert '[1] 需要 Python 3.11。' in request.user and 'install.md' not in request.user
    assert request.system == prompt('zh', 'system') and request.passages[0].reference == 'install.md'


def test_a_name_no_document_uses_is_named_in_the_prompt():
    session = Session(query='茴香豆能接入钉钉群吗', language='zh', unmentioned=['钉钉'],
                      passages=[Passage('支持飞书和微信。', 'frontends.md')])
    request = Generate(None).build_prompt(session)
    assert request.user.startswith('注意：资料里没有提到 钉钉；') and '[1] 支持飞书和微信。' in request.user
    english = Session(query='Can it answer in a Slack channel?', language='en', unmentioned=['Slack'],
                      passages=[Passage('Lark and WeChat are supported.', 'frontends.md')])
    assert Generate(None).build_prompt(english).user.startswith('Note: the material does not mention Slack;')
    plain = Session(query='支持飞书吗', language='zh', passages=[Passage('支持飞书和微信。', 'frontends.md')])
    assert '没有提到' not in Generate(None).build_prompt(plain).user


def test_settings_are_validated():
    with pytest.raises(ValueError, match='answer_mode'):
        Generate(None, answer_mode='guess')
    with pytest.raises(ValueError, match='context_max_length'):
        Generate(None, context_max_length=10)


@pytest.mark.slow
async def test_the_bundled_model_never_posts_a_degenerate_answer(sample_feature_store):
    """SmolLM2-135M for real: whatever it writes, the reply is a clean answer or quoted passages."""
    from tests.service.test_llm_server import serve
    from huixiangdou.service.llm.local_transformers import LocalTransformersBackend
    from huixiangdou.service.llm.router import Router
    from huixiangdou.service.llm_server_hybrid import create_app

    backend = LocalTransformersBackend(LLMServerConfig(local_llm_max_new_tokens=96))
    backend.warm_up()
    async with serve(create_app(LLMConfig(), Router({'local': backend}))) as url:
        client = LLMClient(LLMConfig(client_url=f'{url}/inference', client_timeout=240.0))
        try:
            for query, language, fact in [(QUERY_ZH, 'zh', '256'), (QUERY_EN, 'en', '8888')]:
                session = retrieved(sample_feature_store, query, language)
                await Generate(client, embedder=sample_feature_store.embedder).run(session)
                assert session.code is None, session.debug
                assert detect_degeneration(session.reply) is None, session.reply
                assert fact in session.reply or session.debug['generate'].get('fallback'), session.reply
        finally:
            await client.close()
            await backend.close()
