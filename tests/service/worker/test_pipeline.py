"""The worker end to end on the sample knowledge base: real store, real LLM server app on loopback,
the fake OpenAI-compatible upstream behind it; plus the optional stages one by one."""
from __future__ import annotations

import pytest

from huixiangdou.config import WebSearchConfig, WorkerConfig
from huixiangdou.service.feature_store import FeatureStore
from huixiangdou.service.reranker import Reranker
from huixiangdou.service.web_search import WebSearch
from huixiangdou.service.worker.online_search import OnlineSearch
from huixiangdou.service.worker.pipeline import Worker
from huixiangdou.service.worker.session import ErrorCode, Passage, Session
from tests.fakes.fake_openai import overlap_score
from tests.fakes.fake_serper import FakeWeb

ON_TOPIC = '飞书群应用的 encrypt_key 加密密钥应该在 config.ini 哪里配置？'
CHATTER = '周末有人一起去爬山吗？天气预报说不下雨'


@pytest.fixture(scope='module')
def store(sample_store, embedder):
    work_dir, _ = sample_store
    return FeatureStore.load(work_dir, embedder)


def chat_requests(fake):
    return [r for r in fake.requests if r.path == '/v1/chat/completions']


async def test_chatter_is_rejected_without_calling_the_llm(store, llm, fake_openai):
    session = await Worker(WorkerConfig(), store, llm).run(Session(query=CHATTER))
    assert session.code == ErrorCode.UNRELATED and not session.code.should_reply
    assert session.debug['reject']['reject_score'] < session.debug['reject']['threshold']
    assert chat_requests(fake_openai) == []


async def test_on_topic_question_is_answered_with_a_citation(store, llm, fake_openai):
    fake_openai.responder = lambda messages: '在 [frontend.lark_group] 段填写 encrypt_key [1]。'
    session = await Worker(WorkerConfig(), store, llm).run(Session(query=ON_TOPIC))
    assert session.code == ErrorCode.SUCCESS, session.debug
    assert session.reply.startswith('在 [frontend.lark_group]')
    assert session.references == [session.passages[0].reference]
    assert '飞书' in session.references[0] or 'lark' in session.references[0].lower()
    prompt = chat_requests(fake_openai)[-1].body['messages'][-1]['content']
    assert '[1]' in prompt and ON_TOPIC in prompt


async def test_history_reaches_the_llm(store, llm, fake_openai):
    session = Session(query='How do I rebuild the feature store after changing the embedding model?',
                      history=[('what is huixiangdou?', 'A group-chat assistant.')])
    await Worker(WorkerConfig(), store, llm).run(session)
    messages = chat_requests(fake_openai)[-1].body['messages']
    assert any(m['content'] == 'A group-chat assistant.' and m['role'] == 'assistant' for m in messages)


async def test_llm_failure_gives_llm_error(store, llm, fake_openai):
    fake_openai.fail('500')
    session = await Worker(WorkerConfig(), store, llm).run(Session(query=ON_TOPIC))
    assert session.code == ErrorCode.LLM_ERROR


@pytest.mark.parametrize('relevance,security,code', [
    ('9', 'no', ErrorCode.SUCCESS), ('2', 'no', ErrorCode.BAD_ANSWER), ('9', 'yes', ErrorCode.SECURITY)])
async def test_check_stage(store, llm, fake_openai, relevance, security, code):
    def responder(messages):
        text = messages[-1]['content']
        if '0 到 10' in text or '0 to 10' in text:
            return relevance
        if 'yes 或 no' in text or 'yes or no' in text:
            return security
        return '填写 encrypt_key [1]'
    fake_openai.responder = responder
    session = await Worker(WorkerConfig(enable_check=1), store, llm).run(Session(query=ON_TOPIC))
    assert session.code == code


async def test_intention_stage_silences_greetings(store, llm, fake_openai):
    fake_openai.responder = lambda m: '{"is_question": false, "topic": "", "kind": "greeting"}'
    worker = Worker(WorkerConfig(enable_intention=1), store, llm, reject_throttle=0.0)
    session = await worker.run(Session(query='大家好呀，新人报到，请多关照'))
    assert session.code == ErrorCode.NOT_A_QUESTION


async def test_stream_yields_tokens_then_done(store, llm, fake_openai):
    fake_openai.responder = lambda m: '重建索引请加 --rebuild 参数 [1]'
    events = [e async for e in Worker(WorkerConfig(), store, llm).stream(Session(query=ON_TOPIC))]
    tokens = ''.join(e.text for e in events if e.kind == 'token')
    assert tokens == '重建索引请加 --rebuild 参数 [1]'
    assert [e.stage for e in events if e.kind == 'stage'][:3] == ['work_time', 'preprocess', 'reject']
    assert events[-1].kind == 'done' and events[-1].session.code == ErrorCode.SUCCESS
    assert events[-1].session.references


