"""The reject model's message model (what on-topic messages of this group look like, from the message alone)
and its cross-fitting: the fits a calibration needs, computed once per example set (MessageFits).

Character n-grams are counted once for all examples and each fold's TF-IDF is derived from those counts,
which gives what a vectorizer fitted on the fold's texts gives. It knows nothing of the knowledge base.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np
import scipy.sparse as sps
from scipy.sparse.csgraph import connected_components

# scikit-learn fits the model (a build, a calibration); scoring a message needs none of it, and importing it
# is 1.1 s of every serving process's start, so it is imported where a fit needs it.
if TYPE_CHECKING:
    from sklearn.feature_extraction.text import TfidfTransformer, TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

FOLDS = 5
# Settings chosen by 5-fold cross-validation on a real group's 680 labelled messages (docs/feature_store.md):
# the embedding carries meaning, character n-grams carry jargon and code.
_VECTOR_SCALE = 3.0
_NGRAM_SCALE = 0.5
_C = 1.0
_NGRAMS = dict(analyzer='char_wb', ngram_range=(1, 3), lowercase=True)


def _vectorizer(**kwargs) -> 'TfidfVectorizer':
    from sklearn.feature_extraction.text import TfidfVectorizer
    return TfidfVectorizer(sublinear_tf=True, dtype=np.float64, **_NGRAMS, **kwargs)


_WHITE_SPACES = re.compile(r'\s\s+')


def char_wb_ngrams(text: str, low: int = _NGRAMS['ngram_range'][0], high: int = _NGRAMS['ngram_range'][1]) -> list[str]:
    """The character n-grams scikit-learn's `analyzer='char_wb'` gives for `text` (lowercased; each word padded
    with one space; a word shorter than n counted once), in its order: the same list, without importing it
    (tests/service/feature_store/test_message_model.py compares them on real text)."""
    grams: list[str] = []
    for word in _WHITE_SPACES.sub(' ', text.lower()).split():
        word = f' {word} '
        for n in range(low, high + 1):
            offset = 0
            grams.append(word[:n])
            while offset + n < len(word):
                offset += 1
                grams.append(word[offset:offset + n])
            if offset == 0:
                break
    return grams


def logistic() -> 'LogisticRegression':
    from sklearn.linear_model import LogisticRegression
    # Balanced: chatter usually outnumbers questions, and the threshold is chosen afterwards anyway.
    return LogisticRegression(C=_C, class_weight='balanced', max_iter=5000)


# Two messages sharing this share of their character 3-grams are one message for cross-validation: a question
# asked twice (or pasted with a different greeting) in both the training and the held-out fold flatters it.
NEAR_DUPLICATE = 0.6


def near_duplicate_groups(texts: list[str], min_jaccard: float = NEAR_DUPLICATE) -> np.ndarray:
    """A group id per text; texts whose character-3-gram sets have Jaccard >= `min_jaccard` (directly or
    through a chain of such pairs) share one."""
    if not texts:
        return np.zeros(0, dtype=np.int64)
    # Lowercased, whitespace-free; a text shorter than three characters is its own single "gram".
    norm = [''.join(t.lower().split()) or t for t in texts]
    from sklearn.feature_extraction.text import CountVectorizer
    grams = CountVectorizer(analyzer=lambda t: {t[i:i + 3] for i in range(max(len(t) - 2, 1))}, binary=True)
    x = grams.fit_transform(norm).astype(np.float32).tocsr()
    sizes = np.asarray(x.sum(axis=1)).ravel()
    inter = (x @ x.T).tocoo()
    union = sizes[inter.row] + sizes[inter.col] - inter.data
    keep = inter.data >= min_jaccard * union
    pairs = sps.csr_matrix((np.ones(int(keep.sum())), (inter.row[keep], inter.col[keep])), shape=x.shape[:1] * 2)
    return connected_components(pairs, directed=False)[1].astype(np.int64)


def folds(labels: np.ndarray, seed: int = 0, groups: np.ndarray | None = None, k: int = FOLDS):
    """Stratified k-fold (train, test) row pairs, k = `k` or the smaller class's size; with `groups`, the rows
    of one group always fall in the same fold (near_duplicate_groups)."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
    labels = np.asarray(labels)
    k = min(k, int(np.bincount(labels, minlength=2).min()))
    if groups is None or len(np.unique(groups)) == len(groups):
        return StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(labels)), labels)
    return StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(labels)), labels, groups)


class NgramCounts:
    """Character n-gram counts of a fixed list of texts, counted once; the TF-IDF of any subset of them
    (or of texts held out from it) as a vectorizer fitted on that subset would compute it."""

    def __init__(self, texts: list[str]):
        from sklearn.feature_extraction.text import CountVectorizer
        counter = CountVectorizer(**_NGRAMS, dtype=np.int64)
        self.counts = counter.fit_transform(texts).tocsr()
        self.names = counter.get_feature_names_out()

    def fit(self, rows: np.ndarray) -> tuple[np.ndarray, 'TfidfTransformer']:
        """(the vocabulary of `rows` as columns of the counts, its fitted TF-IDF weighting)."""
        from sklearn.feature_extraction.text import TfidfTransformer
        sub = self.counts[rows]
        cols = np.flatnonzero(np.bincount(sub.indices, minlength=self.counts.shape[1]))
        return cols, TfidfTransformer(sublinear_tf=True).fit(sub[:, cols])

    def tfidf(self, rows: np.ndarray, cols: np.ndarray, weighting: 'TfidfTransformer') -> sps.csr_matrix:
        return weighting.transform(self.counts[rows][:, cols].astype(np.float64)).tocsr()


