"""The web console running for real: the sample knowledge base (calibrated), the real worker, the real
hybrid LLM server on the fake OpenAI upstream, the console app on 127.0.0.1:<free port>.

`web_server` (one per test module) runs everything on its own event loop in a background thread, so a
test may use any client: aiohttp, the openai SDK (sync or async), a browser.

    def test_x(web_server):
        r = requests.get(f'{web_server.base_url}/api/kb')           # or aiohttp, playwright ...
        web_server.fake.responder = lambda messages: '答案 [1]'     # what the LLM upstream answers
        web_server.seed_messages([outcome('lunch?', code='UNRELATED')])
"""
from __future__ import annotations

import asyncio
import json
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio

from tests.conftest import REPO_ROOT, free_port, write_config
from tests.fakes.fake_openai import FakeOpenAI

ADMIN_TOKEN = 'test-admin-token-0123456789'
ON_TOPIC = '飞书群应用的 encrypt_key 加密密钥应该在 config.ini 哪里配置？'
CHATTER = '周末有人一起去爬山吗？天气预报说不下雨'


def outcome(query: str, code: str = 'SUCCESS', group: str = 'oc_group1', reply: str = '',
            references: list[str] | None = None, time: str = '2026-01-02T10:00:00', **extra) -> dict:
    """One saved outcome as the worker writes it to [worker] save_path."""
    return {'time': time, 'group': group, 'query': query, 'code': code, 'reply': reply,
            'references': references or [], **extra}


@dataclass
class WebServer:
    base_url: str
    admin_token: str
    repo_dir: Path
    work_dir: Path
    config_path: Path
    save_path: Path
    good_path: Path
    bad_path: Path
    fake: FakeOpenAI
    loop: asyncio.AbstractEventLoop = field(repr=False)
    # The console's aiohttp app (its state under huixiangdou.web.console.CONSOLE), for tests that reach in.
    app: object = field(default=None, repr=False)

    @property
    def auth(self) -> dict:
        """Headers a script sends: the admin token as a Bearer token."""
        return {'Authorization': f'Bearer {self.admin_token}'}

    def seed_messages(self, records: list[dict], replace: bool = True) -> None:
        """Write saved outcomes (see `outcome`) as the worker would have; replaces what is there by default."""
        self.save_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.save_path, 'w' if replace else 'a', encoding='utf-8') as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + '\n')

    def wait_for_build(self, timeout: float = 180) -> dict:
        """Poll GET /api/rebuild (as the pages do) until the build is no longer running; its last status."""
        import time
        import urllib.request
        deadline = time.monotonic() + timeout
        while True:
            with urllib.request.urlopen(f'{self.base_url}/api/rebuild') as response:
                status = json.loads(response.read())
            if status['state'] != 'running' or time.monotonic() > deadline:
                return status
            time.sleep(0.2)

    def run(self, coro, timeout: float = 120):
        """Run a coroutine on the server's loop (e.g. to inspect the app) and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


def console_config(root: Path, llm_port: int, fake: FakeOpenAI, **overrides: dict) -> Path:
    """A config.ini in `root` for the console: store in root/workdir, LLM server on `llm_port` → fake."""
    sections = {
        'feature_store': {'repo_dir': 'repodir', 'work_dir': 'workdir', 'embedding_model_path': '',
                          'good_questions': 'resource/good_questions.json',
                          'bad_questions': 'resource/bad_questions.json', 'ocr': 0},
        'llm': {'enable_local': 0, 'enable_remote': 1, 'client_url': f'http://127.0.0.1:{llm_port}/inference',
                'client_timeout': 20.0, 'client_max_retries': 0},
        'llm.server': {'local_llm_bind_port': llm_port, 'remote_type': 'vllm', 'remote_base_url': fake.base_url,
                       'remote_api_key': fake.api_key, 'remote_max_retries': 0, 'remote_timeout': 10.0},
        'worker': {'save_path': 'logs/work.txt', 'ocr': 0},
        'web': {'host': '127.0.0.1', 'port': free_port(), 'admin_token': ADMIN_TOKEN, 'max_upload_mb': 2.0},
    }
    for name, values in overrides.items():
        sections.setdefault(name, {}).update(values)
    return write_config(root / 'config.ini', **sections)


def copy_knowledge_base(root: Path, sample_store) -> None:
    """The shipped documents and questions, and the store already built from them (so nothing is embedded)."""
    shutil.copytree(REPO_ROOT / 'repodir', root / 'repodir')
    (root / 'resource').mkdir()
    # Every third on-topic and fourth chatter example: enough to learn from (20 per class are needed), and
    # a recalibration embeds a third as many questions. The copied store keeps its calibration on all.
    for name, step in (('good_questions.json', 3), ('bad_questions.json', 4)):
        questions = json.loads((REPO_ROOT / 'resource' / name).read_text(encoding='utf-8'))[::step]
        (root / 'resource' / name).write_text(json.dumps(questions, ensure_ascii=False, indent=1), encoding='utf-8')
    shutil.copytree(sample_store[0], root / 'workdir', ignore=shutil.ignore_patterns('.build.lock'))


class _ServerThread:
    """An event loop in a thread running the fake upstream, the LLM server and the console."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name='web-console-test', daemon=True)
        self.thread.start()
        self.runners = []

    def call(self, coro, timeout: float = 120):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def serve(self, app, port: int) -> None:
        from aiohttp import web
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, '127.0.0.1', port).start()
        self.runners.append(runner)

    async def stop(self) -> None:
        for runner in reversed(self.runners):
            await runner.cleanup()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def start_console(root: Path, embedder, **overrides: dict):
    """Start fake + LLM server + console for a prepared `root` (see copy_knowledge_base); returns
    (WebServer, stop function)."""
    from huixiangdou.config import load_config
    from huixiangdou.service.llm_server_hybrid import create_app as create_llm_app
    from huixiangdou.web.app import create_app

    thread = _ServerThread()
    fake = FakeOpenAI()
    thread.call(fake.start())
    llm_port = free_port()
    config_path = console_config(root, llm_port, fake, **overrides)
    config = load_config(config_path)
    thread.call(thread.serve(create_llm_app(config.llm), llm_port))
    app = create_app(config, embedder=embedder)
    thread.call(thread.serve(app, config.web.port))
    server = WebServer(base_url=f'http://127.0.0.1:{config.web.port}', admin_token=config.web.admin_token,
                       repo_dir=config.path(config.feature_store.repo_dir),
                       work_dir=config.path(config.feature_store.work_dir), config_path=config_path,
                       save_path=config.path(config.worker.save_path),
                       good_path=config.path(config.feature_store.good_questions),
                       bad_path=config.path(config.feature_store.bad_questions), fake=fake, loop=thread.loop,
                       app=app)

    def stop():
        thread.call(thread.stop())
        thread.call(fake.stop())
        thread.close()

    return server, stop


