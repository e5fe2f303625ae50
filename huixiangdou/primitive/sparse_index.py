"""Sparse BM25 index (bm25s) over word tokens from huixiangdou.primitive.tokenizer, plus term coverage.

`coverage` measures how much of a query's IDF weight a chunk contains; `specificity` how much more often
a word occurs in these documents than in everyday text (a knowledge base's own vocabulary: "mmpose",
"量化", "config" in a model toolkit's docs). It does not tokenize: callers pass token lists.
On disk everything is numpy arrays (memory-mapped at load) and one vocabulary, so a store of a million
chunks loads in seconds and a query touches only its own words' postings and its candidate rows.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import bm25s
import numpy as np

from huixiangdou.primitive.mapped_array import load_mapped
from huixiangdou.primitive.tokenizer import general_frequency

# Per word (by the BM25 vocabulary's id): chunks using it, and its count over all chunks.
# Per chunk (CSR): the ids of its distinct words (sorted) and how often each occurs.
_ARRAYS = ('df', 'cf', 'doc_ptr', 'doc_ids', 'doc_counts')


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

    BM25_DIR = 'bm25'
    # The format before the arrays: every chunk's tokens as one JSON list (still read, then indexed again).
    TOKENS_FILE = 'sparse_tokens.json'

    def __init__(self, corpus_tokens: list[list[str]]):
        self._bm25 = bm25s.BM25()
        vocab: dict[str, int] = {}
        if corpus_tokens:
            # An empty chunk gets one empty word, as bm25s cannot index an empty document.
            self._bm25.index([t or [''] for t in corpus_tokens], show_progress=False)
            vocab = self._bm25.vocab_dict
        n, size = len(corpus_tokens), len(vocab)
        flat = np.fromiter((vocab[t] for tokens in corpus_tokens for t in tokens), dtype=np.int64)
        lengths = np.fromiter((len(t) for t in corpus_tokens), dtype=np.int64, count=n)
        keys, counts = np.unique(np.repeat(np.arange(n, dtype=np.int64), lengths) * max(size, 1) + flat,
                                 return_counts=True)
        docs, ids = np.divmod(keys, max(size, 1))
        arrays = {
            'df': np.bincount(ids, minlength=size).astype(np.int64),
            'cf': np.bincount(ids, weights=counts, minlength=size).astype(np.int64),
            'doc_ptr': np.concatenate([[0], np.cumsum(np.bincount(docs, minlength=n))]).astype(np.int64),
            'doc_ids': ids.astype(np.int32), 'doc_counts': counts.astype(np.int32)}
        self._set(vocab, arrays)

    def _set(self, vocab: dict[str, int], arrays: dict[str, np.ndarray]) -> None:
        self._vocab = vocab
        self._words: list[str] | None = None
        self._df, self._cf = arrays['df'], arrays['cf']
        self._doc_ptr, self._doc_ids, self._doc_counts = arrays['doc_ptr'], arrays['doc_ids'], arrays['doc_counts']
        self._n = len(self._doc_ptr) - 1
        self._total = max(int(self._cf.sum()), 1)
        n = max(self._n, 1)
        # A term the corpus never saw weighs as much as the rarest one: it is evidence of a new topic.
        self._unseen_idf = math.log(1 + (n + 0.5) / 0.5)

    def __len__(self) -> int:
        return self._n

    def _count(self, counts: np.ndarray, token: str) -> int:
        i = self._vocab.get(token)
        return 0 if i is None else int(counts[i])

    def idf(self, token: str) -> float:
        c = self._count(self._df, token)
        if not c:
            return self._unseen_idf
        n = max(self._n, 1)
        return math.log(1 + (n - c + 0.5) / (c + 0.5))

    def knows(self, token: str) -> bool:
        """True when some chunk uses the word."""
        return self._count(self._cf, token) > 0

    def specificity(self, token: str) -> float:
        """log(frequency in the corpus / frequency in everyday text); 0.0 for words the corpus lacks.

        Both frequencies get half a count of smoothing, so a word the general dictionary does not list
        (most code and product names) scores high only if the corpus uses it often.
        """
        count = self._count(self._cf, token)
        if not count:
            return 0.0
        corpus = count / self._total
        general = general_frequency(token) + 0.5 / 60_000_000  # jieba's dictionary holds ~60M counts
        return math.log(corpus / general)

    def scores(self, query_tokens: list[str]) -> np.ndarray:
        """BM25 score of every row for the query (zeros when the query has no words)."""
        if not self._n or not query_tokens:
            return np.zeros(self._n, dtype=np.float32)
        return self._bm25.get_scores(query_tokens)

    def search(self, query_tokens: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (bm25 scores, row ids), best first; empty arrays when nothing matches."""
        if not self._n or not query_tokens:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        scores = self.scores(query_tokens)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind='stable')]
        keep = scores[top] > 0
        return scores[top][keep].astype(np.float32), top[keep].astype(np.int64)

    def _row_words(self, row: int) -> set[int]:
        return set(self._doc_ids[self._doc_ptr[row]:self._doc_ptr[row + 1]].tolist())

    def coverage(self, query_tokens: list[str], row: int) -> float:
        """Share of the query's IDF weight whose terms occur in chunk `row` (0..1)."""
        terms = set(query_tokens)
        if not terms:
            return 0.0
        total = sum(self.idf(t) for t in terms)
        present = self._row_words(row)
        hit = sum(self.idf(t) for t in terms if self._vocab.get(t, -1) in present)
        # One word is weak evidence ("+1", "got it" match some chunk by chance): it counts half.
        return (hit / total if total > 0 else 0.0) * min(1.0, len(terms) / 2)

    def tokens(self, start: int, stop: int) -> list[list[str]]:
        """The words of rows start..stop-1 as a bag (each word repeated by its count; order not kept,
        which BM25 ignores): what an incremental build reuses for unchanged files."""
        if self._words is None:
            self._words = [''] * len(self._vocab)
            for word, i in self._vocab.items():
                self._words[i] = word
        out = []
        for row in range(start, stop):
            a, b = int(self._doc_ptr[row]), int(self._doc_ptr[row + 1])
            out.append([self._words[i] for i, c in zip(self._doc_ids[a:b].tolist(), self._doc_counts[a:b].tolist())
                        for _ in range(c)])
        return out

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        if self._n:
            self._bm25.save(str(folder / self.BM25_DIR), show_progress=False)
        else:
            (folder / self.BM25_DIR).mkdir()
        arrays = {'df': self._df, 'cf': self._cf, 'doc_ptr': self._doc_ptr, 'doc_ids': self._doc_ids,
                  'doc_counts': self._doc_counts}
        for name in _ARRAYS:
            np.save(folder / f'sparse_{name}.npy', np.asarray(arrays[name]))

    @classmethod
    def load(cls, folder: Path) -> 'SparseIndex':
        """Memory-map a saved index; a folder of the older format (sparse_tokens.json) is indexed again."""
        folder = Path(folder)
        if not (folder / 'sparse_doc_ptr.npy').is_file() and (folder / cls.TOKENS_FILE).is_file():
            with open(folder / cls.TOKENS_FILE, encoding='utf-8') as f:
                return cls(json.load(f))
        index = cls.__new__(cls)
        arrays = {name: load_mapped(folder / f'sparse_{name}.npy') for name in _ARRAYS}
        arrays['df'], arrays['cf'] = np.asarray(arrays['df']), np.asarray(arrays['cf'])
        index._bm25 = bm25s.BM25()
        vocab: dict[str, int] = {}
        if len(arrays['doc_ptr']) > 1:
            index._bm25 = bm25s.BM25.load(str(folder / cls.BM25_DIR), mmap=True, show_progress=False)
            vocab = index._bm25.vocab_dict
        index._set(vocab, arrays)
        return index