@dataclass
class MessageModel:
    """Linear model over [embedding - mean, character n-gram TF-IDF] of the message alone."""
    center: np.ndarray
    vector_coef: np.ndarray
    ngrams: list[str]
    idf: np.ndarray
    ngram_coef: np.ndarray
    intercept: float
    _vectorizer: 'TfidfVectorizer | None' = field(default=None, repr=False)
    _index: dict[str, int] | None = field(default=None, repr=False)

    @classmethod
    def fit(cls, texts: list[str], vectors: np.ndarray, labels: np.ndarray) -> 'MessageModel':
        return _fit_rows(NgramCounts(texts), np.arange(len(texts)), vectors, labels)[0]

    @property
    def vectorizer(self) -> 'TfidfVectorizer':
        """The fitted scikit-learn vectorizer these n-grams and IDFs make (for comparison; scoring uses tfidf)."""
        if self._vectorizer is None:
            vec = _vectorizer(vocabulary={g: i for i, g in enumerate(self.ngrams)})
            vec.idf_ = self.idf
            self._vectorizer = vec
        return self._vectorizer

    def tfidf(self, texts: list[str]) -> sps.csr_matrix:
        """The texts' n-gram TF-IDF rows, as the fitted vectorizer's `transform` computes them, without its
        per-call overhead (milliseconds, most of a one-message reject decision)."""
        if self._index is None:
            self._index = {g: i for i, g in enumerate(self.ngrams)}
        indptr, indices, data = [0], [], []
        for text in texts:
            counts: dict[int, int] = {}
            for gram in char_wb_ngrams(text):
                j = self._index.get(gram)
                if j is not None:
                    counts[j] = counts.get(j, 0) + 1
            cols = np.fromiter(sorted(counts), dtype=np.int64, count=len(counts))
            weights = (np.log(np.array([counts[j] for j in cols], dtype=np.float64)) + 1.0) * self.idf[cols]
            norm = np.sqrt(np.dot(weights, weights))
            indices.append(cols)
            data.append(weights / norm if norm > 0 else weights)
            indptr.append(indptr[-1] + len(cols))
        return sps.csr_matrix((np.concatenate(data) if data else np.zeros(0),
                               np.concatenate(indices) if indices else np.zeros(0, dtype=np.int64), indptr),
                              shape=(len(texts), len(self.ngrams)))

    def parts(self, texts: list[str], vectors: np.ndarray) -> tuple[np.ndarray, sps.csr_matrix]:
        """(embedding part of the logit per text, weighted n-gram matrix) for explanation and scoring."""
        return self._parts(self.tfidf(texts), vectors)

    def _parts(self, tfidf: sps.csr_matrix, vectors: np.ndarray) -> tuple[np.ndarray, sps.csr_matrix]:
        dense = ((vectors - self.center) * _VECTOR_SCALE) @ self.vector_coef
        return dense, tfidf.multiply(_NGRAM_SCALE * self.ngram_coef).tocsr()

    def logits(self, texts: list[str], vectors: np.ndarray) -> np.ndarray:
        return self._logits(self.tfidf(texts), vectors)

    def _logits(self, tfidf: sps.csr_matrix, vectors: np.ndarray) -> np.ndarray:
        dense, grams = self._parts(tfidf, vectors)
        return dense + np.asarray(grams.sum(axis=1)).ravel() + self.intercept


def _fit_rows(counts: NgramCounts, rows: np.ndarray, vectors: np.ndarray, labels: np.ndarray,
              extra: '_ExtraRows | None' = None) -> tuple[MessageModel, np.ndarray, 'TfidfTransformer']:
    """The message model fitted on `rows` of the examples (and the extra on-topic texts, with their weight);
    with its vocabulary columns and weighting."""
    lr = logistic()
    weights = None
    if extra is not None and len(extra.rows):
        # The examples keep their balanced class weights; each extra text adds `weight` of an on-topic one.
        per_class = len(rows) / (2.0 * np.maximum(np.bincount(labels[rows], minlength=2), 1))
        weights = np.concatenate([per_class[labels[rows]], np.full(len(extra.rows), extra.weight * per_class[1])])
        rows = np.concatenate([rows, extra.rows])
        lr.set_params(class_weight=None)
    cols, weighting = counts.fit(rows)
    x_vectors = vectors[rows]
    center = np.average(x_vectors, axis=0, weights=weights)
    x = sps.hstack([sps.csr_matrix((x_vectors - center) * _VECTOR_SCALE),
                    _NGRAM_SCALE * counts.tfidf(rows, cols, weighting)]).tocsr()
    lr.fit(x, labels[rows], sample_weight=weights)
    coef = lr.coef_[0]
    d = vectors.shape[1]
    model = MessageModel(center.astype(np.float64), coef[:d].copy(), [str(g) for g in counts.names[cols]],
                         weighting.idf_.copy(), coef[d:].copy(), float(lr.intercept_[0]))
    return model, cols, weighting


