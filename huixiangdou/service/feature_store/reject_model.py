"""The reject decision: a small model fitted on the group's own examples and grounded in the store.

Two linear layers, both explainable. The *message model* learns what on-topic messages of this group
look like from the labelled examples (the message's embedding and its character n-grams). The *decision*
combines its opinion (cross-fitted, so it is never judged on examples it memorised) with the knowledge
base's evidence (reject_evidence.py) into P(on-topic). With fewer than MIN_EXAMPLES of either class it
falls back to a fixed, conservative rule. The decision, saving and explaining live here; the message model
and its cross-fitting in message_model.py; the threshold is chosen in calibration.py.
"""
from __future__ import annotations

import json
import zipfile
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
from threadpoolctl import threadpool_limits

from huixiangdou.config import parse_reject_target
from huixiangdou.service.feature_store.calibration import Metrics, choose_threshold, metrics_at
from huixiangdou.service.feature_store.message_model import ExtraExamples, MessageFits, MessageModel, logistic
from huixiangdou.service.feature_store.reject_evidence import KB_FEATURES, RejectEvidence

__all__ = ['MessageModel', 'MessageFits', 'ExtraExamples', 'Decision', 'RejectModel', 'Calibrated', 'calibrate_reject_model',
           'cross_validated_scores', 'RejectModelError', 'MIN_EXAMPLES', 'RULE_SPECIFIC_WORDS']

MIN_EXAMPLES = 20           # per class; below this the rule decides
RULE_SPECIFIC_WORDS = 3     # the rule: answer a message with at least this many KB-specific words
MODEL_FILE = 'reject_model.npz'
DECISION_FEATURES = ('examples',) + KB_FEATURES


class RejectModelError(RuntimeError):
    """The stored reject model is missing or damaged."""


@dataclass
class Decision:
    """Standardised logistic regression over DECISION_FEATURES: P(on-topic) = sigmoid(w·z + b)."""
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray) -> 'Decision':
        mean = features.mean(axis=0)
        scale = features.std(axis=0)
        scale[scale < 1e-9] = 1.0
        lr = logistic().fit((features - mean) / scale, labels)
        return cls(mean, scale, lr.coef_[0].copy(), float(lr.intercept_[0]))

    def contributions(self, features: np.ndarray) -> np.ndarray:
        return (features - self.mean) / self.scale * self.coef

    def probability(self, features: np.ndarray) -> np.ndarray:
        z = np.atleast_2d(self.contributions(features)).sum(axis=1) + self.intercept
        return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


