"""What the feature store computes about one message, once: its embedding, its BM25 words and scores,
and the reject evidence drawn from them. The worker carries it on the session from reject to retrieve.

It computes and holds; deciding (reject_model.py) and ranking (store.py) are elsewhere.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from huixiangdou.primitive.tokenizer import tokenize
from huixiangdou.service.feature_store.reject_evidence import RejectEvidence, gather_evidence


@dataclass
class QueryFeatures:
    """One message's features against one store.

    Usage:
        features = store.featurize(['如何重建索引？'])[0]
        store.reject_model.decide(features.evidence); store.search(features, k=3)
    """
    text: str
    vector: np.ndarray      # the query embedding (the model's query side for asymmetric models)
    tokens: list[str]       # BM25 words of the message, each once
    bm25: np.ndarray        # BM25 score of every chunk of the store, by row
    evidence: RejectEvidence


def query_tokens(text: str) -> list[str]:
    # Each word once: a message repeating a word ("安装安装安装…", a pasted log) must not score as if
    # it matched many times.
    return list(dict.fromkeys(tokenize(text)))


def query_encoder(embedder):
    """The embedder's query side: asymmetric models (e5) embed queries differently from passages."""
    return getattr(embedder, 'encode_queries', None) or embedder.encode


def featurize(store, texts: list[str], vectors: np.ndarray | None = None) -> list[QueryFeatures]:
    """Features of each text against `store` (a FeatureStore); the embedding runs in one batch, unless the
    caller has the texts' query embeddings already (`vectors`, e.g. from the embedding cache)."""
    if not texts:
        return []
    if vectors is None:
        vectors = query_encoder(store.embedder)(texts)
    sparse = []
    for text in texts:
        tokens = query_tokens(text)
        sparse.append((tokens, store.sparse.scores(tokens)))
    evidence = gather_evidence(store, texts, vectors, sparse)
    return [QueryFeatures(text, vectors[i], sparse[i][0], sparse[i][1], evidence[i]) for i in range(len(texts))]
