"""The reject decision: a small model fitted on the group's own examples and grounded in the store.

Two linear layers, both explainable. The *message model* learns what on-topic messages of this group
look like from the labelled examples (the message's embedding and its character n-grams). The *decision*
combines its opinion (cross-fitted, so it is never judged on examples it memorised) with the knowledge
base's evidence (reject_evidence.py) into P(on-topic). With fewer than MIN_EXAMPLES of either class it
falls back to a fixed, conservative rule. Fitting, saving and explaining live here; the threshold is
chosen in calibration.py.
"""
from __future__ import annotations

import json
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.sparse as sps
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from huixiangdou.config import parse_reject_target
from huixiangdou.service.feature_store.calibration import Metrics, choose_threshold, metrics_at
from huixiangdou.service.feature_store.reject_evidence import KB_FEATURES, RejectEvidence

MIN_EXAMPLES = 20           # per class; below this the rule decides
RULE_SPECIFIC_WORDS = 3     # the rule: answer a message with at least this many KB-specific words
FOLDS = 5
MODEL_FILE = 'reject_model.npz'
DECISION_FEATURES = ('examples',) + KB_FEATURES
# Message-model settings chosen by 5-fold cross-validation on a real group's 680 labelled messages
# (docs/feature_store.md): the embedding carries meaning, character n-grams carry jargon and code.
_VECTOR_SCALE = 3.0
_NGRAM_SCALE = 0.5
_C = 1.0


class RejectModelError(RuntimeError):
    """The stored reject model is missing or damaged."""


def _vectorizer(**kwargs) -> TfidfVectorizer:
    return TfidfVectorizer(analyzer='char_wb', ngram_range=(1, 3), sublinear_tf=True, lowercase=True,
                           dtype=np.float64, **kwargs)


def _logistic() -> LogisticRegression:
    # Balanced: chatter usually outnumbers questions, and the threshold is chosen afterwards anyway.
    return LogisticRegression(C=_C, class_weight='balanced', max_iter=5000)


@dataclass
class MessageModel:
    """Linear model over [embedding - mean, character n-gram TF-IDF] of the message alone."""
    center: np.ndarray
    vector_coef: np.ndarray
    ngrams: list[str]
    idf: np.ndarray
    ngram_coef: np.ndarray
    intercept: float
    _vectorizer: TfidfVectorizer | None = field(default=None, repr=False)

    @classmethod
    def fit(cls, texts: list[str], vectors: np.ndarray, labels: np.ndarray) -> 'MessageModel':
        vec = _vectorizer().fit(texts)
        center = vectors.mean(axis=0)
        x = sps.hstack([sps.csr_matrix((vectors - center) * _VECTOR_SCALE),
                        _NGRAM_SCALE * vec.transform(texts)]).tocsr()
        lr = _logistic().fit(x, labels)
        coef = lr.coef_[0]
        d = vectors.shape[1]
        ngrams = [''] * len(vec.vocabulary_)
        for gram, i in vec.vocabulary_.items():
            ngrams[i] = gram
        return cls(center.astype(np.float64), coef[:d].copy(), ngrams, vec.idf_.copy(), coef[d:].copy(),
                   float(lr.intercept_[0]), vec)

    @property
    def vectorizer(self) -> TfidfVectorizer:
        if self._vectorizer is None:
            vec = _vectorizer(vocabulary={g: i for i, g in enumerate(self.ngrams)})
            vec.idf_ = self.idf
            self._vectorizer = vec
        return self._vectorizer

    def parts(self, texts: list[str], vectors: np.ndarray) -> tuple[np.ndarray, sps.csr_matrix]:
        """(embedding part of the logit per text, weighted n-gram matrix) for explanation and scoring."""
        dense = ((vectors - self.center) * _VECTOR_SCALE) @ self.vector_coef
        grams = self.vectorizer.transform(texts).multiply(_NGRAM_SCALE * self.ngram_coef).tocsr()
        return dense, grams

    def logits(self, texts: list[str], vectors: np.ndarray) -> np.ndarray:
        dense, grams = self.parts(texts, vectors)
        return dense + np.asarray(grams.sum(axis=1)).ravel() + self.intercept


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
        lr = _logistic().fit((features - mean) / scale, labels)
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
    def fit(cls, good: list[RejectEvidence], bad: list[RejectEvidence],
            min_examples: int = MIN_EXAMPLES) -> 'RejectModel':
        """A classifier, or the rule when either class has fewer than `min_examples` examples."""
        evidence = good + bad
        labels = np.array([1] * len(good) + [0] * len(bad), dtype=np.int8)
        texts = [e.query for e in evidence]
        vectors = np.stack([e.vector for e in evidence]).astype(np.float32) if evidence else np.zeros((0, 0))
        if min(len(good), len(bad)) < max(min_examples, 2):
            return cls('rule', example_texts=texts, example_labels=labels, example_vectors=vectors)
        examples = cross_fitted_logits(texts, vectors, labels)
        features = np.column_stack([examples, np.stack([e.kb_features() for e in evidence])])
        return cls('classifier', MessageModel.fit(texts, vectors, labels), Decision.fit(features, labels),
                   texts, labels, vectors)

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


