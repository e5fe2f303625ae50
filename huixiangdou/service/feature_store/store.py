"""A loaded feature store and its queries: reject scores with their evidence, and dense + BM25 search.

Per-message work (embedding, BM25) is computed by `featurize` and returned to the caller, never kept
here: the store holds no per-query state. The files and their format are in store_files.py; building
is in builder.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from huixiangdou.primitive.chunk import Chunk
from huixiangdou.primitive.chunk_table import ChunkTable, chunks_at
from huixiangdou.primitive.dense_index import DenseIndex, FaissIndex
from huixiangdou.primitive.entity_graph import EntityGraph
from huixiangdou.primitive.sparse_index import SparseIndex
from huixiangdou.service.feature_store.query_features import QueryFeatures, featurize
from huixiangdou.service.feature_store.reject_evidence import RejectEvidence
from huixiangdou.service.feature_store.reject_model import RejectModel
from huixiangdou.service.feature_store.store_files import (CURRENT, FileRecord, Manifest,  # noqa: F401
                                                           StoreDamagedError, StoreError, current_folder,  # noqa: F401
                                                           make_dense_index, open_dense_index,  # noqa: F401
                                                           read_manifest, read_store, save_store, workdir_lock)


@dataclass
class RejectScore:
    """The reject model's P(on-topic) for a message, with the evidence it was computed from."""
    score: float
    evidence: RejectEvidence


@dataclass
class ScoredChunk:
    chunk: Chunk
    row: int
    cosine: float = 0.0
    bm25: float = 0.0
    fused: float = 0.0