@pytest.mark.parametrize('query,code', [(ON_TOPIC, 'SUCCESS'), (CHATTER, 'UNRELATED')])
async def test_run_and_stream_time_the_same_stages_and_save_the_same_outcome(store, llm, fake_openai,
                                                                            tmp_path, query, code):
    import json
    fake_openai.responder = lambda m: '在 [frontend.lark_group] 段填写 encrypt_key [1]。'
    log = tmp_path / 'work.txt'
    worker = Worker(WorkerConfig(), store, llm, log_path=log)
    ran = await worker.run(Session(query=query, group_id='g1'))
    events = [e async for e in worker.stream(Session(query=query, group_id='g1'))]
    streamed = events[-1].session
    assert ran.code.name == streamed.code.name == code
    # Every stage that ran is timed on both paths, generation included, and streaming reports the same.
    assert list(ran.debug['ms']) == list(streamed.debug['ms']) == [e.stage for e in events if e.kind == 'stage']
    assert ('generate' in ran.debug['ms']) == (code == 'SUCCESS')
    records = [json.loads(line) for line in log.read_text(encoding='utf-8').splitlines()]
    assert [r['code'] for r in records] == [code, code]
    assert records[0]['reply'] == records[1]['reply'] and records[0]['reject'] == records[1]['reject']


async def test_the_message_is_embedded_once_and_the_store_keeps_nothing_of_it(store, llm, fake_openai,
                                                                            monkeypatch):
    fake_openai.responder = lambda m: '填写 encrypt_key [1]'
    state = {k: id(v) for k, v in vars(store).items()}
    calls = []
    featurize = store.featurize
    monkeypatch.setattr(store, 'featurize', lambda texts: calls.append(list(texts)) or featurize(texts))
    session = await Worker(WorkerConfig(), store, llm).run(Session(query=ON_TOPIC))
    assert session.code == ErrorCode.SUCCESS and session.passages
    assert calls == [[ON_TOPIC]]  # reject computed the features; retrieval reused them from the session
    assert session.features.text == ON_TOPIC
    monkeypatch.undo()
    assert {k: id(v) for k, v in vars(store).items()} == state
    # Retrieval from the carried features is what a caller without them gets from the text.
    assert [(s.row, s.fused) for s in store.search(ON_TOPIC, 5)] == \
        [(s.row, s.fused) for s in store.search(session.features, 5)]


QUOTE = '报错：ConnectionError: https://open.feishu.cn/open-apis/bot/v2/hook/abc:443 连不上'


async def test_a_quote_reaches_the_worker_intact_and_leaves_the_query_alone(store, llm, fake_openai, tmp_path):
    import json
    fake_openai.responder = lambda m: '检查 webhook 地址和网络 [1]'
    log = tmp_path / 'work.txt'
    worker = Worker(WorkerConfig(), store, llm, log_path=log)
    query = '「飞书」机器人的 webhook 报这个错，config.ini 里 encrypt_key 要怎么配置？'
    session = await worker.run(Session(query=query, quote=QUOTE, group_id='g1'))
    assert session.code == ErrorCode.SUCCESS, session.debug
    assert session.quote == QUOTE                      # colon, URL and port intact
    assert session.query == query and session.text.startswith(query)  # the user's 「」 kept
    # "报这个错" follows up on the quote: reject and retrieval read the user's words, then the quote.
    assert session.context == QUOTE and session.features.text == f'{query}\n{QUOTE}'
    prompt = chat_requests(fake_openai)[-1].body['messages'][-1]['content']
    assert QUOTE in prompt and query in prompt         # the answer knows what "this" refers to
    record = json.loads(log.read_text(encoding='utf-8'))
    assert record['quote'] == QUOTE and record['query'] == query


async def test_a_thank_you_quoting_an_answer_stays_silent(store, llm, fake_openai):
    # Judged with the quote, this reply scores as on-topic as the answer it quotes (docs/worker.md).
    answer = ('在 config.ini 的 [frontend.lark_group] 段填写 encrypt_key 和 verification_token，'
              '然后重启服务 [1]')
    session = await Worker(WorkerConfig(), store, llm).run(Session(query='谢谢，学到了', quote=answer))
    assert session.code == ErrorCode.UNRELATED
    assert chat_requests(fake_openai) == []