@dataclass
class RejectModel:
    """Scores messages in [0, 1]; `kind` is "classifier" or "rule" (too few examples to learn from).

    Usage:
        model = RejectModel.fit(good_evidence, bad_evidence)     # lists of RejectEvidence
        model.score(store.evidence(['怎么部署到 TensorRT？']))  # → array([0.87])
    """
    kind: str
    message: MessageModel | None = None
    decision: Decision | None = None
    example_texts: list[str] = field(default_factory=list)
    example_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int8))
    example_vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))

    # -- fitting -------------------------------------------------------------------------------
    @classmethod
    def fit(cls, good: list[RejectEvidence], bad: list[RejectEvidence], min_examples: int = MIN_EXAMPLES,
            fits: MessageFits | None = None, extra: ExtraExamples | None = None) -> 'RejectModel':
        """A classifier, or the rule when either class has fewer than `min_examples` examples. `fits`, the
        message model's fits for exactly these examples in this order, saves fitting them again."""
        evidence = good + bad
        labels = _labels(good, bad)
        texts = [e.query for e in evidence]
        vectors = _vectors(evidence)
        if min(len(good), len(bad)) < max(min_examples, 2):
            return cls('rule', example_texts=texts, example_labels=labels, example_vectors=vectors)
        if fits is None:
            fits = MessageFits.fit(texts, vectors, labels, extra=extra)
        features = np.column_stack([fits.cross_fitted, _kb(evidence)])
        return cls('classifier', fits.full, Decision.fit(features, labels), texts, labels, vectors)

    # -- scoring -------------------------------------------------------------------------------
    def features(self, evidence: list[RejectEvidence]) -> np.ndarray:
        """DECISION_FEATURES per message (classifier only)."""
        texts = [e.query for e in evidence]
        vectors = np.stack([e.vector for e in evidence])
        return np.column_stack([self.message.logits(texts, vectors),
                                np.stack([e.kb_features() for e in evidence])])

    def score(self, evidence: list[RejectEvidence]) -> np.ndarray:
        """P(on-topic) per message; for the rule, specific words / (2 × the rule's count), capped at 1."""
        if not evidence:
            return np.zeros(0)
        if self.kind == 'rule':
            return np.array([min(len(e.specific_words) / (2 * RULE_SPECIFIC_WORDS), 1.0) for e in evidence])
        return self.decision.probability(self.features(evidence))

    @property
    def rule_threshold(self) -> float:
        """The rule's threshold on its own score: exactly RULE_SPECIFIC_WORDS specific words pass."""
        return 0.5 - 1e-9

    # -- explanation ---------------------------------------------------------------------------
    def explain(self, evidence: RejectEvidence, top: int = 3) -> dict:
        """Why this message scores as it does (see decide)."""
        return self.decide(evidence, top)[1]

    def decide(self, evidence: RejectEvidence, top: int = 3) -> tuple[float, dict]:
        """P(on-topic) and why: feature contributions, nearest examples, the n-grams and words that
        mattered, and the best chunks with their citations. Scores the message once."""
        out: dict = {'model': self.kind}
        if self.kind == 'classifier':
            dense, grams = self.message.parts([evidence.query], evidence.vector[None, :])
            logit = float(dense[0] + grams.sum() + self.message.intercept)
            feats = np.concatenate([[logit], evidence.kb_features()])
            contrib = self.decision.contributions(feats)
            score = float(self.decision.probability(feats)[0])
            out['evidence'] = {name: {'value': round(float(v), 4), 'contribution': round(float(c), 3)}
                               for name, v, c in zip(DECISION_FEATURES, feats, contrib)}
            row = grams.getrow(0)
            pairs = sorted(zip(row.indices, row.data), key=lambda p: p[1])
            # char_wb n-grams carry word-boundary spaces; show each stripped text once.
            out['ngrams_against'] = _readable(self.message.ngrams[i] for i, w in pairs if w < 0)[:top]
            out['ngrams_for'] = _readable(self.message.ngrams[i] for i, w in reversed(pairs) if w > 0)[:top]
        else:
            score = float(self.score([evidence])[0])
            out['rule'] = (f'fewer than {MIN_EXAMPLES} on-topic or chatter examples: answer only messages '
                           f'with at least {RULE_SPECIFIC_WORDS} words specific to the knowledge base')
        out['score'] = round(score, 4)
        if len(self.example_texts):
            sims = self.example_vectors @ evidence.vector
            for label, key in ((1, 'nearest_on_topic'), (0, 'nearest_chatter')):
                idx = np.flatnonzero(self.example_labels == label)
                best = idx[np.argsort(-sims[idx])[:top]]
                out[key] = [{'text': self.example_texts[i], 'cosine': round(float(sims[i]), 3)} for i in best]
        out['specific_words'] = [{'word': w, 'specificity': round(s, 2)}
                                 for w, s in evidence.word_specificity[:top * 2] if s > 0]
        # The entity graph's entities the message names (store.explain adds a passage naming each).
        out['entities'] = [m.to_json() for m in getattr(evidence, 'entities', [])[:top * 2]]
        out['best_chunk'] = _chunk_json(evidence.dense_best, 'cosine', evidence.cosine)
        out['best_bm25_chunk'] = _chunk_json(evidence.sparse_best, 'bm25', evidence.bm25)
        return score, out

    # -- disk ----------------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        arrays = {'example_labels': self.example_labels, 'example_vectors': self.example_vectors}
        meta = {'kind': self.kind, 'example_texts': self.example_texts,
                'decision_features': list(DECISION_FEATURES)}
        if self.kind == 'classifier':
            m, d = self.message, self.decision
            arrays.update(center=m.center, vector_coef=m.vector_coef, idf=m.idf, ngram_coef=m.ngram_coef,
                          mean=d.mean, scale=d.scale, coef=d.coef)
            meta.update(ngrams=m.ngrams, message_intercept=m.intercept, decision_intercept=d.intercept)
        arrays['meta'] = np.frombuffer(json.dumps(meta, ensure_ascii=False).encode('utf-8'), dtype=np.uint8)
        with open(Path(folder) / MODEL_FILE, 'wb') as f:
            np.savez_compressed(f, **arrays)

    @classmethod
    def load(cls, folder: Path) -> 'RejectModel':
        path = Path(folder) / MODEL_FILE
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            meta = json.loads(arrays.pop('meta').tobytes().decode('utf-8'))
            if tuple(meta['decision_features']) != DECISION_FEATURES:
                raise RejectModelError(f'{path} was fitted on other features: recalibrate with '
                                       '`python -m huixiangdou.service.feature_store`')
            model = cls(meta['kind'], example_texts=meta['example_texts'],
                        example_labels=arrays['example_labels'], example_vectors=arrays['example_vectors'])
            if model.kind == 'classifier':
                model.message = MessageModel(arrays['center'], arrays['vector_coef'], meta['ngrams'],
                                             arrays['idf'], arrays['ngram_coef'], meta['message_intercept'])
                model.decision = Decision(arrays['mean'], arrays['scale'], arrays['coef'],
                                          meta['decision_intercept'])
            return model
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise RejectModelError(f'cannot read the reject model {path} ({exc}): recalibrate with '
                                   '`python -m huixiangdou.service.feature_store`') from exc