class FeatureStore:
    """A loaded store. `featurize`, `reject_model.decide` and `search` are what the worker calls.

    A loaded store keeps chunk texts on disk (`chunks` is a ChunkTable) and its vectors memory-mapped; a
    store being built holds them in memory (a list and an array). Both read the same way.

    Usage:
        store = FeatureStore.load(Path('workdir'), embedder)   # embedder must match the manifest
        store.reject_score('如何重建索引?').score >= store.calibrated_threshold
        features = store.featurize(['如何重建索引?'])[0]           # once per message, then:
        store.search(features, k=3)
    """

    def __init__(self, manifest: Manifest, chunks: ChunkTable | list[Chunk], vectors: np.ndarray,
                 sparse: SparseIndex, embedder, folder: Path | None = None,
                 dense: DenseIndex | None = None, reject_model: RejectModel | None = None,
                 graph: EntityGraph | None = None):
        self.manifest = manifest
        self.graph = graph   # the documents' entity graph; None for stores built before it
        self.reject_model = reject_model
        self.chunks = chunks
        self.vectors = vectors
        self.sparse = sparse
        self.embedder = embedder
        self.folder = folder
        if dense is None:
            dense = FaissIndex(manifest.dimension)
            dense.add(vectors)
        self.dense = dense

    # -- queries -------------------------------------------------------------------------------
    @property
    def calibrated_threshold(self) -> float | None:
        """The calibrated reject threshold, or None when the store was never calibrated."""
        return self.manifest.reject_threshold

    def _require_reject_model(self) -> RejectModel:
        if self.reject_model is None or self.calibrated_threshold is None:
            raise StoreError('the feature store has no calibrated reject model, so the bot cannot tell '
                             'questions from chatter: run `python -m huixiangdou.service.feature_store` with '
                             'good/bad question files ([feature_store] good_questions / bad_questions)')
        return self.reject_model

    def decision_threshold(self, reject_throttle: float | None = None) -> float:
        """The threshold in force: `reject_throttle` (config.reject_throttle_override) or, when None, the
        calibrated one. A store without a calibrated reject model raises StoreError either way (there is
        nothing to compare with a threshold)."""
        self._require_reject_model()
        return self.calibrated_threshold if reject_throttle is None else reject_throttle

    def featurize(self, queries: list[str]) -> list[QueryFeatures]:
        """Each query's embedding, BM25 scores and reject evidence (embedding batched); compute once per
        message and pass the result to `search` and the reject model."""
        return featurize(self, queries)

    def evidence(self, queries: list[str]) -> list[RejectEvidence]:
        """What the store says about each query (dense and BM25 matches, specific words)."""
        return [f.evidence for f in self.featurize(queries)]

    def reject_scores(self, queries: list[str]) -> list[RejectScore]:
        """The calibrated reject model's P(on-topic) for many queries (embedding batched)."""
        model = self._require_reject_model()
        evidence = self.evidence(queries)
        return [RejectScore(float(p), e) for p, e in zip(model.score(evidence), evidence)]

    def reject_score(self, query: str) -> RejectScore:
        """P(on-topic) of one message; compare with `decision_threshold()`."""
        return self.reject_scores([query])[0]

    def explain(self, query: str | QueryFeatures, reject_throttle: float | None = None) -> dict:
        """The reject decision for `query` with its evidence (see RejectModel.decide)."""
        threshold = self.decision_threshold(reject_throttle)
        features = query if isinstance(query, QueryFeatures) else self.featurize([query])[0]
        score, out = self.reject_model.decide(features.evidence)
        out['threshold'] = threshold
        out['answer'] = score >= threshold
        out['entities'] = self.entities_found(features.evidence.entities)
        return out

    def entities_found(self, matches: list, top: int = 6) -> list[dict]:
        """The graph's entities a message names, rarest first, each with a passage that names it."""
        if self.graph is None or not matches:
            return []
        out = []
        for m in matches[:top]:
            rows = self.graph.chunks_sharing([m], limit=1) if m in self.graph.specific([m]) else []
            item = m.to_json()
            if rows:
                item['found_in'] = chunks_at(self.chunks, [rows[0][0]])[0].reference
            out.append(item)
        return out

    def search(self, query: str | QueryFeatures, k: int = 5, candidates: int = 20,
               dense_weight: float | None = None, graph_weight: float = 0.0) -> list[ScoredChunk]:
        """Dense + BM25 retrieval, best first; `query` is a message, or its features when the caller
        computed them already (the worker's reject stage does).

        Candidates are the top `candidates` of each; each gets both scores, scaled to [0, 1] over the
        candidates (cosine min-max, BM25 divided by the best), and `fused = w * cosine' + (1 - w) * bm25'`
        with w `dense_weight`, or the one calibrated for this store's reject decision. Unlike rank fusion, this lets a clear BM25
        winner beat an English-only model's near-random ranking of a Chinese query.

        With `graph_weight` > 0 and an entity graph, the chunks that name the message's specific entities
        (code identifiers, flags, error names...) join the candidates, and each candidate gains
        `graph_weight * its entities' summed idf / the best such sum`.
        """
        n = min(candidates, len(self.chunks))
        if n == 0:
            return []
        features = query if isinstance(query, QueryFeatures) else self.featurize([query])[0]
        vector, bm25 = features.vector, features.bm25
        if len(bm25) != len(self.chunks):
            raise ValueError(f'features of {len(bm25)} chunks do not belong to this store of {len(self.chunks)}')
        _, d_ids = self.dense.search(vector[None, :], n)
        s_ids = np.argpartition(-bm25, n - 1)[:n] if len(bm25) > n else np.arange(len(bm25))
        rows = {int(r) for r in d_ids[0] if r >= 0} | {int(r) for r in s_ids if bm25[r] > 0}
        shared: dict[int, float] = {}
        if graph_weight > 0 and self.graph is not None and getattr(features.evidence, 'entities', None):
            shared = dict(self.graph.chunks_sharing(features.evidence.entities, limit=n))
            rows |= set(shared)
        rows = sorted(rows)
        cosine = self.vectors[rows] @ vector
        sparse = bm25[rows].astype(np.float64)
        span = cosine.max() - cosine.min()
        cos_scaled = (cosine - cosine.min()) / span if span > 1e-9 else np.ones_like(cosine)
        bm_scaled = sparse / sparse.max() if sparse.max() > 0 else np.zeros_like(sparse)
        w = self.manifest.reject_dense_weight if dense_weight is None else dense_weight
        fused = w * cos_scaled + (1 - w) * bm_scaled
        if shared:
            top = max(shared.values())
            fused = fused + graph_weight * np.array([shared.get(r, 0.0) / top for r in rows])
        # Rank first, then read from the chunk table only the k rows returned (the order is the same as
        # sorting all candidates: a stable sort on the fused score, candidates in row order).
        best = sorted(range(len(rows)), key=lambda i: fused[i], reverse=True)[:k]
        chunks = chunks_at(self.chunks, [rows[i] for i in best])
        return [ScoredChunk(chunk, rows[i], float(cosine[i]), float(sparse[i]), float(fused[i]))
                for chunk, i in zip(chunks, best)]

    # -- disk (the format is store_files.py's) --------------------------------------------------
    def save(self, work_dir: Path, report: dict | None = None, started: float | None = None) -> Path:
        """Publish this store as the workdir's new version (see store_files.save_store)."""
        self.folder = save_store(self, work_dir, report, started)
        return self.folder

    current_folder = staticmethod(current_folder)
    read_manifest = staticmethod(read_manifest)

    @classmethod
    def load(cls, work_dir: Path, embedder, check_model: bool = True, verify: bool = True) -> 'FeatureStore':
        """The published version of `work_dir`, its files checked against their checksums first: a damaged
        one raises StoreDamagedError (a StoreError) and nothing of it is loaded."""
        files = read_store(work_dir, embedder if check_model else None, verify=verify)
        return cls(files.manifest, files.chunks, files.vectors, files.sparse, embedder, files.folder,
                   files.dense, files.reject_model, files.graph)