async def test_rerank_stage_reorders_with_a_remote_reranker(store, llm, fake_openai):
    reranker = Reranker(f'{fake_openai.base_url}/rerank', api_token=fake_openai.api_key)
    worker = Worker(WorkerConfig(enable_rerank=1, retrieve_top_k=3), store, llm, reranker=reranker)
    session = await worker.run(Session(query=ON_TOPIC))
    assert session.code == ErrorCode.SUCCESS
    [request] = [r for r in fake_openai.requests if r.path == '/v1/rerank']
    candidates = request.body['documents']
    texts = [d if isinstance(d, str) else d['text'] for d in candidates]
    # Retrieval cast a wider net (top_k * 4); rerank kept exactly top_k, in the reranker's order.
    assert len(texts) == 12
    expected = sorted(range(len(texts)), key=lambda i: (-overlap_score(ON_TOPIC, texts[i]), i))[:3]
    assert [p.text for p in session.passages] == [texts[i] for i in expected]
    assert [p.score for p in session.passages] == [overlap_score(ON_TOPIC, texts[i]) for i in expected]


async def test_web_search_stage_adds_pages_when_the_store_is_weak(tmp_path):
    async with FakeWeb() as fake:
        fake.organic = [{'title': 'PyTorch docs', 'link': 'https://pytorch.org/docs', 'snippet': 'torch.compile'}]
        search = WebSearch(WebSearchConfig(serper_base_url=fake.base_url, serper_x_api_key=fake.api_key,
                                           fetch_pages=0),
                           save_dir=tmp_path)
        session = Session(query='torch.compile 是什么', passages=[Passage('weak', 'a.md', 0.9, cosine=0.1)])
        await OnlineSearch(search, min_cosine=0.5).run(session)
        assert [p.reference for p in session.passages] == ['a.md', 'https://pytorch.org/docs']
        fake.organic = []
        empty = Session(query='nothing anywhere')
        await OnlineSearch(search).run(empty)
        assert empty.code == ErrorCode.NO_SEARCH_RESULT


async def test_outcomes_are_appended_to_the_work_log(store, llm, fake_openai, tmp_path):
    import json
    log = tmp_path / 'logs' / 'work.txt'
    worker = Worker(WorkerConfig(), store, llm, log_path=log)
    await worker.run(Session(query=CHATTER, group_id='g1'))
    await worker.run(Session(query=ON_TOPIC, group_id='g1'))
    records = [json.loads(line) for line in log.read_text(encoding='utf-8').splitlines()]
    assert [r['code'] for r in records] == ['UNRELATED', 'SUCCESS']
    assert records[1]['references'] and records[1]['query'] == ON_TOPIC
    # Each outcome says why: the reject score against the threshold, the nearest examples, the best chunk.
    silent, answered = records[0]['reject'], records[1]['reject']
    assert silent['reject_score'] < silent['threshold'] and silent['answer'] is False
    assert answered['reject_score'] >= answered['threshold'] and answered['answer'] is True
    assert answered['nearest_on_topic'][0]['text'] and answered['best_chunk']['reference']
    assert silent['nearest_chatter'][0]['cosine'] > 0


async def test_lone_surrogates_and_an_unwritable_log_do_not_fail_the_message(store, llm, fake_openai, tmp_path):
    import json
    log = tmp_path / 'logs' / 'work.txt'
    worker = Worker(WorkerConfig(), store, llm, log_path=log)
    session = await worker.run(Session(query=ON_TOPIC + '\ud800', group_id='g\udfff'))
    assert session.code == ErrorCode.SUCCESS
    record = json.loads(log.read_text(encoding='utf-8'))
    assert record['query'].endswith('\ufffd') and record['group'] == 'g\ufffd'
    # The log path turns into a folder (a full or broken disk): the answer still stands.
    log.unlink()
    log.mkdir()
    session = await worker.run(Session(query=ON_TOPIC, group_id='g1'))
    assert session.code == ErrorCode.SUCCESS


SCREENSHOT = "ModuleNotFoundError: No module named 'tomllib'"


