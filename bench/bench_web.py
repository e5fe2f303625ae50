"""Web console benchmark: page load to interactive, press send to first streamed token (fake LLM),
the same API figures per knowledge base, and the console's added memory over the worker alone, with 1 and
with 5 knowledge bases loaded.

    python bench/bench_web.py [--loads 10] [--asks 20] [--skip-rss]

Runs the console the way the tests do (tests/web/conftest.start_console: the shipped sample knowledge
base, the real worker, the real hybrid LLM server on the fake OpenAI upstream) and drives it with
Debian's Chromium. Baselines measured in the same run:
  - page load: the same page's API requests (GET /api/session, /api/kb ...) one after another from
    Python; the page's figure over it is what the browser adds (fetching the modules, rendering);
  - first token: the first `token` event of POST /api/ask read from Python; the ratio is the page's
    own cost between the click and the first visible text;
  - memory: RSS of a process running the fake upstream + LLM server + worker (5 questions), against
    the same process that also serves the console (every page's API, 5 questions through /api/ask), and
    against the console serving 5 knowledge bases (4 more made with POST /api/knowledge-bases, each holding
    a copy of the sample store, 5 questions asked of each so that each has its worker loaded).
Per knowledge base: the API baselines (each page's API calls with ?kb=, first token of /api/ask?kb=) for
"default" and a second knowledge base made in the console (a copy of the sample store); the browser figures
are the default knowledge base's.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')

from bench.bench_feature_store import percentile  # noqa: E402

ROUTES = ('kb', 'examples', 'try', 'messages', 'integrations')
EXTRA_KNOWLEDGE_BASES = ('kb2', 'kb3', 'kb4', 'kb5')
# The API calls each page makes before it is ready (every page also asks for the session).
ROUTE_API = {'kb': ('/api/session', '/api/kb'),
             'examples': ('/api/session', '/api/examples', '/api/calibration', '/api/rebuild'),
             'try': ('/api/session',), 'messages': ('/api/session', '/api/messages'),
             'integrations': ('/api/session', '/api/integrations')}
ANSWER = ('在 config.ini 的 [frontend.lark_group] 段里填写 encrypt_key，和飞书开放平台“事件订阅”页面的加密策略'
          '保持一致 [1]。修改后重启服务即可生效。')
QUESTIONS = ['飞书群应用的 encrypt_key 加密密钥应该在 config.ini 哪里配置？', '怎么重建知识库的索引？',
             'How do I connect a Lark group?', '茴香豆支持哪些文件格式？', 'reject_throttle 是什么意思？']


def prepare_root():
    """The shipped sample knowledge base, built and calibrated once with the fast embedding model (as the
    tests' sample_store); returns (root, embedder)."""
    from huixiangdou.config import FeatureStoreConfig
    from huixiangdou.primitive.embedder import LocalEmbedder
    from huixiangdou.service.feature_store.builder import FeatureStoreBuilder
    from tests.web.conftest import copy_knowledge_base

    root = Path(tempfile.mkdtemp(prefix='bench_web_'))
    built = Path(tempfile.mkdtemp(prefix='bench_web_store_'))
    embedder = LocalEmbedder('')
    embedder.warm_up()
    t = time.perf_counter()
    report = FeatureStoreBuilder(FeatureStoreConfig(), embedder, progress=False).build(
        ROOT / 'repodir', built, good=ROOT / 'resource/good_questions.json', bad=ROOT / 'resource/bad_questions.json')
    print(f'sample store built in {time.perf_counter() - t:.1f} s ({report.chunks} chunks)')
    copy_knowledge_base(root, (built, report))
    shutil.rmtree(built, ignore_errors=True)
    return root, embedder


# -- browser figures ---------------------------------------------------------------------------------
def page_loads(page, base_url: str, loads: int) -> dict[str, dict[str, list[float]]]:
    """Per route: navigation start → DOMContentLoaded, and → the app's ready mark (data on screen)."""
    out = {}
    for route in ROUTES:
        dcl, ready = [], []
        for _ in range(loads):
            page.goto('about:blank')
            page.goto(f'{base_url}/#/{route}')
            page.wait_for_selector(f'body[data-ready="{route}"]')
            t = page.evaluate("""(route) => ({
                dcl: performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd,
                ready: performance.getEntriesByName('ready:' + route)[0].startTime })""", route)
            dcl.append(t['dcl'])
            ready.append(t['ready'])
        out[route] = {'dcl': dcl, 'ready': ready}
    return out


def first_tokens(page, base_url: str, asks: int) -> tuple[list[float], list[float]]:
    """Click Send → first answer text on screen, and → the finished answer, in ms (browser clock)."""
    from tests.web.browser import open_page

    open_page(page, base_url, 'try')
    page.evaluate("""() => {
        const answer = document.getElementById('answer');
        document.getElementById('ask-button').addEventListener('click', () => {
            window.__t0 = performance.now(); window.__t1 = null; }, { capture: true });
        new MutationObserver(() => {
            if (window.__t1 == null && window.__t0 != null && answer.textContent && !answer.dataset.done)
                window.__t1 = performance.now();
        }).observe(answer, { childList: true, subtree: true, characterData: true });
    }""")
    first, whole = [], []
    for i in range(asks + 1):
        page.fill('#ask-input', QUESTIONS[0])
        page.click('#ask-button')
        page.wait_for_selector('#answer[data-done]')
        t = page.evaluate('() => [window.__t0, window.__t1, performance.now()]')
        page.wait_for_selector('#ask-button:not([disabled])')
        if i == 0:
            continue  # the first ask warms the worker's caches
        if t[1] is None:
            raise RuntimeError('no streamed text appeared before the answer finished')
        first.append(t[1] - t[0])
        whole.append(t[2] - t[0])
    return first, whole


# -- baselines from Python ---------------------------------------------------------------------------
async def api_baselines(base_url: str, loads: int, asks: int, kb: str = 'default',
                        headers: dict | None = None) -> tuple[dict[str, list[float]], list[float]]:
    import aiohttp

    api_ms = {}
    async with aiohttp.ClientSession(headers=headers) as http:
        for route, paths in ROUTE_API.items():
            times = []
            for _ in range(loads):
                t = time.perf_counter()
                for path in paths:
                    async with http.get(base_url + path, params={'kb': kb}) as r:
                        await r.read()
                times.append((time.perf_counter() - t) * 1000)
            api_ms[route] = times
        first = []
        for i in range(asks + 1):
            t = time.perf_counter()
            seen = None
            async with http.post(base_url + '/api/ask', params={'kb': kb}, json={'query': QUESTIONS[0]}) as r:
                async for line in r.content:
                    if seen is None and line.startswith(b'event: token'):
                        seen = (time.perf_counter() - t) * 1000
            if i and seen is not None:
                first.append(seen)
    return api_ms, first


def add_knowledge_bases(server, root: Path, names) -> None:
    """Make knowledge bases in the console (POST /api/knowledge-bases), each with a copy of the sample documents
    and store (so nothing is embedded)."""
    import urllib.request

    for name in names:
        request = urllib.request.Request(f'{server.base_url}/api/knowledge-bases', method='POST',
                                         data=json.dumps({'name': name}).encode(),
                                         headers={'Content-Type': 'application/json', **server.auth})
        with urllib.request.urlopen(request) as response:
            assert response.status == 201
        folder = root / 'knowledge_bases' / name
        shutil.rmtree(folder / 'repodir')
        shutil.copytree(root / 'repodir', folder / 'repodir')
        shutil.rmtree(folder / 'workdir')
        shutil.copytree(root / 'workdir', folder / 'workdir', ignore=shutil.ignore_patterns('.build.lock'))


# -- memory: one child process per variant -----------------------------------------------------------
def rss_child(root: Path, variant: str) -> None:
    """Run in a child: fake upstream + LLM server + worker (+ the console when variant == 'console'),
    five questions, then print {"rss_mb": ...}."""
    import psutil

    from huixiangdou.config import load_config
    from huixiangdou.service.llm_server_hybrid import create_app as create_llm_app
    from huixiangdou.service.worker.session import Session
    from huixiangdou.web.worker_slot import load_worker
    from tests.conftest import free_port
    from tests.fakes.fake_openai import FakeOpenAI
    from tests.web.conftest import _ServerThread, console_config, start_console

    if variant in ('console', 'console5'):
        server, stop = start_console(root, None)
        server.fake.responder = lambda messages: ANSWER
        names = ['default']
        if variant == 'console5':
            add_knowledge_bases(server, root, EXTRA_KNOWLEDGE_BASES)
            names += EXTRA_KNOWLEDGE_BASES

        async def use_console():
            import aiohttp
            async with aiohttp.ClientSession(headers=server.auth) as http:
                for name in names:
                    for path in ('/', '/static/app.js', '/static/style.css',
                                 *{p for ps in ROUTE_API.values() for p in ps}):
                        async with http.get(server.base_url + path, params={'kb': name}) as r:
                            await r.read()
                    for q in QUESTIONS:
                        async with http.post(server.base_url + '/api/ask', params={'kb': name}, json={'query': q}) as r:
                            await r.read()
        asyncio.run(use_console())
    else:
        thread = _ServerThread()
        fake = FakeOpenAI(responder=lambda messages: ANSWER)
        thread.call(fake.start())
        llm_port = free_port()
        config = load_config(console_config(root, llm_port, fake))
        thread.call(thread.serve(create_llm_app(config.llm), llm_port))
        worker = load_worker(config)
        for q in QUESTIONS:
            thread.call(worker.run(Session(query=q, group_id='bench')))
    print(json.dumps({'rss_mb': psutil.Process().memory_info().rss / 2**20}))
    sys.stdout.flush()
    os._exit(0)  # the servers' threads need no orderly shutdown for a figure


def rss_of(root: Path, variant: str) -> float:
    out = subprocess.run([sys.executable, __file__, '--rss-child', variant, '--root', str(root)], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    for line in reversed(out.stdout.splitlines()):
        if line.startswith('{'):
            return json.loads(line)['rss_mb']
    raise RuntimeError(f'the {variant} child printed no figure:\n{out.stderr[-2000:]}')


def fmt(values: list[float]) -> str:
    return f'p50 {percentile(values, 0.5):7.1f} ms  p95 {percentile(values, 0.95):7.1f} ms'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--loads', type=int, default=10, help='page loads per page (default 10)')
    parser.add_argument('--asks', type=int, default=20, help='questions for the first-token figure (default 20)')
    parser.add_argument('--skip-rss', action='store_true', help='skip the memory figure')
    parser.add_argument('--rss-child', choices=('worker', 'console', 'console5'), help=argparse.SUPPRESS)
    parser.add_argument('--root', type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        from loguru import logger
        logger.remove()
        rss_child(args.root, args.rss_child)
        return

    from loguru import logger
    from playwright.sync_api import sync_playwright

    from tests.web.browser import VIEWPORT, launch
    from tests.web.conftest import start_console

    logger.remove()
    logger.add(sys.stderr, level='WARNING')
    print(f'cores: {os.cpu_count()} (affinity {len(os.sched_getaffinity(0))}); load average {os.getloadavg()[0]:.1f}; '
          'browser: /usr/bin/chromium headless')
    root, embedder = prepare_root()
    server, stop = start_console(root, embedder)
    server.fake.responder = lambda messages: ANSWER
    try:
        with sync_playwright() as playwright:
            browser = launch(playwright)
            page = browser.new_context(viewport=VIEWPORT).new_page()
            loads = page_loads(page, server.base_url, args.loads)
            first, whole = first_tokens(page, server.base_url, args.asks)
            browser.close()
        api_ms, api_first = asyncio.run(api_baselines(server.base_url, args.loads, args.asks))
        add_knowledge_bases(server, root, EXTRA_KNOWLEDGE_BASES[:1])
        second = EXTRA_KNOWLEDGE_BASES[0]
        per_kb = {'default': (api_ms, api_first),
                  second: asyncio.run(api_baselines(server.base_url, args.loads, args.asks, second, server.auth))}
        load_after = os.getloadavg()[0]
    finally:
        stop()

    print(f'load average after the browser figures: {load_after:.1f} (other work on these cores slows every figure)')
    print(f'\npage load, navigation start → page ready with its data ({args.loads} loads each, modules revalidated from the'
          ' browser cache; baseline: the page\'s API calls from Python)')
    for route in ROUTES:
        ready, dcl, api = loads[route]['ready'], loads[route]['dcl'], api_ms[route]
        print(f'  {route:<13} ready {fmt(ready)} | DOMContentLoaded p50 {percentile(dcl, 0.5):6.1f} ms'
              f' | API p50 {percentile(api, 0.5):6.1f} ms | ready/API {percentile(ready, 0.5) / percentile(api, 0.5):5.1f}x')
    print(f'\nfirst streamed token, press Send → first text on screen (fake LLM, {len(first)} asks)')
    print(f'  browser      {fmt(first)}')
    print(f'  API (Python) {fmt(api_first)}  (first `token` event of POST /api/ask)')
    print(f'  ratio browser/API p50 {percentile(first, 0.5) / percentile(api_first, 0.5):.2f}x;'
          f' whole answer on screen p50 {percentile(whole, 0.5):.1f} ms')

    print(f'\nper knowledge base, API from Python ({args.loads} loads each, {len(api_first)} asks; "{second}" holds a'
          ' copy of the sample store, made with POST /api/knowledge-bases)')
    for name, (routes_ms, first_ms) in per_kb.items():
        pages = '  '.join(f'{route} {percentile(routes_ms[route], 0.5):5.1f}' for route in ROUTES)
        print(f'  {name:<8} page API p50 ms: {pages} | first token {fmt(first_ms)}')
    base = per_kb['default'][1]
    print(f'  first token p50 {second}/default {percentile(per_kb[second][1], 0.5) / percentile(base, 0.5):.2f}x')

    if not args.skip_rss:
        shutil.rmtree(root / 'knowledge_bases', ignore_errors=True)
        (root / 'knowledge_bases.console.toml').unlink(missing_ok=True)
        worker_mb = rss_of(root, 'worker')
        console_mb = rss_of(root, 'console')
        five_mb = rss_of(root, 'console5')
        print('\nmemory (RSS after 5 questions per knowledge base; every process runs the fake upstream, the LLM server'
              ' and the worker)')
        print(f'  worker alone                   {worker_mb:7.1f} MB')
        print(f'  worker + console, 1 knowledge base  {console_mb:7.1f} MB')
        print(f'  worker + console, 5 knowledge bases {five_mb:7.1f} MB')
        print(f'  added by the console {console_mb - worker_mb:+6.1f} MB ({console_mb / worker_mb:.3f}x); each further '
              f'knowledge base (a copy of the sample store) {(five_mb - console_mb) / 4:+6.1f} MB')
    shutil.rmtree(root, ignore_errors=True)


if __name__ == '__main__':
    main()