def _readable(grams) -> list[str]:
    return list(dict.fromkeys(g.strip() for g in grams if g.strip()))


def _chunk_json(chunk, name: str, value: float) -> dict | None:
    if chunk is None:
        return None
    text = ' '.join(chunk.text.split())
    return {'reference': chunk.reference, name: round(float(value), 4),
            'text': text[:160] + ('…' if len(text) > 160 else '')}


def _labels(good: list, bad: list) -> np.ndarray:
    return np.array([1] * len(good) + [0] * len(bad), dtype=np.int8)


def _vectors(evidence: list[RejectEvidence]) -> np.ndarray:
    return np.stack([e.vector for e in evidence]).astype(np.float32) if evidence else np.zeros((0, 0))


def _kb(evidence: list[RejectEvidence]) -> np.ndarray:
    return np.stack([e.kb_features() for e in evidence])


@dataclass
class Calibrated:
    """A fitted reject model with its threshold for the target, and the honest metrics there."""
    model: RejectModel
    # At the stored threshold, as a new message would meet it: each fold scored by a model and a threshold
    # chosen without it (nested cross-validation); `threshold` is the stored one.
    metrics: Metrics
    target_met: bool
    honest: np.ndarray                # cross-validated scores of the examples (good then bad)
    fits: MessageFits | None = None   # the message model's fits (None for the rule), for reuse
    pooled: Metrics | None = None     # at the stored threshold on `honest` (chosen on them: optimistic)


def calibrate_reject_model(good: list[RejectEvidence], bad: list[RejectEvidence], target: str = 'f1',
                           min_examples: int = MIN_EXAMPLES, fits: MessageFits | None = None,
                           on_fold: Callable[[int, int], None] | None = None,
                           extra: ExtraExamples | None = None) -> Calibrated:
    """Fit on all examples; choose the threshold on scores the examples got from models that never saw
    them, so the operating point holds for new messages rather than for the memorised ones, and measure it
    as new messages would meet it (each fold's own threshold chosen on the other folds alone).
    `on_fold(done, total)` hears after the fit on all and after each cross-validation fold.

    `fits` (from an earlier calibration on the same examples, calibration_cache.py) skips every message-model
    fit: only the decision layer, which weighs the knowledge base's evidence, is fitted again. `extra` (the
    documents' own questions) trains every message model beside the examples, never scored."""
    evidence = good + bad
    # One BLAS thread: these problems are small (hundreds of rows), and OpenBLAS's threads cost more than
    # they save (the sample store's fits: 4.2 s of CPU with two threads, 1.5 s with one).
    with threadpool_limits(1, user_api='blas'):
        if min(len(good), len(bad)) >= max(min_examples, 2) and fits is None:
            fits = MessageFits.fit([e.query for e in evidence], _vectors(evidence), _labels(good, bad), on_fold,
                                   extra=extra)
        model = RejectModel.fit(good, bad, min_examples=min_examples, fits=fits)
        honest, accepted = _nested(good, bad, target, min_examples=min_examples, fits=fits)
    g, b = honest[:len(good)], honest[len(good):]
    if model.kind == 'rule':
        metrics = metrics_at(g, b, model.rule_threshold)
        min_precision = parse_reject_target(target)
        met = min_precision is None or not len(g) or metrics.precision >= min_precision
        return Calibrated(model, metrics, met, honest, pooled=metrics)
    pooled, met = choose_threshold(g, b, target)
    metrics = _accepted_metrics(accepted[:len(good)], accepted[len(good):], pooled.threshold)
    return Calibrated(model, metrics, met, honest, fits, pooled)


