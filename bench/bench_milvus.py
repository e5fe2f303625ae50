"""Milvus-lite against FAISS (exact, in process) on one synthetic corpus: insert time, per-query search
latency p50/p95 and their ratio, and how often both return the same top-10.

    python bench/bench_milvus.py --chunks 100000 --queries 200

Figures are for this machine's cores; the ratio against FAISS measured in the same run is what carries
over to other machines. A Milvus server adds a network hop per query that milvus-lite does not have.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script or with -m

from bench import synthetic_corpus  # noqa: E402
from huixiangdou.primitive.dense_index import FaissIndex  # noqa: E402
from huixiangdou.primitive.milvus_index import FileRows, MilvusIndex, connect  # noqa: E402

DIMENSION = 384
CHUNKS_PER_FILE = 100


def corpus(n: int, queries: int) -> tuple[list, np.ndarray, np.ndarray]:
    """The shared synthetic corpus: chunk texts (Milvus stores them), vectors, and unseen query vectors."""
    chunks, _ = synthetic_corpus.chunks(n)
    return chunks, synthetic_corpus.vectors(n, DIMENSION), synthetic_corpus.query_vectors(queries, DIMENSION)


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
    parser.add_argument('--uri', default='', help='a Milvus server ("http://host:19530"); default: milvus-lite '
                        'in a temporary folder. The run creates and drops the collection "bench_milvus"')
    args = parser.parse_args()
    print(f'{os.cpu_count()} cores; {args.chunks} chunks x {DIMENSION} dims; {args.queries} single queries, '
          f'top-{args.k}')
    chunks, vectors, queries = corpus(args.chunks, args.queries)

    start = time.perf_counter()
    faiss_index = FaissIndex(DIMENSION)
    faiss_index.add(vectors)
    faiss_build = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as tmp:
        uri = args.uri or str(Path(tmp) / 'milvus.db')
        client = connect(uri)
        if client.has_collection('bench_milvus'):
            client.drop_collection('bench_milvus')
        start = time.perf_counter()
        milvus = MilvusIndex(client, 'bench_milvus', DIMENSION, uri=uri, exact_max_rows=args.chunks)
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
        client.drop_collection('bench_milvus')
        client.close()

    same_top = float(np.mean([set(a) == set(b) for a, b in zip(f_ids.tolist(), m_ids.tolist())]))
    recall = float(np.mean([len(set(a) & set(b)) / args.k for a, b in zip(f_ids.tolist(), m_ids.tolist())]))
    name = 'milvus-lite' if not args.uri else 'Milvus'
    print(f'Milvus: {args.uri or "milvus-lite (temporary folder)"}')
    print(f'insert/build     FAISS flat {faiss_build:7.2f} s   {name} {milvus_insert:7.2f} s '
          f'(with chunk texts; ratio {milvus_insert / max(faiss_build, 1e-9):.0f}x)')
    for label, p in (('p50', 50), ('p95', 95)):
        f, m = np.percentile(f_ms, p), np.percentile(m_ms, p)
        print(f'search {label}       FAISS {f:8.2f} ms   {name} {m:8.2f} ms   ratio {m / f:5.1f}x')
    verdict = 'meets' if same_top >= 0.95 else 'MISSES'
    print(f'same top-{args.k} set on {same_top:.1%} of queries (target >= 95 %: {verdict}); '
          f'recall@{args.k} of {name} against FAISS exact {recall:.4f}')


if __name__ == '__main__':
    main()
