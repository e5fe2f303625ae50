"""How the feature store scales on one machine: build, load, memory, reject + retrieve latency, and the
approximate index's recall, on synthetic stores of 100k and 1M chunks (bench/synthetic_corpus.py).

    python bench/bench_scale.py --sizes 100000 1000000 --work-root /tmp/hx-scale

Stores are written under --work-root once and reused by later runs (--rebuild writes them again). Load,
memory and latency are measured in a fresh process per size, so nothing is warm but the OS page cache.
The baseline is exact search (FAISS flat over the same vectors) measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGETS_1M = {'load_s': 10.0, 'rss_gb': 4.0, 'reject_retrieve_p50_ms': 50.0, 'recall_at_10': 0.95}
QUERIES = 300


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _rss_split() -> tuple[float, float]:
    """(anonymous, file-backed) resident GB from /proc (Linux); mapped file pages are page cache."""
    fields = {}
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith(('RssAnon:', 'RssFile:')):
            key, value = line.split(':')
            fields[key] = int(value.split()[0]) / 1e6
    return fields.get('RssAnon', 0.0), fields.get('RssFile', 0.0)


def build(folder: Path, n: int, exact_max: int, rebuild: bool) -> dict:
    from bench import synthetic_corpus
    times_file = folder / 'bench_build.json'
    if not rebuild and (folder / 'CURRENT').is_file() and times_file.is_file():
        return json.loads(times_file.read_text()) | {'reused': True}
    folder.mkdir(parents=True, exist_ok=True)
    times = synthetic_corpus.write_store(folder, n, exact_search_max_chunks=exact_max)
    times_file.write_text(json.dumps(times))
    return times


def measure(folder: Path) -> dict:
    """Runs in a fresh process: load, RSS, per-query latency, recall against exact search."""
    import faiss
    import numpy as np
    import psutil

    from bench import synthetic_corpus
    from huixiangdou.primitive.dense_index import recall_at
    from huixiangdou.service.feature_store import FeatureStore

    embedder = synthetic_corpus.SyntheticEmbedder()
    rss_before = psutil.Process().memory_info().rss
    t0 = time.perf_counter()
    store = FeatureStore.load(folder, embedder)
    load_s = time.perf_counter() - t0
    rss_gb = psutil.Process().memory_info().rss / 1e9
    words = synthetic_corpus.chunk_words(QUERIES, seed=99, words_per_chunk=8)
    texts = [synthetic_corpus.chunk_text(w[:4 + i % 5]) for i, w in enumerate(words)]
    store.featurize(texts[:5])  # first-touch costs (bm25s, faiss) are not a query's
    reject_ms, retrieve_ms = [], []
    for text in texts:
        t1 = time.perf_counter()
        features = store.featurize([text])[0]   # embedding, BM25, evidence: what the reject stage costs
        t2 = time.perf_counter()
        store.search(features, k=5)
        t3 = time.perf_counter()
        reject_ms.append((t2 - t1) * 1e3)
        retrieve_ms.append((t3 - t2) * 1e3)
    rss_after_gb = psutil.Process().memory_info().rss / 1e9
    anon_gb, file_gb = _rss_split()
    total = [a + b for a, b in zip(reject_ms, retrieve_ms)]
    queries = synthetic_corpus.query_vectors(100, seed=5)  # around the corpus's topics, not stored
    vectors = np.ascontiguousarray(store.vectors)
    faiss.omp_set_num_threads(1)
    t4 = time.perf_counter()
    exact_scores, exact = faiss.knn(queries[:20], vectors, 10, metric=faiss.METRIC_INNER_PRODUCT)
    exact_ms = (time.perf_counter() - t4) * 1e3 / 20
    _, exact = faiss.knn(queries, vectors, 10, metric=faiss.METRIC_INNER_PRODUCT)
    t5 = time.perf_counter()
    found = [store.dense.search(q[None, :], 10)[1][0] for q in queries]
    index_ms = (time.perf_counter() - t5) * 1e3 / len(queries)
    return {'chunks': len(store.chunks), 'load_s': load_s, 'rss_gb': rss_gb, 'rss_base_gb': rss_before / 1e9,
            'rss_after_queries_gb': rss_after_gb, 'rss_anon_gb': anon_gb, 'rss_file_gb': file_gb, 'chunk_rows_read': store.chunks.rows_read,
            'dense_index': store.manifest.dense_index, 'recall_at_10_build': store.manifest.dense_recall_at_10,
            'recall_at_10_fresh': recall_at(exact, np.array(found)),
            'reject_p50_ms': percentile(reject_ms, 0.5), 'reject_p95_ms': percentile(reject_ms, 0.95),
            'retrieve_p50_ms': percentile(retrieve_ms, 0.5), 'retrieve_p95_ms': percentile(retrieve_ms, 0.95),
            'reject_retrieve_p50_ms': percentile(total, 0.5), 'reject_retrieve_p95_ms': percentile(total, 0.95),
            'reject_retrieve_mean_ms': statistics.fmean(total),
            'dense_search_ms': index_ms, 'exact_search_ms': exact_ms}


def report(n: int, built: dict, m: dict) -> None:
    print(f'\n== {n:,} chunks ({os.cpu_count()} cores) ==')
    if built.get('reused'):
        print('build: reused the store from an earlier run (timings below are from that run)')
    print(f"build: generate {built['generate']:.1f} s, dense index {built['dense']:.1f} s "
          f"({built['dense_index']}), BM25 {built['sparse']:.1f} s, write (chunk table, arrays) {built['save']:.1f} s")
    print(f"load {m['load_s']:.2f} s; RSS {m['rss_gb']:.2f} GB after load ({m['rss_base_gb']:.2f} GB before), "
          f"{m['rss_after_queries_gb']:.2f} GB after {QUERIES} queries ({m['rss_anon_gb']:.2f} GB own memory, "
          f"{m['rss_file_gb']:.2f} GB pages of memory-mapped files, reclaimable); chunk rows read: {m['chunk_rows_read']:,}")
    print(f"reject (featurize + evidence) p50 {m['reject_p50_ms']:.1f} ms, p95 {m['reject_p95_ms']:.1f} ms; "
          f"retrieve p50 {m['retrieve_p50_ms']:.1f} ms, p95 {m['retrieve_p95_ms']:.1f} ms; "
          f"together p50 {m['reject_retrieve_p50_ms']:.1f} ms, p95 {m['reject_retrieve_p95_ms']:.1f} ms")
    recall_build = m['recall_at_10_build']
    print(f"dense index {m['dense_index']}: {m['dense_search_ms']:.2f} ms a query vs exact flat "
          f"{m['exact_search_ms']:.2f} ms (ratio {m['dense_search_ms'] / m['exact_search_ms']:.2f}); recall@10 "
          f"{'1 (exact)' if recall_build is None else f'{recall_build:.3f}'} at build (stored vectors as queries), "
          f"{m['recall_at_10_fresh']:.3f} on 100 fresh queries")
    if n >= 1_000_000:
        got = {'load_s': m['load_s'], 'rss_gb': m['rss_gb'], 'reject_retrieve_p50_ms': m['reject_retrieve_p50_ms'],
               'recall_at_10': m['recall_at_10_fresh']}
        for key, target in TARGETS_1M.items():
            ok = got[key] >= target if key == 'recall_at_10' else got[key] <= target
            print(f"  target {key}: {got[key]:.3f} vs {'>=' if key == 'recall_at_10' else '<='} {target} "
                  f"{'met' if ok else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--sizes', type=int, nargs='+', default=[100_000, 1_000_000])
    parser.add_argument('--work-root', type=Path, default=Path('/tmp/huixiangdou-scale'))
    parser.add_argument('--exact-search-max-chunks', type=int, default=200_000)
    parser.add_argument('--rebuild', action='store_true')
    parser.add_argument('--measure', type=Path, help=argparse.SUPPRESS)  # the fresh child process
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    for n in args.sizes:
        folder = args.work_root / f'chunks-{n}'
        built = build(folder, n, args.exact_search_max_chunks, args.rebuild)
        out = subprocess.run([sys.executable, __file__, '--measure', str(folder)], capture_output=True,
                             text=True, check=True)
        report(n, built, json.loads(out.stdout.strip().splitlines()[-1]))


if __name__ == '__main__':
    main()