def _accepted_metrics(good: np.ndarray, bad: np.ndarray, threshold: float) -> Metrics:
    """Precision / recall / F1 of accept decisions (True = accepted), reported at `threshold`."""
    return replace(metrics_at(good.astype(np.float64), bad.astype(np.float64), 0.5), threshold=float(threshold))


def cross_validated_scores(good: list[RejectEvidence], bad: list[RejectEvidence],
                           min_examples: int = MIN_EXAMPLES, fits: MessageFits | None = None) -> np.ndarray:
    """Each example's score from a whole model (message model + decision) fitted without its fold:
    the honest scores the threshold is chosen on. Order: good then bad."""
    return _nested(good, bad, 'f1', min_examples, fits)[0]


def _nested(good: list[RejectEvidence], bad: list[RejectEvidence], target: str, min_examples: int,
            fits: MessageFits | None) -> tuple[np.ndarray, np.ndarray]:
    """(cross-validated scores, accepted?) per example: each fold scored by a model fitted without it and
    judged against a threshold chosen on the other folds' own inner cross-validation, so neither the
    message model, its vocabulary, the standardisation, the decision nor the threshold saw the fold."""
    evidence = good + bad
    labels = _labels(good, bad)
    if min(len(good), len(bad)) < max(min_examples, 2):
        rule = RejectModel.fit(good, bad, min_examples)  # the rule learns nothing
        scores = rule.score(evidence)
        return scores, scores >= rule.rule_threshold
    if fits is None:
        fits = MessageFits.fit([e.query for e in evidence], _vectors(evidence), labels)
    kb = _kb(evidence)
    out = np.zeros(len(evidence))
    accepted = np.zeros(len(evidence), dtype=bool)
    for fold in fits.folds:
        train = np.setdiff1d(np.arange(len(evidence)), fold.test)
        if fold.train_logits is None:  # a fold with fewer than two of a class: the rule, as RejectModel.fit
            g = [evidence[i] for i in train if labels[i] == 1]
            b = [evidence[i] for i in train if labels[i] == 0]
            rule = RejectModel.fit(g, b, min_examples=0)
            out[fold.test] = rule.score([evidence[i] for i in fold.test])
            accepted[fold.test] = out[fold.test] >= rule.rule_threshold
            continue
        # The same kind of model as the one fitted on everything, even if a fold dips below the minimum.
        x_train = np.column_stack([fold.train_logits, kb[train]])
        decision = Decision.fit(x_train, labels[train])
        out[fold.test] = decision.probability(np.column_stack([fold.test_logits, kb[fold.test]]))
        accepted[fold.test] = out[fold.test] >= _inner_threshold(x_train, labels[train], fold.train_fold, target)
    return out, accepted


def _inner_threshold(x: np.ndarray, labels: np.ndarray, fold_of: np.ndarray | None, target: str) -> float:
    """The threshold a build on these rows alone would store: chosen on their own cross-validated scores."""
    inner = np.unique(fold_of) if fold_of is not None else np.zeros(0)
    if not len(inner) or any(np.bincount(labels[fold_of != j], minlength=2).min() < 2 for j in inner):
        scores = Decision.fit(x, labels).probability(x)  # too few rows to nest: their own fit's scores
    else:
        scores = np.zeros(len(labels))
        for j in inner:
            held = fold_of == j
            scores[held] = Decision.fit(x[~held], labels[~held]).probability(x[held])
    return choose_threshold(scores[labels == 1], scores[labels == 0], target)[0].threshold