@dataclass
class Calibrated:
    """A fitted reject model with its threshold for the target, and the honest metrics there."""
    model: RejectModel
    metrics: Metrics                  # at the threshold, on cross-validated scores of the examples
    target_met: bool
    honest: np.ndarray                # cross-validated scores of the examples (good then bad)


def calibrate_reject_model(good: list[RejectEvidence], bad: list[RejectEvidence], target: str = 'f1',
                           min_examples: int = MIN_EXAMPLES,
                           on_fold: Callable[[int, int], None] | None = None) -> Calibrated:
    """Fit on all examples; choose the threshold on scores the examples got from models that never saw
    them, so the operating point holds for new messages rather than for the memorised ones.
    `on_fold(done, total)` hears after the fit on all and after each cross-validation fold."""
    on_fold = on_fold or (lambda done, total: None)
    folds = _fold_count(good, bad, min_examples)
    model = RejectModel.fit(good, bad, min_examples=min_examples)
    on_fold(1, folds + 1)
    honest = cross_validated_scores(good, bad, min_examples=min_examples,
                                    on_fold=lambda done: on_fold(1 + done, folds + 1))
    g, b = honest[:len(good)], honest[len(good):]
    if model.kind == 'rule':
        metrics = metrics_at(g, b, model.rule_threshold)
        min_precision = parse_reject_target(target)
        met = min_precision is None or not len(g) or metrics.precision >= min_precision
        return Calibrated(model, metrics, met, honest)
    metrics, met = choose_threshold(g, b, target)
    return Calibrated(model, metrics, met, honest)


def _fold_count(good: list, bad: list, min_examples: int) -> int:
    """How many folds cross_validated_scores fits (0 when the examples are too few to learn from)."""
    if min(len(good), len(bad)) < max(min_examples, 2):
        return 0
    return min(FOLDS, len(good), len(bad))


def _folds(labels: np.ndarray, seed: int = 0):
    k = min(FOLDS, int(np.bincount(labels, minlength=2).min()))
    return StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(labels)), labels)


def cross_fitted_logits(texts: list[str], vectors: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The message model's logit for each example from a model that never saw it (k-fold)."""
    out = np.zeros(len(texts))
    for train, test in _folds(labels, seed=1):
        model = MessageModel.fit([texts[i] for i in train], vectors[train], labels[train])
        out[test] = model.logits([texts[i] for i in test], vectors[test])
    return out


def cross_validated_scores(good: list[RejectEvidence], bad: list[RejectEvidence],
                           min_examples: int = MIN_EXAMPLES,
                           on_fold: Callable[[int], None] | None = None) -> np.ndarray:
    """Each example's score from a whole model (message model + decision) fitted without its fold:
    the honest scores the threshold is chosen on. Order: good then bad."""
    evidence = good + bad
    labels = np.array([1] * len(good) + [0] * len(bad), dtype=np.int8)
    if min(len(good), len(bad)) < max(min_examples, 2):
        return RejectModel.fit(good, bad, min_examples).score(evidence)  # the rule learns nothing
    out = np.zeros(len(evidence))
    for fold, (train, test) in enumerate(_folds(labels), 1):
        g = [evidence[i] for i in train if labels[i] == 1]
        b = [evidence[i] for i in train if labels[i] == 0]
        # The same kind of model as the one fitted on everything, even if a fold dips below the minimum.
        out[test] = RejectModel.fit(g, b, min_examples=0).score([evidence[i] for i in test])
        if on_fold is not None:
            on_fold(fold)
    return out
