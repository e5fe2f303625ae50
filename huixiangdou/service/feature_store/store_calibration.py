"""Calibrate a store being built: the examples' evidence against it, the reject model fitted on them, the
threshold and the retrieval weight, written into its manifest and the build report.

Only what changed is computed again (calibration_cache.py). It neither builds nor saves the store (builder.py).
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Callable

import numpy as np
from loguru import logger
from tqdm import tqdm

from huixiangdou.primitive.embedding_cache import EmbeddingCache
from huixiangdou.service.feature_store import calibration
from huixiangdou.service.feature_store.calibration_cache import CalibrationCache, examples_key, store_key
from huixiangdou.service.feature_store.query_features import featurize, query_encoder
from huixiangdou.service.feature_store.reject_evidence import RejectEvidence
from huixiangdou.service.feature_store.reject_model import (MIN_EXAMPLES, RULE_SPECIFIC_WORDS, Calibrated,
                                                            calibrate_reject_model)

# Lines of the example files that quote program output ("StoreError: …", a traceback, a shell prompt): true
# examples, but shown in a build summary they read like the build's own errors.
_OUTPUT_LIKE = re.compile(r'\b\w*(?:Error|Exception)\b|\bERROR\b|Traceback|ErrorCode\.|\bskipped\b|^\s*\$ |\n')


class StoreCalibrator:
    """Usage:
        StoreCalibrator(embedder, 'f1', None, work_dir / CALIBRATION_CACHE, query_cache=lambda: None).run(
            store, good_questions, bad_questions, report)   # sets store.reject_model and the manifest's fields
    """

    def __init__(self, embedder, target: str, fixed_dense_weight: float | None, cache_path: Path,
                 query_cache: Callable[[], EmbeddingCache | None], progress: bool = True,
                 on_fold: Callable[[int, int], None] | None = None):
        """`query_cache()` opens the embedding cache for the examples' query embeddings (None when off);
        `fixed_dense_weight` is [feature_store] reject_dense_weight, None to calibrate it."""
        self.embedder = embedder
        self.target = target
        self.fixed_dense_weight = fixed_dense_weight
        self.cache_path = Path(cache_path)
        self.query_cache = query_cache
        self.progress = progress
        self.on_fold = on_fold   # (done, total) of the message model's fits: the console's calibrate bar

    def run(self, store, good_q: list[str], bad_q: list[str], report) -> None:
        """Fit the reject model on the examples and choose its threshold on cross-validated scores.

        The evidence of examples this store has seen and the message model's fits of an unchanged example set
        are reused: a change of documents refits only the decision layer, a new example costs its own
        evidence and the message model's fits. The scores are those of computing everything afresh."""
        texts = good_q + bad_q
        labels = np.array([1] * len(good_q) + [0] * len(bad_q), dtype=np.int8)
        evidence: list[RejectEvidence] = []
        key = fits = None
        cache = CalibrationCache(self.cache_path) if texts else None
        try:
            if cache is not None:
                evidence = cache.evidence(store_key(store), texts, lambda missing: self._evidence(store, missing))
            if cache is not None and min(len(good_q), len(bad_q)) >= MIN_EXAMPLES:
                key = examples_key(self.embedder.model_id, texts, labels)
                fits = cache.fits(key)
            with tqdm(total=1, desc='calibrate', disable=not self.progress) as bar:
                result = calibrate_reject_model(evidence[:len(good_q)], evidence[len(good_q):], self.target,
                                                fits=fits, on_fold=self.on_fold)
                bar.update(1)
            if key is not None and fits is None and result.fits is not None:
                cache.put_fits(key, result.fits)
            if cache is not None:
                report.calibration_cache = {
                    'evidence_reused': cache.evidence_hits, 'evidence_computed': cache.evidence_computed,
                    'message_fits': None if key is None else ('reused' if fits is not None else 'fitted')}
        finally:
            if cache is not None:
                cache.close()
        self._record(store, good_q, bad_q, evidence, result, report)

    def _evidence(self, store, texts: list[str]) -> list[RejectEvidence]:
        """What the store says about each text; the embeddings come from the embedding cache when it is on."""
        cache = self.query_cache()
        encode = query_encoder(self.embedder)
        try:
            vectors = cache.embed(texts, encode) if cache is not None else encode(texts)
        finally:
            if cache is not None:
                cache.close()
        return [f.evidence for f in featurize(store, texts, vectors)]

    def _record(self, store, good_q: list[str], bad_q: list[str], evidence: list[RejectEvidence],
                result: Calibrated, report) -> None:
        g, b = evidence[:len(good_q)], evidence[len(good_q):]
        arr = lambda items, attr: np.array([getattr(e, attr) for e in items], dtype=np.float64)  # noqa: E731
        # Retrieval mixes scaled cosine and BM25; the weight that best separates the examples by
        # cosine + coverage is the one that trusts the embedding model as much as it deserves here.
        if g and b:
            weight = calibration.calibrate(arr(g, 'cosine'), arr(g, 'coverage'), arr(b, 'cosine'),
                                           arr(b, 'coverage'), weight=self.fixed_dense_weight).weight
        else:
            weight = store.manifest.reject_dense_weight
        model, chosen, met, honest = result.model, result.metrics, result.target_met, result.honest
        if model.kind == 'rule':
            logger.warning('only {} on-topic / {} chatter examples (fewer than {} of either): the reject '
                           'stage uses the conservative rule (answer only messages with {}+ words specific to '
                           'the documents); add examples and rebuild to learn from them', len(g), len(b),
                           MIN_EXAMPLES, RULE_SPECIFIC_WORDS)
        elif not met:
            logger.warning('reject_target {} cannot be met on these examples; using the most precise '
                           'threshold: {}', self.target, chosen)
        fitted = model.score(evidence)
        store.reject_model = model
        store.manifest.reject_threshold = chosen.threshold
        store.manifest.reject_dense_weight = weight
        store.manifest.calibration = {
            'good_questions': len(good_q), 'bad_questions': len(bad_q), 'model': model.kind,
            'target': self.target, 'target_met': met,
            # What a new message meets at the stored threshold (nested: no layer nor the threshold saw the
            # fold scored); 'cross_validated_pooled' is the same scores at the threshold chosen on them.
            'cross_validated': chosen.to_json(), 'cross_validated_pooled': result.pooled.to_json(),
            'in_sample': calibration.metrics_at(fitted[:len(g)], fitted[len(g):], chosen.threshold).to_json(),
            'dense_only': _best(arr(g, 'cosine'), arr(b, 'cosine')),
            'sparse_only': _best(arr(g, 'bm25'), arr(b, 'bm25')),
            'retrieval_dense_weight': weight,
            # Each example's cross-validated P(on-topic), for the console's picture of the two classes.
            'scores': {'good': [round(float(x), 4) for x in honest[:len(g)]],
                       'bad': [round(float(x), 4) for x in honest[len(g):]]},
            'calibrated_at': time.strftime('%Y-%m-%dT%H:%M:%S%z')}
        report.calibration = store.manifest.calibration
        # What the summary shows: on-topic examples it answers and chatter it ignores, by cross-validated score.
        good = sorted((x for x in zip(good_q, honest[:len(g)]) if x[1] >= chosen.threshold), key=lambda x: -x[1])
        bad = sorted((x for x in zip(bad_q, honest[len(g):]) if x[1] < chosen.threshold), key=lambda x: x[1])
        report.examples = {'accepted': showcase([q for q, _ in good]), 'rejected': showcase([q for q, _ in bad])}


def _best(good: np.ndarray, bad: np.ndarray) -> dict | None:
    return calibration.best_threshold(good, bad).to_json() if len(good) and len(bad) else None


def showcase(questions: list[str], n: int = 3) -> list[str]:
    """Up to `n` of `questions` (best first) to show, preferring ones that do not look like program output."""
    plain = [q for q in questions if not _OUTPUT_LIKE.search(q)]
    return (plain + [q for q in questions if _OUTPUT_LIKE.search(q)])[:n]
