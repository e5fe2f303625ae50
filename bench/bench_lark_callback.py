"""Events per second the Lark callback server acknowledges, and its acknowledge latency, while the worker is busy.

The server (real LarkGroupServer: signature check, AES decryption, dedupe, queueing) runs in a child
process with a worker that never finishes, so every event waits in the group queues: once with its inbox in
memory, once with the durable inbox a deployment uses (SQLite in the workdir, each event fsynced before its
200). The baseline is a bare aiohttp handler returning {} under the same load in the same run; the ratios
show what our checks and the durable write cost.

    python bench/bench_lark_callback.py [--events 3000] [--concurrency 32]
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402
from loguru import logger  # noqa: E402

from huixiangdou.config import FrontendConfig, LarkGroupConfig  # noqa: E402
from huixiangdou.frontend.lark_group import LarkGroupServer  # noqa: E402
from tests.frontend.lark_events import message_event, signed_request  # noqa: E402

ENCRYPT_KEY = 'bench-encrypt-key'
TOKEN = 'bench-token'


class BusyWorker:
    """Holds every session forever: the worker is busy for the whole run."""

    async def run(self, session):
        await asyncio.Event().wait()


def serve(kind: str, ready: mp.Queue, stop: mp.Event) -> None:
    logger.remove()
    logger.add(sys.stderr, level='ERROR')

    async def main():
        if kind.startswith('lark_group'):
            group = LarkGroupConfig(app_id='cli_bench', app_secret='s', encrypt_key=ENCRYPT_KEY,
                                    verification_token=TOKEN, port=0, base_url='http://127.0.0.1:9')
            frontend = FrontendConfig(type='lark_group', group_queue_size=1_000_000, lark_group=group)
            state_dir = tempfile.mkdtemp(prefix='bench-inbox-') if kind == 'lark_group_durable' else None
            server = LarkGroupServer(frontend, BusyWorker(), state_dir=state_dir)
            port = await server.start()
        else:
            async def bare(request):
                await request.read()
                return web.json_response({})
            app = web.Application()
            app.router.add_post('/event', bare)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, '127.0.0.1', 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]
        ready.put(port)
        while not stop.is_set():
            await asyncio.sleep(0.05)
        if kind.startswith('lark_group'):
            await server.stop()

    asyncio.run(main())


async def load(port: int, requests: list[tuple[bytes, dict]], concurrency: int) -> tuple[float, list[float]]:
    url = f'http://127.0.0.1:{port}/event'
    latencies: list[float] = []
    queue: asyncio.Queue = asyncio.Queue()
    for item in requests:
        queue.put_nowait(item)

    async def client(http):
        while not queue.empty():
            body, headers = queue.get_nowait()
            start = time.perf_counter()
            async with http.post(url, data=body, headers=headers) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f'server answered {resp.status}')
            latencies.append(time.perf_counter() - start)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        began = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return elapsed, latencies


def measure(kind: str, requests, concurrency: int) -> tuple[float, float, float]:
    ctx = mp.get_context('spawn')
    ready, stop = ctx.Queue(), ctx.Event()
    proc = ctx.Process(target=serve, args=(kind, ready, stop), daemon=True)
    proc.start()
    try:
        port = ready.get(timeout=60)
        asyncio.run(load(port, requests[:200], concurrency))  # warm the connection pool and code paths
        elapsed, latencies = asyncio.run(load(port, requests[200:], concurrency))
    finally:
        stop.set()
        proc.join(10)
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    return len(latencies) / elapsed, statistics.median(latencies) * 1000, p99 * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--events', type=int, default=3000)
    parser.add_argument('--concurrency', type=int, default=32)
    parser.add_argument('--groups', type=int, default=8)
    args = parser.parse_args()
    logger.remove()
    # Built before timing: encrypting and signing is Lark's cost, not ours.
    requests = [signed_request(message_event(f'如何安装 huixiangdou {i}?', chat_id=f'oc_{i % args.groups}',
                                             token=TOKEN), ENCRYPT_KEY)
                for i in range(args.events + 200)]
    base_rate, base_p50, base_p99 = measure('bare', requests, args.concurrency)
    rate, p50, p99 = measure('lark_group', requests, args.concurrency)
    # A fresh server process with an empty inbox file: it stores every event, as for real.
    d_rate, d_p50, d_p99 = measure('lark_group_durable', requests, args.concurrency)
    print(f'cores: {os.cpu_count()}  events: {args.events}  concurrency: {args.concurrency}  '
          f'groups: {args.groups}  worker: busy (never answers)')
    print(f'baseline (bare aiohttp handler): {base_rate:8.0f} events/s  p50 {base_p50:6.2f} ms  p99 {base_p99:6.2f} ms')
    print(f'lark_group, inbox in memory:     {rate:8.0f} events/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms')
    print(f'lark_group, durable inbox:       {d_rate:8.0f} events/s  p50 {d_p50:6.2f} ms  p99 {d_p99:6.2f} ms')
    print(f'ratio to baseline: throughput {rate / base_rate:.2f}x (memory) {d_rate / base_rate:.2f}x (durable), '
          f'p99 latency {p99 / base_p99:.2f}x (memory) {d_p99 / base_p99:.2f}x (durable)')
    print(f'targets (durable): >= 500 events/s ({"met" if d_rate >= 500 else "NOT met"}), '
          f'p99 <= 50 ms ({"met" if d_p99 <= 50 else "NOT met"})')


if __name__ == '__main__':
    main()
