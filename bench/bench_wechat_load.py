"""What 200 concurrent personal-WeChat requests across 50 groups get: answered, queued, rate limited, timed out.

The real WechatPersonalServer runs in a child process on 127.0.0.1. Its worker simulates the real one:
every message burns `--cpu-ms` of CPU in a thread (embedding, BM25 and rerank of the query; hashing
releases the GIL as torch does), and a question (every other message) then waits `--llm-seconds` for
the remote LLM. Groups answer one message at a time, so later messages of a group wait behind earlier ones.

1. Our synchronous format, `reply_timeout` seconds per request: counts by status, latency p50/p95, and
   how many answers the worker still computed after their request had timed out. The baseline is the
   same server with the timeout's cancellation switched off (the behaviour before it), in the same run.
2. The Android app's format: 200 text posts (acknowledged at once), then per group the app's two polls
   `--poll-interval` seconds apart; what they collect, and what stays queued for a later poll.

    python bench/bench_wechat_load.py [--requests 200] [--groups 50] [--reply-timeout 2.5] [--poll-interval 5]
                                      [--queue-size 32] [--rate-per-minute 10]
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import multiprocessing as mp
import os
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp  # noqa: E402
from loguru import logger  # noqa: E402

from huixiangdou.config import FrontendConfig  # noqa: E402
from huixiangdou.frontend.wechat_personal import WechatPersonalServer  # noqa: E402
from huixiangdou.service.worker.session import ErrorCode, Session  # noqa: E402

PATH = '/huixiangdou/Zq3vX9kLm2Tr8WbYc4Hd'
BLOCK = os.urandom(64 * 1024)


class SimulatedWorker:
    """CPU for retrieval on every message, then an LLM wait for questions; records what it finished."""

    def __init__(self, cpu_ms: float, llm_seconds: float):
        self.cpu_ms = cpu_ms
        self.llm_seconds = llm_seconds
        self.finished: list[str] = []
        self.cancelled = 0
        self.first_start = self.last_end = 0.0   # wall clock span in which the worker had work

    def _retrieve(self) -> None:
        until = time.perf_counter() + self.cpu_ms / 1000
        while time.perf_counter() < until:
            hashlib.sha256(BLOCK).digest()

    async def run(self, session: Session) -> Session:
        self.first_start = self.first_start or time.perf_counter()
        try:
            await asyncio.get_running_loop().run_in_executor(None, self._retrieve)
            if not session.query.endswith('?'):
                return session.finish(ErrorCode.UNRELATED)
            await asyncio.sleep(self.llm_seconds)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.last_end = time.perf_counter()
        self.finished.append(session.query)
        return session.finish(ErrorCode.SUCCESS, f'Answer to: {session.query}')


class ServerWithoutCancel(WechatPersonalServer):
    """The baseline: a request that times out leaves its message queued or its worker call running."""

    def _give_up(self, message) -> None:
        pass


def serve(cancel: bool, args: argparse.Namespace, ready: mp.Queue, stop: mp.Event, report: mp.Queue) -> None:
    logger.remove()
    logger.add(sys.stderr, level='ERROR')

    async def main():
        frontend = FrontendConfig(type='wechat_personal', group_queue_size=args.queue_size,
                                  reply_rate_per_minute=args.rate_per_minute)
        settings = frontend.wechat_personal
        settings.host, settings.path, settings.reply_timeout = '127.0.0.1', PATH, args.reply_timeout
        worker = SimulatedWorker(args.cpu_ms, args.llm_seconds)
        server = (WechatPersonalServer if cancel else ServerWithoutCancel)(frontend, worker, port=0)
        ready.put(await server.start())
        while not stop.is_set():
            await asyncio.sleep(0.02)
        await server.dispatcher.wait_idle()   # the baseline may still be computing discarded answers
        report.put({'finished': worker.finished, 'cancelled': worker.cancelled,
                    'busy': worker.last_end - worker.first_start})
        await server.stop()

    asyncio.run(main())


def texts(args) -> list[tuple[str, str]]:
    """(group, text) for each request; every other message is a question (ends with '?').

    Message i goes to group i % groups, so with an even group count half the groups get only
    questions (their later ones wait seconds behind the earlier) and half only chatter.
    """
    return [(f'group-{i % args.groups}', f'message {i} ' + ('how do I install huixiangdou?' if i % 2 == 0
                                                             else 'nice weather today'))
            for i in range(args.requests)]


async def fire_sync(port: int, messages) -> list[tuple[str, str, float]]:
    url = f'http://127.0.0.1:{port}{PATH}'

    async def one(http, group, text):
        began = time.perf_counter()
        async with http.post(url, json={'group_id': group, 'content': text}) as resp:
            body = await resp.json()
        return text, body.get('status', f'http {resp.status}'), time.perf_counter() - began

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        return await asyncio.gather(*(one(http, g, t) for g, t in messages))


async def fire_app(port: int, messages, poll_interval: float, wait_after: float):
    url = f'http://127.0.0.1:{port}{PATH}'
    headers = {'Content-Type': 'application/json; charset=utf-8'}

    def body(group, kind, content):
        return {'query_id': group, 'groupname': group, 'username': 'bench', 'query': {'type': kind, 'content': content}}

    async def post(http, group, kind, content=''):
        began = time.perf_counter()
        async with http.post(url, json=body(group, kind, content), headers=headers) as resp:
            data = await resp.json()
        return resp.status, data, time.perf_counter() - began

    async def poll_twice(http, group):
        items = []
        for _ in range(2):   # the app: poll, sleep, poll, sleep
            items += (await post(http, group, 'poll'))[1]['data']
            await asyncio.sleep(poll_interval)
        return items

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        acks = await asyncio.gather(*(post(http, g, 'text', t) for g, t in messages))
        groups = sorted({g for g, _ in messages})
        by_app = await asyncio.gather(*(poll_twice(http, g) for g in groups))
        await asyncio.sleep(wait_after)   # the answers the app's polls missed wait for its next message
        later = await asyncio.gather(*(post(http, g, 'poll') for g in groups))
    return acks, [i for items in by_app for i in items], [i for _, data, _ in later for i in data['data']]


def run_server(cancel: bool, args, client):
    ctx = mp.get_context('spawn')
    ready, stop, report = ctx.Queue(), ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=serve, args=(cancel, args, ready, stop, report), daemon=True)
    proc.start()
    try:
        port = ready.get(timeout=60)
        result = asyncio.run(client(port))
        stop.set()
        stats = report.get(timeout=120)
    finally:
        stop.set()
        proc.join(30)
    return result, stats


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--requests', type=int, default=200)
    parser.add_argument('--groups', type=int, default=50)
    parser.add_argument('--cpu-ms', type=float, default=15.0)
    parser.add_argument('--llm-seconds', type=float, default=1.0)
    parser.add_argument('--reply-timeout', type=float, default=2.5)
    parser.add_argument('--poll-interval', type=float, default=5.0)
    defaults = FrontendConfig()
    parser.add_argument('--queue-size', type=int, default=defaults.group_queue_size)
    parser.add_argument('--rate-per-minute', type=int, default=defaults.reply_rate_per_minute)
    args = parser.parse_args()
    logger.remove()
    messages = texts(args)
    print(f'cores: {os.cpu_count()}  requests: {args.requests} at once  groups: {args.groups}  '
          f'group_queue_size: {args.queue_size}  reply_rate_per_minute: {args.rate_per_minute}')
    print(f'worker: {args.cpu_ms:.0f} ms CPU per message (retrieval), then {args.llm_seconds:.1f} s LLM wait for '
          f'the {sum(t.endswith("?") for _, t in messages)} questions; one message at a time per group')

    print(f'\n1. our synchronous format, reply_timeout {args.reply_timeout} s')
    rows = {}
    for label, cancel in (('with cancellation', True), ('baseline, no cancellation', False)):
        results, stats = run_server(cancel, args, lambda port: fire_sync(port, messages))
        counts = Counter(status for _, status, _ in results)
        timed_out = {text for text, status, _ in results if status == 'timeout'}
        wasted = sum(1 for text in stats['finished'] if text in timed_out)
        rows[label] = wasted, stats['busy']
        latencies = [lat for _, _, lat in results]
        known = ('answered', 'silent', 'rate_limited', 'queue_full', 'timeout')
        print(f'  {label:26s} ' + '  '.join(f'{k} {counts[k]:3d}' for k in known)
              + f'  other {len(results) - sum(counts[k] for k in known)}'
              + f'  p50 {pct(latencies, 0.5):5.0f} ms  p95 {pct(latencies, 0.95):5.0f} ms')
        print(f'  {"":26s} answers computed after their request timed out: {wasted}  '
              f'(worker calls cancelled: {stats["cancelled"]}); worker busy for {stats["busy"]:.2f} s')
    (with_wasted, with_busy), (base_wasted, base_busy) = rows.values()
    print(f'  cancellation vs baseline: discarded answers computed {with_wasted} vs {base_wasted}; '
          f'worker busy {with_busy / base_busy:.2f}x as long')

    print(f'\n2. Android app format: text posts, then two polls {args.poll_interval} s apart per group')
    wait_after = max(0.0, args.llm_seconds * args.requests / args.groups + 1 - 2 * args.poll_interval)
    (acks, by_app, later), _ = run_server(True, args, lambda port: fire_app(port, messages, args.poll_interval,
                                                                            wait_after))
    ack_status = Counter(status for status, _, _ in acks)
    codes = Counter(item['rsp']['state'] for item in by_app + later)
    print(f'  text posts acknowledged: {ack_status[200]}/{len(acks)}  ack p50 {pct([a[2] for a in acks], 0.5):.1f} ms'
          f'  p95 {pct([a[2] for a in acks], 0.95):.1f} ms')
    print(f'  collected by the app\'s two polls: {len(by_app)} '
          f'({sum(i["rsp"]["code"] == 0 for i in by_app)} answers to post)  '
          f'still queued for a later poll: {len(later)} ({sum(i["rsp"]["code"] == 0 for i in later)} answers)')
    print(f'  outcomes by state: {dict(sorted(codes.items()))}')


if __name__ == '__main__':
    main()
