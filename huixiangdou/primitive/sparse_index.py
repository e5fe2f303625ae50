"""Sparse BM25 index (bm25s) over word tokens from huixiangdou.primitive.tokenizer, plus term coverage.

`coverage` measures how much of a query's IDF weight a chunk contains; `specificity` how much more often
a word occurs in these documents than in everyday text (a knowledge base's own vocabulary: "mmpose",
"量化", "config" in a model toolkit's docs). It does not tokenize: callers pass token lists.
"""
from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import bm25s
import numpy as np

from huixiangdou.primitive.tokenizer import general_frequency


class SparseIndex:
    """BM25 over pre-tokenised chunks.

    Usage:
        >>> index = SparseIndex([['安装', 'torch'], ['飞书', '机器人'], ['重建', '索引']])
        >>> [int(i) for i in index.search(['飞书', '机器人', '配置'], k=1)[1]]
        [1]
        >>> round(index.coverage(['飞书', '机器人'], 1), 2)
        1.0
        >>> round(index.coverage(['飞书'], 1), 2)   # a single word counts half
        0.5
    """

    TOKENS_FILE = 'sparse_tokens.json'

    def __init__(self, corpus_tokens: list[list[str]]):
        self.corpus_tokens = corpus_tokens
        self._doc_sets = [frozenset(t) for t in corpus_tokens]
        df = Counter(t for s in self._doc_sets for t in s)
        self._cf = Counter(t for tokens in corpus_tokens for t in tokens)
        self._total = max(sum(self._cf.values()), 1)
        n = max(len(corpus_tokens), 1)
        self._idf = {t: math.log(1 + (n - c + 0.5) / (c + 0.5)) for t, c in df.items()}
        # A term the corpus never saw weighs as much as the rarest one: it is evidence of a new topic.
        self._unseen_idf = math.log(1 + (n + 0.5) / 0.5)
        self._bm25 = bm25s.BM25()
        if corpus_tokens:
            self._bm25.index([t or [''] for t in corpus_tokens], show_progress=False)

    def __len__(self) -> int:
        return len(self.corpus_tokens)

    def idf(self, token: str) -> float:
        return self._idf.get(token, self._unseen_idf)

    def knows(self, token: str) -> bool:
        """True when some chunk uses the word."""
        return token in self._cf

    def specificity(self, token: str) -> float:
        """log(frequency in the corpus / frequency in everyday text); 0.0 for words the corpus lacks.

        Both frequencies get half a count of smoothing, so a word the general dictionary does not list
        (most code and product names) scores high only if the corpus uses it often.
        """
        count = self._cf.get(token, 0)
        if not count:
            return 0.0
        corpus = count / self._total
        general = general_frequency(token) + 0.5 / 60_000_000  # jieba's dictionary holds ~60M counts
        return math.log(corpus / general)

    def scores(self, query_tokens: list[str]) -> np.ndarray:
        """BM25 score of every row for the query (zeros when the query has no words)."""
        if not self.corpus_tokens or not query_tokens:
            return np.zeros(len(self.corpus_tokens), dtype=np.float32)
        return self._bm25.get_scores(query_tokens)

    def search(self, query_tokens: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (bm25 scores, row ids), best first; empty arrays when nothing matches."""
        if not self.corpus_tokens or not query_tokens:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        scores = self.scores(query_tokens)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind='stable')]
        keep = scores[top] > 0
        return scores[top][keep].astype(np.float32), top[keep].astype(np.int64)

    def coverage(self, query_tokens: list[str], row: int) -> float:
        """Share of the query's IDF weight whose terms occur in chunk `row` (0..1)."""
        terms = set(query_tokens)
        if not terms:
            return 0.0
        total = sum(self.idf(t) for t in terms)
        hit = sum(self.idf(t) for t in terms if t in self._doc_sets[row])
        # One word is weak evidence ("+1", "got it" match some chunk by chance): it counts half.
        return (hit / total if total > 0 else 0.0) * min(1.0, len(terms) / 2)

    def save(self, folder: Path) -> None:
        with open(Path(folder) / self.TOKENS_FILE, 'w', encoding='utf-8') as f:
            json.dump(self.corpus_tokens, f, ensure_ascii=False, separators=(',', ':'))

    @classmethod
    def load(cls, folder: Path) -> 'SparseIndex':
        with open(Path(folder) / cls.TOKENS_FILE, encoding='utf-8') as f:
            return cls(json.load(f))
