"""The entity graph (primitive/entity_graph.py): build time and size, and what it does for retrieval.

    python bench/bench_graph.py [--store DIR] [--synthetic 1000000] [--qa bench/data/qa_realkb.json]
                                [--sample-qa resource/qa_sample.json] [--work-root DIR]

- build: the graph of a built store's chunks (--store, e.g. reject-dev's 16,047), and of issue 14's
  synthetic corpus (--synthetic N chunks, bench/synthetic_corpus.py): seconds, entities, mentions, edges,
  MB on disk, peak memory of this process;
- retrieval: hit@5 / hit@1 of the question's source file through the worker's own Retrieve stage, without
  the graph and with it at each --weights value ([worker] graph_weight), on the sample knowledge base's
  questions (resource/qa_sample.json over repodir/, built in --work-root once) and on --qa over --store.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault('HF_HUB_OFFLINE', '1')
HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))

from loguru import logger  # noqa: E402

from huixiangdou.config import Config, FeatureStoreConfig  # noqa: E402
from huixiangdou.primitive.entity_graph import EntityGraph  # noqa: E402
from huixiangdou.primitive.tokenizer import is_chinese  # noqa: E402
from huixiangdou.service.api_embedder import make_embedder  # noqa: E402
from huixiangdou.service.feature_store.builder import FeatureStoreBuilder  # noqa: E402
from huixiangdou.service.feature_store.store import FeatureStore  # noqa: E402
from huixiangdou.service.worker.retrieve import Retrieve  # noqa: E402
from huixiangdou.service.worker.session import Session  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_row(label: str, chunks) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / 'graph.sqlite'
        start = time.perf_counter()
        graph = EntityGraph.build(chunks, path)
        seconds = time.perf_counter() - start
        db = graph._db
        mentions = db.execute('SELECT COUNT(*) FROM mention').fetchone()[0]
        edges = db.execute('SELECT COUNT(*) FROM edge').fetchone()[0]
        print(f'{label}: {graph.total_chunks:,} chunks -> {len(graph):,} entities, {mentions:,} mentions, '
              f'{edges:,} edges in {seconds:.1f} s ({graph.total_chunks / seconds:,.0f} chunks/s); '
              f'{path.stat().st_size / 1e6:.1f} MB on disk; peak RSS of this process {peak_rss_mb():,.0f} MB',
              flush=True)
        graph.close()


def sample_store(work_root: Path, embedder) -> FeatureStore:
    work = work_root / 'sample-work'
    if not (work / 'CURRENT').exists():
        FeatureStoreBuilder(FeatureStoreConfig(), embedder, progress=False).build(
            HERE / 'repodir', work, good=HERE / 'resource/good_questions.json', bad=HERE / 'resource/bad_questions.json')
    return FeatureStore.load(work, embedder)


def retrieval_rows(label: str, store: FeatureStore, qa: list[dict], weights: list[float]) -> None:
    """hit@5 / hit@1 of each question's source file through the worker's Retrieve stage."""
    if store.graph is None:
        start = time.perf_counter()
        store.graph = EntityGraph.build(store.chunks)
        print(f'  ({label}: the store predates entity graphs; graph built in {time.perf_counter() - start:.1f} s)')
    features = store.featurize([q['question'] for q in qa])
    named = sum(1 for f in features if store.graph.specific(f.evidence.entities))
    print(f'{label}: {len(qa)} questions, {named} of them name a specific entity of the documents')
    base = None
    for weight in [0.0, *weights]:
        retrieve = Retrieve(store, graph_weight=weight)
        hits5 = hits1 = 0

        async def run() -> None:
            nonlocal hits5, hits1
            for q, f in zip(qa, features):
                session = Session(query=q['question'])
                session.features = f
                session.language = 'zh' if is_chinese(q['question']) else 'en'
                await retrieve.run(session)
                files = [p.reference.split('#')[0] for p in session.passages]
                hits5 += q['source'] in files
                hits1 += bool(files) and files[0] == q['source']
        asyncio.run(run())
        n = len(qa)
        base = base or (hits5, hits1)
        note = '' if weight == 0 else f'  ({hits5 - base[0]:+d} / {hits1 - base[1]:+d} questions)'
        print(f'  graph_weight {weight:<4}: hit@5 {hits5 / n:.1%}  hit@1 {hits1 / n:.1%}{note}', flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--store', type=Path, help='a built workdir (e.g. of reject-dev\'s knowledge base)')
    parser.add_argument('--qa', type=Path, default=HERE / 'bench/data/qa_realkb.json', help='questions over --store')
    parser.add_argument('--sample-qa', type=Path, default=HERE / 'resource/qa_sample.json')
    parser.add_argument('--synthetic', type=int, default=1_000_000, help='synthetic chunks (0: skip)')
    parser.add_argument('--weights', default='0.15,0.3,0.6', help='graph_weight values to compare with 0')
    parser.add_argument('--work-root', type=Path, default=Path('/tmp/huixiangdou-bench-graph'))
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level='WARNING')
    weights = [float(w) for w in args.weights.split(',') if w]
    args.work_root.mkdir(parents=True, exist_ok=True)
    print(f'{os.cpu_count()} cores, load average {" / ".join(f"{x:.1f}" for x in os.getloadavg())}')
    embedder = make_embedder(Config())
    embedder.warm_up()
    sample = sample_store(args.work_root, embedder)
    build_row('sample knowledge base', list(sample.chunks))
    store = FeatureStore.load(args.store, embedder) if args.store else None
    if store is not None:
        build_row(f'{args.store}', store.chunks)
    retrieval_rows('sample knowledge base (resource/qa_sample.json)', sample,
                   json.loads(args.sample_qa.read_text(encoding='utf-8')), weights)
    if store is not None:
        retrieval_rows(f'{args.store} ({args.qa.name})', store, json.loads(args.qa.read_text(encoding='utf-8')),
                       weights)
    if args.synthetic:
        from bench import synthetic_corpus
        start = time.perf_counter()
        chunks, _ = synthetic_corpus.chunks(args.synthetic)
        print(f'synthetic corpus: {len(chunks):,} chunks generated in {time.perf_counter() - start:.0f} s', flush=True)
        build_row('synthetic corpus (issue 14)', chunks)
    return 0


if __name__ == '__main__':
    sys.exit(main())
