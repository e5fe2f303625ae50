"""Two worker processes (`python -m huixiangdou.main`, personal-WeChat endpoint) answering from one
knowledge base whose vectors are in one Milvus server, behind a round-robin balancer.

The Milvus server is milvus-lite's own gRPC server (`milvus-lite server`), which speaks the protocol a
Milvus cluster speaks; a milvus-lite *file* cannot be shared (the second process is refused its lock).
"""
from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import signal
import sys

import aiohttp

from huixiangdou.config import FeatureStoreConfig
from huixiangdou.primitive.dense_index import FaissIndex
from huixiangdou.service.feature_store.builder import FeatureStoreBuilder
from tests.conftest import REPO_ROOT, free_port, write_config
from tests.service.feature_store.test_milvus import milvus_server  # noqa: F401 (fixture)

QUESTIONS = ['飞书群应用的 encrypt_key 加密密钥应该在 config.ini 哪里配置？',
             '周末有人一起去爬山吗？天气预报说不下雨',
             '怎么重建特征库？',
             '今天中午吃什么']


async def ask(http: aiohttp.ClientSession, port: int, question: str, group: str) -> dict:
    url = f'http://127.0.0.1:{port}/huixiangdou/message'
    for _ in range(1200):
        try:
            async with http.post(url, json={'group_name': group, 'content': question}) as r:
                return await r.json()
        except aiohttp.ClientConnectionError:
            await asyncio.sleep(0.25)   # still loading the models
    raise TimeoutError(f'worker on {port} never answered')


async def test_two_workers_answer_alike_from_one_milvus(tmp_path, milvus_server, sample_store, embedder,
                                                       fake_openai, llm):
    # The sample store rebuilt with its vectors in the Milvus server: the version folder then names the
    # collection instead of holding a FAISS file.
    work = tmp_path / 'work'
    shutil.copytree(sample_store[0], work)
    FeatureStoreBuilder(FeatureStoreConfig(vector_store='milvus', milvus_uri=milvus_server), embedder,
                        progress=False).build(REPO_ROOT / 'repodir', work)
    current = work / (work / 'CURRENT').read_text(encoding='utf-8').strip()
    assert not (current / FaissIndex.FILE).exists()

    fake_openai.responder = lambda m: '在 [frontend.lark_group] 段填写 encrypt_key [1]'
    ports, procs = [free_port(), free_port()], []
    for i, port in enumerate(ports):
        config = write_config(
            tmp_path / f'config{i}.ini',
            feature_store={'work_dir': str(work), 'repo_dir': str(REPO_ROOT / 'repodir'), 'embedding_model_path': '',
                           'vector_store': 'milvus', 'milvus_uri': milvus_server},
            llm={'enable_local': 0, 'enable_remote': 1, 'client_url': llm.url},
            frontend={'type': 'wechat_personal'},
            **{'llm.server': {'remote_type': 'vllm', 'remote_base_url': fake_openai.base_url},
               'frontend.wechat_personal': {'host': '127.0.0.1', 'bind_port': port, 'token': 'tok'}})
        procs.append(await asyncio.create_subprocess_exec(
            sys.executable, '-m', 'huixiangdou.main', '--config', str(config),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            env=dict(os.environ, HF_HUB_OFFLINE='1')))
    try:
        async with aiohttp.ClientSession(headers={'Authorization': 'Bearer tok'}) as http:
            # Every question to each worker (in different groups: per-group state is per process anyway) …
            replies = [[await ask(http, port, q, f'g{i}') for q in QUESTIONS] for i, port in enumerate(ports)]
            # … and a round-robin balancer in front of both, as a load balancer would spread one group.
            balanced = [await ask(http, port, q, 'shared')
                        for q, port in zip(QUESTIONS, itertools.cycle(ports))]
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            await asyncio.wait_for(proc.wait(), 60)
    summary = [[(r['status'], r.get('references')) for r in rs] for rs in (*replies, balanced)]
    assert summary[0] == summary[1] == summary[2]
    statuses = [s for s, _ in summary[0]]
    assert statuses == ['answered', 'silent', 'answered', 'silent'], summary[0]
    assert summary[0][0][1] and ('飞书' in summary[0][0][1][0] or 'lark' in summary[0][0][1][0].lower())
