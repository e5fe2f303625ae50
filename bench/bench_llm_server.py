"""Benchmark the hybrid LLM server: overhead against calling the fake OpenAI service directly, 200
concurrent requests, and the real default local model's tokens/s and time to first token on CPU.

Usage: python bench/bench_llm_server.py [--requests 2000] [--concurrency 32] [--skip-local]
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault('HF_HUB_OFFLINE', '1')


def run_fake(port: int) -> None:
    from tests.fakes.fake_openai import FakeOpenAI

    async def forever():
        async with FakeOpenAI(port=port):
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
    from huixiangdou.service.llm.backend import ChatMessage
    from huixiangdou.service.llm.local_transformers import LocalTransformersBackend

    backend = LocalTransformersBackend(LLMServerConfig(local_llm_max_new_tokens=max_new_tokens))
    start = time.perf_counter()
    backend.warm_up()
    print(f'local model load: {time.perf_counter() - start:.1f}s on {backend.device}')

    async def measure():
        messages = [ChatMessage('user', 'Explain what a search index is, in a few sentences.')]
        await backend.generate([ChatMessage('user', 'hi')], max_new_tokens=2)  # first-call warm-up
        start = time.perf_counter()
        first, pieces = None, []
        async for piece in backend.stream(messages):
            first = first or time.perf_counter()
            pieces.append(piece)
        end = time.perf_counter()
        tokens = len(backend._tokenizer.encode(''.join(pieces), add_special_tokens=False))
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
    parser.add_argument('--local-tokens', type=int, default=64)
    parser.add_argument('--skip-local', action='store_true')
    args = parser.parse_args()
    print(f'machine: {os.cpu_count()} cores; fake, server and load generator share them')

    fake_port, server_port = free_port(), free_port()
    fake = multiprocessing.get_context('spawn').Process(target=run_fake, args=(fake_port,), daemon=True)
    fake.start()
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
            asyncio.run(run_http_benches(args, fake_port, server_port))
        finally:
            server.terminate()
            server.wait(10)
            fake.terminate()
    if not args.skip_local:
        bench_local(args.local_tokens)


async def run_http_benches(args, fake_port: int, server_port: int) -> None:
    direct = f'http://127.0.0.1:{fake_port}/v1/chat/completions'
    proxied = f'http://127.0.0.1:{server_port}/v1/chat/completions'
    auth = {'Authorization': 'Bearer sk-fake'}
    await wait_ready(f'http://127.0.0.1:{fake_port}/v1/models')
    await wait_ready(f'http://127.0.0.1:{server_port}/health')
    await throughput(proxied, auth, 200, args.concurrency)  # warm both paths
    await throughput(direct, auth, 200, args.concurrency)
    rps_direct, err_direct = await throughput(direct, auth, args.requests, args.concurrency)
    rps_server, err_server = await throughput(proxied, auth, args.requests, args.concurrency)
    print(f'throughput, {args.requests} requests at concurrency {args.concurrency}: direct {rps_direct:.0f} req/s, '
          f'through server {rps_server:.0f} req/s, ratio {rps_server / rps_direct:.2f} (target >= 0.7); '
          f'errors {err_direct} / {err_server}')
    p50_direct = await latency_p50(direct, auth, args.latency_samples)
    p50_server = await latency_p50(proxied, auth, args.latency_samples)
    print(f'p50 latency, sequential: direct {p50_direct:.2f} ms, through server {p50_server:.2f} ms, '
          f'added {p50_server - p50_direct:.2f} ms (target <= 2 ms)')
    errors = await burst(proxied, auth, args.burst)
    print(f'{args.burst} concurrent requests through the server: {errors} errors (target 0)')


if __name__ == '__main__':
    main()