async def test_a_screenshot_alone_is_what_rerank_and_web_search_read(store, llm, fake_openai, tmp_path):
    # A picture sent alone: no typed words, the screenshot's text is the message every stage reads.
    from huixiangdou.service.worker.rerank import Rerank
    session = Session(query='', image_text=SCREENSHOT, passages=[Passage('python 3.11 needed', 'install.md')])
    assert session.text == SCREENSHOT
    await Rerank(Reranker(f'{fake_openai.base_url}/rerank', api_token=fake_openai.api_key)).run(session)
    [request] = [r for r in fake_openai.requests if r.path == '/v1/rerank']
    assert request.body['query'] == SCREENSHOT
    async with FakeWeb() as fake:
        fake.organic = [{'title': 'tomllib', 'link': 'https://docs.python.org/3/library/tomllib.html',
                         'snippet': 'tomllib is new in Python 3.11'}]
        search = WebSearch(WebSearchConfig(serper_base_url=fake.base_url, serper_x_api_key=fake.api_key,
                                           fetch_pages=0), save_dir=tmp_path)
        await OnlineSearch(search).run(Session(query='', image_text=SCREENSHOT))
        assert [r.query for r in fake.requests] == [SCREENSHOT]


async def test_a_failed_web_search_keeps_its_error_in_the_record(tmp_path):
    async with FakeWeb() as fake:
        fake.fail(500, times=5)
        search = WebSearch(WebSearchConfig(serper_base_url=fake.base_url, serper_x_api_key=fake.api_key,
                                           fetch_pages=0, max_retries=0), save_dir=tmp_path)
        session = Session(query='torch.compile 是什么')
        await OnlineSearch(search).run(session)
    assert session.code == ErrorCode.NO_SEARCH_RESULT
    assert session.debug['web_search']['urls'] == [] and '500' in session.debug['web_search']['error']


# ---- the LLM judges the uncertain band of reject scores ([worker] reject_llm_band) --------------------

def _judge(verdicts: dict[str, bool]):
    """A responder that answers the reject judgement per message, and a plain answer otherwise."""
    def respond(messages):
        text = messages[-1]['content']
        for query, verdict in verdicts.items():
            if query in text and '"on_topic"' in text:
                return '{"on_topic": %s}' % ('true' if verdict else 'false')
        return '在 [frontend.lark_group] 段填写 encrypt_key [1]。'
    return respond


async def test_within_the_band_the_llm_decides_both_ways(store, llm, fake_openai):
    fake_openai.responder = _judge({CHATTER: True, ON_TOPIC: False})
    worker = Worker(WorkerConfig(reject_llm_band=1.0), store, llm)     # every score is within 1.0
    rescued = await worker.run(Session(query=CHATTER))
    assert rescued.code != ErrorCode.UNRELATED
    assert rescued.debug['reject']['llm']['on_topic'] is True and rescued.debug['reject']['answer'] is True
    assert rescued.debug['reject']['reject_score'] < rescued.debug['reject']['threshold']   # the model said no
    silenced = await worker.run(Session(query=ON_TOPIC))
    assert silenced.code == ErrorCode.UNRELATED and silenced.debug['reject']['llm']['on_topic'] is False
    judged = [r for r in chat_requests(fake_openai) if '"on_topic"' in r.body['messages'][-1]['content']]
    assert len(judged) == 2
    assert any(ON_TOPIC in r.body['messages'][-1]['content'] and '.md' in r.body['messages'][-1]['content']
               for r in judged), 'the closest passage and its file go into the prompt'


async def test_outside_the_band_or_without_a_capable_model_the_llm_is_not_asked(store, llm, fake_openai):
    fake_openai.responder = _judge({CHATTER: True})
    narrow = await Worker(WorkerConfig(reject_llm_band=0.01), store, llm).run(Session(query=CHATTER))
    assert narrow.code == ErrorCode.UNRELATED and 'llm' not in narrow.debug['reject']
    tiny = await Worker(WorkerConfig(reject_llm_band=1.0), store, llm, capable_llm=False).run(Session(query=CHATTER))
    assert tiny.code == ErrorCode.UNRELATED and 'llm' not in tiny.debug['reject']
    assert chat_requests(fake_openai) == []


async def test_a_failing_llm_leaves_the_reject_models_decision(store, llm, fake_openai):
    fake_openai.fail('400', paths=['/v1/chat/completions'])
    session = await Worker(WorkerConfig(reject_llm_band=1.0), store, llm).run(Session(query=CHATTER))
    assert session.code == ErrorCode.UNRELATED
    assert 'error' in session.debug['reject']['llm']


@pytest.mark.parametrize('text, verdict', [
    ('{"on_topic": true}', True), ('好的：{"on_topic":false}', False), ('是的，这是文档能回答的问题', True),
    ('否。这是闲聊', False), ('No, this is small talk.', False), ('Yes.', True), ('I cannot tell', None), ('', None)])
def test_the_judgement_is_read_from_json_or_a_leading_yes_or_no(text, verdict):
    from huixiangdou.service.worker.reject import parse_verdict
    assert parse_verdict(text) is verdict
