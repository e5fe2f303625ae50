"""What the knowledge base says about one message: dense and BM25 matches, and the message's own words
that are specific to these documents. The reject model (reject_model.py) weighs this evidence.

It gathers and names evidence only; it does not decide anything.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from huixiangdou.primitive.chunk import Chunk

# A word at least e^3 ≈ 20 times more frequent in the documents than in everyday text belongs to the
# knowledge base's own vocabulary ("mmpose", "量化", "推理", "config").
SPECIFIC = 3.0
DENSE_TOP = 5
# An entity named in at most 1/e^3 ≈ 5 % of the chunks is specific enough to count as evidence.
ENTITY_IDF = 3.0

# The knowledge-base features the reject model sees, in this order (see kb_features).
KB_FEATURES = ('cosine', 'cosine_top5', 'bm25', 'coverage', 'specific_words', 'specificity', 'known_words')


@dataclass
class RejectEvidence:
    """Evidence about one message. `vector` is its query embedding; scores are of the best chunks."""
    query: str
    vector: np.ndarray
    tokens: list[str]
    cosine: float = 0.0                 # best dense cosine
    cosine_top5: float = 0.0            # mean cosine of the five best dense matches
    bm25: float = 0.0                   # best BM25 score
    coverage: float = 0.0               # best share of the message's IDF weight found in one chunk
    word_specificity: list[tuple[str, float]] = field(default_factory=list)  # most specific first
    known_words: float = 0.0            # share of the message's words the documents use at all
    dense_best: Chunk | None = None
    sparse_best: Chunk | None = None
    entities: list = field(default_factory=list)   # EntityMatch: the graph's entities the message names
    entities_together: int = 0          # the most of its specific entities one chunk names (graph.together)

    @property
    def specific_words(self) -> list[str]:
        return [w for w, s in self.word_specificity if s >= SPECIFIC]

    def graph_features(self) -> np.ndarray:
        """(how many specific entities, the most specific one's idf, the most named in one chunk); zeros
        without a graph. Measured as reject evidence by bench_reject.py ("+ entity graph")."""
        specific = [m for m in self.entities if m.idf >= ENTITY_IDF]
        return np.array([math.log1p(len(specific)), max((m.idf for m in specific), default=0.0),
                         float(self.entities_together)], dtype=np.float64)

    def kb_features(self) -> np.ndarray:
        """The KB_FEATURES vector (BM25 on a log scale: its raw value grows with message length)."""
        return np.array([
            self.cosine, self.cosine_top5, math.log1p(max(self.bm25, 0.0)), self.coverage,
            float(len(self.specific_words)), sum(max(s, 0.0) for _, s in self.word_specificity),
            self.known_words], dtype=np.float64)


def gather_evidence(store, queries: list[str], vectors: np.ndarray,
                    sparse: list[tuple[list[str], np.ndarray]]) -> list[RejectEvidence]:
    """Evidence for each query from `store` (a FeatureStore), given the queries' embeddings and their
    (BM25 words, BM25 score of every chunk); query_features.featurize computes both."""
    n = len(store.chunks)
    k = min(DENSE_TOP, max(n, 1))
    dense_scores, dense_ids = store.dense.search(vectors, k) if n else (None, None)
    out = []
    for qi, query in enumerate(queries):
        tokens, bm25 = sparse[qi]
        ev = RejectEvidence(query=query, vector=vectors[qi], tokens=tokens)
        if n:
            rows = [int(r) for r in dense_ids[qi] if r >= 0]
            cos = [float(c) for c, r in zip(dense_scores[qi], dense_ids[qi]) if r >= 0]
            if rows:
                ev.cosine, ev.cosine_top5 = max(cos[0], 0.0), max(float(np.mean(cos)), 0.0)
                ev.dense_best = store.chunks[rows[0]]
            top = np.argpartition(-bm25, k - 1)[:k] if len(bm25) > k else np.arange(len(bm25))
            top = [int(r) for r in top[np.argsort(-bm25[top])] if bm25[r] > 0]
            if top:
                ev.bm25 = float(bm25[top[0]])
                ev.sparse_best = store.chunks[top[0]]
            ev.coverage = max((store.sparse.coverage(tokens, r) for r in rows + top), default=0.0)
        words = list(dict.fromkeys(tokens))
        scored = [(w, store.sparse.specificity(w)) for w in words]
        ev.word_specificity = sorted(scored, key=lambda x: -x[1])
        ev.known_words = sum(1 for w in words if store.sparse.knows(w)) / len(words) if words else 0.0
        graph = getattr(store, 'graph', None)
        if graph is not None:   # one indexed lookup; `entities_together` costs more and is filled on demand
            ev.entities = graph.match(query)
        out.append(ev)
    return out