def _held_out_logits(counts: NgramCounts, train: np.ndarray, test: np.ndarray, vectors: np.ndarray,
                     labels: np.ndarray, extra: '_ExtraRows | None' = None) -> tuple[MessageModel, np.ndarray]:
    model, cols, weighting = _fit_rows(counts, train, vectors, labels, extra)
    return model, model._logits(counts.tfidf(test, cols, weighting), vectors[test])


def _cross_fit(counts: NgramCounts, rows: np.ndarray, vectors: np.ndarray, labels: np.ndarray,
               groups: np.ndarray, extra: '_ExtraRows | None' = None) -> tuple[np.ndarray, np.ndarray]:
    """The logit of each of `rows` from a message model fitted on the others among `rows` (k-fold, near
    duplicates in one fold), and the fold each row was held out in."""
    out = np.zeros(len(rows))
    fold_of = np.zeros(len(rows), dtype=np.int8)
    for i, (train, test) in enumerate(folds(labels[rows], seed=1, groups=groups[rows])):
        out[test] = _held_out_logits(counts, rows[train], rows[test], vectors, labels, extra)[1]
        fold_of[test] = i
    return out, fold_of


@dataclass
class ExtraExamples:
    """On-topic texts that train every message model but are never scored, so thresholds rest on the group's
    own examples alone: the documents' own questions (doc_questions.py), each with sample weight `weight`."""
    texts: list[str]
    vectors: np.ndarray
    weight: float

    def __bool__(self) -> bool:
        return bool(len(self.texts)) and self.weight > 0


@dataclass
class _ExtraRows:
    rows: np.ndarray     # the extra texts' rows, after the examples'
    weight: float


@dataclass
class FoldLogits:
    """One fold of the honest evaluation: the message model's part, fitted without the held-out rows."""
    test: np.ndarray                       # the held-out rows
    train_logits: np.ndarray | None        # the other rows' cross-fitted logits; None: too few to fit
    test_logits: np.ndarray | None         # the held-out rows' logits from a model fitted on the others
    # The inner fold each of the other rows was held out in (for train_logits): the decision's own
    # threshold is chosen on those inner folds, never on this fold's rows.
    train_fold: np.ndarray | None = None


@dataclass
class MessageFits:
    """Every message-model fit a calibration needs, for one example set (texts, labels, embedding model).

    They do not depend on the documents' evidence, so a calibration after the documents changed reuses them
    (calibration_cache.py keeps them) and refits only the small decision layer. Near-duplicate examples
    (near_duplicate_groups) always share a fold.

    Usage:
        fits = MessageFits.fit(texts, vectors, labels)      # 1 + 5 + 5 × 6 fits
        fits.full.logits(['新问题'], vector[None, :])
    """
    full: MessageModel                     # fitted on every example
    cross_fitted: np.ndarray               # each example's logit from a model that never saw it
    folds: list[FoldLogits]                # the outer folds of cross_validated_scores (seed 0)

    @classmethod
    def fit(cls, texts: list[str], vectors: np.ndarray, labels: np.ndarray,
            on_fold: Callable[[int, int], None] | None = None,
            extra: ExtraExamples | None = None) -> 'MessageFits':
        """`on_fold(done, total)` hears after the fit on all and after each cross-validation fold; every fit
        also learns from `extra`."""
        on_fold = on_fold or (lambda done, total: None)
        labels = np.asarray(labels, dtype=np.int8)
        n = len(texts)
        rows = None
        if extra:
            rows = _ExtraRows(np.arange(n, n + len(extra.texts)), float(extra.weight))
            vectors = np.vstack([vectors, np.asarray(extra.vectors, dtype=vectors.dtype)])
            labels = np.concatenate([labels, np.ones(len(extra.texts), dtype=np.int8)])
        counts = NgramCounts(list(texts) + (list(extra.texts) if rows else []))
        groups = near_duplicate_groups(list(texts))
        every = np.arange(n)
        full = _fit_rows(counts, every, vectors, labels, rows)[0]
        splits = list(folds(labels[:n], seed=0, groups=groups))
        on_fold(1, len(splits) + 1)
        out = []
        for train, test in splits:
            if np.bincount(labels[train], minlength=2).min() < 2:
                out.append(FoldLogits(test, None, None))  # the fold falls back to the rule
            else:
                _, test_logits = _held_out_logits(counts, train, test, vectors, labels, rows)
                train_logits, train_fold = _cross_fit(counts, train, vectors, labels, groups, rows)
                out.append(FoldLogits(test, train_logits, test_logits, train_fold))
            on_fold(len(out) + 1, len(splits) + 1)
        return cls(full, _cross_fit(counts, every, vectors, labels, groups, rows)[0], out)
