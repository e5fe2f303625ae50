"""Worker benchmark: pipeline time per query excluding the LLM at ~10k chunks, and the peak RSS of
`python -m huixiangdou.main --standalone` with the default models (the whole process tree).

    python bench/bench_worker.py [--work-dir W] [--mb 5] [--queries 200] [--skip-rss]

Targets (issue): pipeline p50 <= 50 ms on CPU with the default embedding model; peak RSS <= 1.5 GB.
Without --work-dir a synthetic ~5 MB corpus is built first (several minutes on 2 cores).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault('HF_HUB_OFFLINE', '1')

from loguru import logger  # noqa: E402

from bench.bench_feature_store import EN_WORDS, ZH_WORDS, make_corpus, percentile  # noqa: E402
from huixiangdou.config import FeatureStoreConfig, WorkerConfig  # noqa: E402
from huixiangdou.primitive.embedder import LocalEmbedder  # noqa: E402
from huixiangdou.service.feature_store.builder import FeatureStoreBuilder  # noqa: E402
from huixiangdou.service.feature_store.store import FeatureStore  # noqa: E402
from huixiangdou.service.llm_client import LLMReply, StreamPiece  # noqa: E402
from huixiangdou.service.worker.pipeline import Worker  # noqa: E402
from huixiangdou.service.worker.session import Session  # noqa: E402


class InstantLLM:
    """Answers at once, so the measured time is the pipeline's own (the LLM is excluded by design)."""

    async def generate(self, prompt, history=None, backend='auto', **_):
        return LLMReply('answer [1]', 'bench', 'instant')

    async def stream(self, prompt, history=None, backend='auto', **_):
        yield 'answer [1]'

    async def stream_pieces(self, prompt, history=None, backend='auto', **_):
        yield StreamPiece('answer [1].', 'stop')


async def pipeline_latency(store: FeatureStore, queries: list[str]) -> list[float]:
    worker = Worker(WorkerConfig(), store, InstantLLM(), reject_throttle=0.0)
    await worker.run(Session(query='warm up the model and the tokenizer'))
    out = []
    for q in queries:
        t = time.perf_counter()
        await worker.run(Session(query=q))
        out.append((time.perf_counter() - t) * 1000)
    return out


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc] + proc.children(recursive=True):
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def main_peak_rss() -> tuple[float, float, str]:
    """Run main --standalone on the sample knowledge base (default config) and sample the tree's RSS."""
    cmd = [sys.executable, '-m', 'huixiangdou.main', '--standalone', '--query', '怎么重建索引？',
           '--query', 'How do I connect a Lark group?']
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    ps = psutil.Process(proc.pid)
    peak = [0]

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss(ps))
            time.sleep(0.1)
    thread = threading.Thread(target=sample)
    thread.start()
    out, _ = proc.communicate()
    thread.join()
    return peak[0] / 2**20, time.perf_counter() - started, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', help='an existing store to query (built with the default model)')
    parser.add_argument('--mb', type=float, default=5.0)
    parser.add_argument('--queries', type=int, default=200)
    parser.add_argument('--skip-rss', action='store_true')
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level='WARNING')
    embedder = LocalEmbedder('')
    embedder.warm_up()
    if args.work_dir:
        work = Path(args.work_dir)
    else:
        tmp = Path(tempfile.mkdtemp(prefix='hxd-bench-worker-'))
        (tmp / 'repo').mkdir()
        make_corpus(tmp / 'repo', args.mb)
        work = tmp / 'work'
        FeatureStoreBuilder(FeatureStoreConfig(), embedder, progress=True).build(tmp / 'repo', work)
    store = FeatureStore.load(work, embedder)
    rng = random.Random(3)
    queries = [''.join(rng.choices(ZH_WORDS, k=5)) + '？' if i % 2 else ' '.join(rng.choices(EN_WORDS, k=8)) + '?'
               for i in range(args.queries)]
    lat = asyncio.run(pipeline_latency(store, queries))
    print(f'machine: {os.cpu_count()} cores; store: {len(store.chunks)} chunks')
    print(f'pipeline without LLM (preprocess, reject, retrieve, prompt): p50 {percentile(lat, 0.5):.1f} ms, '
          f'p95 {percentile(lat, 0.95):.1f} ms over {len(lat)} queries (target p50 <= 50 ms)')
    if not args.skip_rss:
        peak, seconds, out = main_peak_rss()
        print(f'main --standalone (default models, 2 queries): peak RSS of the process tree {peak:.0f} MB '
              f'in {seconds:.0f}s (target <= 1536 MB)')
        for line in out.strip().splitlines()[-2:]:
            print('  ' + line[:160])


if __name__ == '__main__':
    main()
