"""Milvus-lite against FAISS (exact, in process) on one synthetic corpus: insert time, per-query search
latency p50/p95 and their ratio, and how often both return the same top-10.

    .venv/bin/python -m bench.bench_milvus --chunks 100000 --queries 200

Figures are for this machine's cores; the ratio against FAISS measured in the same run is what carries
over to other machines. A Milvus server adds a network hop per query that milvus-lite does not have.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from huixiangdou.primitive.dense_index import FaissIndex
from huixiangdou.primitive.milvus_index import FileRows, MilvusIndex, connect

try:
    from bench import synthetic_corpus
except ImportError:  # the generator lives beside this script; fall back to plain random vectors
    synthetic_corpus = None

DIMENSION = 384
CHUNKS_PER_FILE = 100


def corpus(n: int, queries: int) -> tuple[list, np.ndarray, np.ndarray]:
    if synthetic_corpus is not None:
        chunks, _ = synthetic_corpus.chunks(n)
        return chunks, synthetic_corpus.vectors(n, DIMENSION), synthetic_corpus.query_vectors(queries, DIMENSION)
    rng = np.random.default_rng(0)

    def unit(m):
        v = rng.standard_normal((m, DIMENSION)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)
    return [None] * n, unit(n), unit(queries)


def per_query_ms(search, queries: np.ndarray) -> np.ndarray:
    times = []
    for q in queries:
        start = time.perf_counter()
        search(q[None, :])
        times.append((time.perf_counter() - start) * 1000)
    return np.array(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--chunks', type=int, default=100_000)
    parser.add_argument('--queries', type=int, default=200)
    parser.add_argument('--k', type=int, default=10)
    args = parser.parse_args()
    print(f'{os.cpu_count()} cores; {args.chunks} chunks x {DIMENSION} dims; {args.queries} single queries, '
          f'top-{args.k}')
    chunks, vectors, queries = corpus(args.chunks, args.queries)

    start = time.perf_counter()
    faiss_index = FaissIndex(DIMENSION)
    faiss_index.add(vectors)
    faiss_build = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as tmp:
        uri = str(Path(tmp) / 'milvus.db')
        start = time.perf_counter()
        milvus = MilvusIndex(connect(uri), 'bench', DIMENSION, uri=uri)
        files = [FileRows(f'doc{i:06d}.md', 'sha', i, min(CHUNKS_PER_FILE, args.chunks - i))
                 for i in range(0, args.chunks, CHUNKS_PER_FILE)]
        milvus.sync(files, chunks, vectors)
        milvus_insert = time.perf_counter() - start
        # Warm both (first-query costs: thread pools, segment loading) before timing.
        faiss_index.search(queries[:2], args.k)
        milvus.search(queries[:2], args.k)
        f_ms = per_query_ms(lambda q: faiss_index.search(q, args.k), queries)
        m_ms = per_query_ms(lambda q: milvus.search(q, args.k), queries)
        f_ids = faiss_index.search(queries, args.k)[1]
        m_ids = milvus.search(queries, args.k)[1]
        milvus.client.close()

    same_top = float(np.mean([set(a) == set(b) for a, b in zip(f_ids.tolist(), m_ids.tolist())]))
    recall = float(np.mean([len(set(a) & set(b)) / args.k for a, b in zip(f_ids.tolist(), m_ids.tolist())]))
    print(f'insert/build     FAISS flat {faiss_build:7.2f} s   milvus-lite {milvus_insert:7.2f} s '
          f'(with chunk texts; ratio {milvus_insert / max(faiss_build, 1e-9):.0f}x)')
    for name, p in (('p50', 50), ('p95', 95)):
        f, m = np.percentile(f_ms, p), np.percentile(m_ms, p)
        print(f'search {name}       FAISS {f:8.2f} ms   milvus-lite {m:8.2f} ms   ratio {m / f:5.1f}x')
    verdict = 'meets' if same_top >= 0.95 else 'MISSES'
    print(f'same top-{args.k} set on {same_top:.1%} of queries (target >= 95 %: {verdict}); '
          f'recall@{args.k} of milvus-lite against FAISS exact {recall:.4f}')


if __name__ == '__main__':
    main()