@pytest.fixture(scope='module')
def web_server(tmp_path_factory, sample_store, embedder):
    """The console on the sample knowledge base, fresh for each test module (tests in a module share it)."""
    root = tmp_path_factory.mktemp('console')
    copy_knowledge_base(root, sample_store)
    server, stop = start_console(root, embedder)
    try:
        yield server
    finally:
        stop()


@pytest_asyncio.fixture
async def bare_console(tmp_path, embedder):
    """Start consoles on an empty folder (no store: answers are unavailable, everything else works) with
    the given config sections, on the test's own loop; `await bare_console(web={...}, frontend={...})`
    returns the base URL."""
    from aiohttp import web

    from huixiangdou.config import load_config
    from huixiangdou.web.app import create_app

    runners = []

    async def start(**sections: dict) -> str:
        port = free_port()
        sections = {'feature_store': {'embedding_model_path': ''}} | sections
        sections['web'] = {'port': port, 'admin_token': ADMIN_TOKEN} | sections.get('web', {})
        path = write_config(tmp_path / f'config-{port}.ini', **sections)
        runner = web.AppRunner(create_app(load_config(path), embedder=embedder))
        await runner.setup()
        await web.TCPSite(runner, '127.0.0.1', port).start()
        runners.append(runner)
        return f'http://127.0.0.1:{port}'

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture(scope='module')
def browser():
    """Debian's Chromium through Playwright, one per test module (the page tests make their own contexts)."""
    from playwright.sync_api import sync_playwright

    from tests.web.browser import launch
    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()
