"""Benchmark the hybrid LLM server: overhead against calling the fake OpenAI service directly, 200
concurrent requests, and the real default local model's tokens/s and time to first token on CPU.

Fairness: the fake, the server and a bare aiohttp pass-through proxy each run in their own process, as
a user would run them; the load generator (this process) drives every target with the same client code,
one shared aiohttp session and the same concurrency, in alternating rounds so a busy machine hurts all
sides alike. The bare proxy is the ceiling for any proxy on this machine: its ratio is what an extra
HTTP hop alone costs when fake, proxy and load generator share the cores. CPU ms per request of each
process (psutil) is printed too, as it does not depend on what else the machine is doing.

Usage: python bench/bench_llm_server.py [--requests 2000] [--concurrency 32] [--rounds 3] [--skip-local]
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault('HF_HUB_OFFLINE', '1')


def run_fake(port: int) -> None:
    from tests.fakes.fake_openai import FakeOpenAI

    async def forever():
        async with FakeOpenAI(port=port):
            await asyncio.Event().wait()
    asyncio.run(forever())


def run_bare_proxy(port: int, upstream: str) -> None:
    """The cheapest proxy we can think of: parse nothing, forward the body, copy the answer back."""
    from aiohttp import web

    async def forever():
        http = aiohttp.ClientSession()

        async def forward(request: web.Request) -> web.Response:
            async with http.post(upstream, data=await request.read(),
                                 headers={'Authorization': request.headers.get('Authorization', ''),
                                          'Content-Type': 'application/json'}) as answer:
                return web.Response(body=await answer.read(), status=answer.status,
                                    content_type='application/json')

        app = web.Application()
        app.router.add_post('/v1/chat/completions', forward)
        app.router.add_get('/health', lambda request: web.Response(text='ok'))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, '127.0.0.1', port).start()
        await asyncio.Event().wait()
    asyncio.run(forever())


def free_port() -> int:
    from tests.conftest import free_port as pick
    return pick()


async def wait_ready(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(url) as response:
                    if response.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f'{url} did not come up')


def chat_body(i: int) -> dict:
    return {'model': 'auto', 'messages': [{'role': 'user', 'content': f'问题 {i}: how do I rebuild the index?'}]}


async def throughput(url: str, headers: dict, total: int, concurrency: int) -> tuple[float, int]:
    errors = 0
    queue = iter(range(total))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http:
        async def worker():
            nonlocal errors
            for i in queue:
                async with http.post(url, json=chat_body(i)) as response:
                    await response.read()
                    errors += response.status != 200
        start = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(concurrency)])
        return total / (time.perf_counter() - start), errors


async def latency_p50(url: str, headers: dict, total: int) -> float:
    samples = []
    async with aiohttp.ClientSession(headers=headers) as http:
        for i in range(total):
            start = time.perf_counter()
            async with http.post(url, json=chat_body(i)) as response:
                await response.read()
            samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


async def burst(url: str, headers: dict, n: int) -> int:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http:
        async def one(i):
            try:
                async with http.post(url, json=chat_body(i)) as response:
                    await response.read()
                    return response.status != 200
            except aiohttp.ClientError:
                return True
        return sum(await asyncio.gather(*[one(i) for i in range(n)]))


def bench_local(max_new_tokens: int) -> None:
    from huixiangdou.config import LLMServerConfig
    from huixiangdou.service.llm.backend import ChatMessage, GenerationParams
    from huixiangdou.service.llm.local_transformers import LocalTransformersBackend

    backend = LocalTransformersBackend(LLMServerConfig(local_llm_max_new_tokens=max_new_tokens))
    start = time.perf_counter()
    backend.warm_up()
    print(f'local model load: {time.perf_counter() - start:.1f}s on {backend.device}')

    async def measure():
        messages = [ChatMessage('user', 'Explain what a search index is, in a few sentences.')]
        await backend.generate([ChatMessage('user', 'hi')], GenerationParams(max_new_tokens=2))  # warm-up
        start = time.perf_counter()
        first, usage = None, None
        async for chunk in backend.stream(messages):
            if chunk.text:
                first = first or time.perf_counter()
            usage = chunk.usage or usage
        end = time.perf_counter()
        tokens = usage.completion_tokens  # counted by the model's tokenizer
        print(f'local model: {tokens} tokens, {tokens / (end - start):.1f} tokens/s overall, '
              f'{(tokens - 1) / max(end - first, 1e-9):.1f} tokens/s after the first, '
              f'time to first token {1000 * (first - start):.0f} ms')
        await backend.close()
    asyncio.run(measure())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--requests', type=int, default=2000)
    parser.add_argument('--concurrency', type=int, default=32)
    parser.add_argument('--latency-samples', type=int, default=300)
    parser.add_argument('--burst', type=int, default=200)
    parser.add_argument('--rounds', type=int, default=3, help='alternating throughput rounds (median reported)')
    parser.add_argument('--local-tokens', type=int, default=64)
    parser.add_argument('--skip-local', action='store_true')
    args = parser.parse_args()
    print(f'machine: {os.cpu_count()} cores, load average {load_average()}; fake, server, bare proxy and '
          'load generator share them, each in its own process')

    fake_port, server_port, bare_port = free_port(), free_port(), free_port()
    spawn = multiprocessing.get_context('spawn')
    fake = spawn.Process(target=run_fake, args=(fake_port,), daemon=True)
    fake.start()
    bare = spawn.Process(target=run_bare_proxy, daemon=True,
                         args=(bare_port, f'http://127.0.0.1:{fake_port}/v1/chat/completions'))
    bare.start()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / 'config.ini'
        config.write_text(f'''
[llm]
enable_local = 0
enable_remote = 1
[llm.server]
local_llm_bind_port = {server_port}
remote_type = "vllm"
remote_base_url = "http://127.0.0.1:{fake_port}/v1"
remote_api_key = "sk-fake"
remote_llm_model = "fake-model"
rpm = 100000000
tpm = 1000000000
''', encoding='utf-8')
        server = subprocess.Popen([sys.executable, '-m', 'huixiangdou.service.llm_server_hybrid', '--config',
                                   str(config), '--log-level', 'WARNING'], cwd=ROOT)
        try:
            pids = {'fake': fake.pid, 'server': server.pid, 'bare proxy': bare.pid, 'client': os.getpid()}
            asyncio.run(run_http_benches(args, fake_port, server_port, bare_port, pids))
        finally:
            server.terminate()
            server.wait(10)
            fake.terminate()
            bare.terminate()
    print(f'load average after: {load_average()}')
    if not args.skip_local:
        bench_local(args.local_tokens)


def load_average() -> str:
    return ' '.join(f'{x:.2f}' for x in os.getloadavg())


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


async def run_http_benches(args, fake_port: int, server_port: int, bare_port: int, pids: dict) -> None:
    urls = {'direct': f'http://127.0.0.1:{fake_port}/v1/chat/completions',
            'server': f'http://127.0.0.1:{server_port}/v1/chat/completions',
            'bare proxy': f'http://127.0.0.1:{bare_port}/v1/chat/completions'}
    auth = {'Authorization': 'Bearer sk-fake'}
    await wait_ready(f'http://127.0.0.1:{fake_port}/v1/models')
    await wait_ready(f'http://127.0.0.1:{server_port}/health')
    await wait_ready(f'http://127.0.0.1:{bare_port}/health')
    for url in urls.values():  # warm every path (connections, first-call imports)
        await throughput(url, auth, 200, args.concurrency)

    rps: dict[str, list[float]] = {name: [] for name in urls}
    errors = dict.fromkeys(urls, 0)
    cpu_ms: dict[str, dict[str, float]] = {}
    for _ in range(args.rounds):
        for name, url in urls.items():
            before = {p: cpu_seconds(pid) for p, pid in pids.items()}
            rate, failed = await throughput(url, auth, args.requests, args.concurrency)
            rps[name].append(rate)
            errors[name] += failed
            cpu_ms[name] = {p: 1000 * (cpu_seconds(pid) - before[p]) / args.requests for p, pid in pids.items()}
    median = {name: statistics.median(values) for name, values in rps.items()}
    print(f'throughput, {args.requests} requests at concurrency {args.concurrency}, median of {args.rounds} '
          f'alternating rounds: direct {median["direct"]:.0f} req/s, through server {median["server"]:.0f} req/s, '
          f'ratio {median["server"] / median["direct"]:.2f} (target >= 0.7); bare aiohttp proxy '
          f'{median["bare proxy"]:.0f} req/s, ratio {median["bare proxy"] / median["direct"]:.2f} (ceiling for '
          f'any proxy here); server / bare proxy {median["server"] / median["bare proxy"]:.2f}; '
          f'errors {errors["direct"]} / {errors["server"]} / {errors["bare proxy"]}')
    print('  per-round req/s: ' + '; '.join(f'{n} ' + ' '.join(f'{r:.0f}' for r in v) for n, v in rps.items()))
    print(f'CPU ms per request (last round): load generator {cpu_ms["direct"]["client"]:.3f}; '
          f'fake {cpu_ms["direct"]["fake"]:.3f} when called directly; '
          f'server {cpu_ms["server"]["server"]:.3f} (+ fake {cpu_ms["server"]["fake"]:.3f}) through the server; '
          f'bare proxy {cpu_ms["bare proxy"]["bare proxy"]:.3f} (+ fake {cpu_ms["bare proxy"]["fake"]:.3f})')

    p50 = {}
    for name, url in urls.items():
        p50[name] = await latency_p50(url, auth, args.latency_samples)
    print(f'p50 latency, sequential: direct {p50["direct"]:.2f} ms, through server {p50["server"]:.2f} ms, '
          f'added {p50["server"] - p50["direct"]:.2f} ms (target <= 2 ms); bare proxy adds '
          f'{p50["bare proxy"] - p50["direct"]:.2f} ms')
    failed = await burst(urls['server'], auth, args.burst)
    print(f'{args.burst} concurrent requests through the server: {failed} errors (target 0)')


if __name__ == '__main__':
    main()
