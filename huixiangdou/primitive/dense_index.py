"""Dense vector index over L2-normalised embeddings (inner product = cosine), behind a small interface.

FaissIndex is the one-machine backend: exact (flat) up to `exact_search_max_chunks`, approximate (IVF)
above, with its recall against exact search measured when it is built. A scale-out backend (e.g. Milvus)
implements DenseIndex and callers do not change. It stores vectors only: chunk texts live elsewhere.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import math

import faiss
import numpy as np
from loguru import logger


class DenseIndex(Protocol):
    dimension: int

    def add(self, vectors: np.ndarray) -> None: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (cosine scores, row ids) per query row; ids are -1 where fewer than k exist."""
        ...

    def save(self, folder: Path) -> None: ...

    def __len__(self) -> int: ...


_PARALLEL_QUERIES = 8
# The approximate index probes clusters until this recall@10 against exact search (sample queries) is met.
RECALL_TARGET = 0.97
RECALL_QUERIES = 200
_NPROBES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class FaissIndex:
    """Exact inner-product search with FAISS (IndexFlatIP); vectors must be L2-normalised.

    Usage:
        >>> import numpy as np
        >>> index = FaissIndex(2)
        >>> index.add(np.array([[1, 0], [0, 1]], dtype=np.float32))
        >>> scores, ids = index.search(np.array([[0.6, 0.8]], dtype=np.float32), k=1)
        >>> int(ids[0, 0]), round(float(scores[0, 0]), 2)
        (1, 0.8)
    """

    FILE = 'dense.faiss'

    def __init__(self, dimension: int):
        if dimension < 1:
            raise ValueError(f'dimension must be >= 1, got {dimension}')
        self.dimension = dimension
        self._index = faiss.IndexFlatIP(dimension)
        # Measured by `build` for an approximate index; None for exact search (recall 1 by definition).
        self.recall_at_10: float | None = None

    @classmethod
    def build(cls, vectors: np.ndarray, exact_search_max_chunks: int, seed: int = 0) -> 'FaissIndex':
        """An index over `vectors`: exact up to `exact_search_max_chunks` rows, else IVF-Flat with as many
        clusters probed as reach RECALL_TARGET recall@10 on a sample of the stored vectors as queries.

        IVF-Flat rather than HNSW or PQ: it keeps the vectors exact (scores equal the flat index's for
        what it finds), trains in seconds on a sample, and its one knob (nprobe) is tuned here at build.
        """
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, dimension = vectors.shape
        index = cls(dimension)
        if n <= exact_search_max_chunks:
            index.add(vectors)
            return index
        nlist = int(min(4096, max(8, round(math.sqrt(n)))))
        quantizer = faiss.IndexFlatIP(dimension)
        ivf = faiss.IndexIVFFlat(quantizer, dimension, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        train = vectors[np.sort(rng.choice(n, size=min(n, 40 * nlist), replace=False))]
        ivf.train(train)
        ivf.add(vectors)
        index._index = ivf
        # Stored vectors as queries, each query's own row left out of both lists: finding itself is easy
        # and would flatter the index.
        rows = np.sort(rng.choice(n, size=min(n, RECALL_QUERIES), replace=False))
        queries, k = vectors[rows], min(10, n - 1)
        _, exact = faiss.knn(queries, vectors, k + 1, metric=faiss.METRIC_INNER_PRODUCT)
        exact = _without(exact, rows, k)
        for nprobe in _NPROBES:
            ivf.nprobe = min(nprobe, nlist)
            index.recall_at_10 = recall_at(exact, _without(ivf.search(queries, k + 1)[1], rows, k))
            if index.recall_at_10 >= RECALL_TARGET or nprobe >= nlist:
                break
        logger.info('dense index: IVF{},Flat over {} vectors, nprobe {}: recall@10 {:.3f} against exact search',
                    nlist, n, ivf.nprobe, index.recall_at_10)
        return index

    def describe(self) -> str:
        """"flat" (exact) or "IVF<clusters>,Flat nprobe=<n>" (approximate)."""
        if isinstance(self._index, faiss.IndexIVF):
            return f'IVF{self._index.nlist},Flat nprobe={self._index.nprobe}'
        return 'flat'

    def add(self, vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dimension:
            raise ValueError(f'expected vectors of shape (n, {self.dimension}), got {vectors.shape}')
        if len(vectors):
            self._index.add(vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if len(self) == 0:
            n = queries.shape[0]
            return np.zeros((n, k), dtype=np.float32), np.full((n, k), -1, dtype=np.int64)
        if queries.shape[0] >= _PARALLEL_QUERIES:
            return self._index.search(queries, k)
        # A few queries gain nothing from FAISS's thread pool and pay for waking it (3x slower for
        # one query over 16k vectors on 2 cores, measured): search them on this thread.
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            return self._index.search(queries, k)
        finally:
            faiss.omp_set_num_threads(threads)

    def save(self, folder: Path) -> None:
        faiss.write_index(self._index, str(Path(folder) / self.FILE))

    @classmethod
    def load(cls, folder: Path) -> 'FaissIndex':
        raw = faiss.read_index(str(Path(folder) / cls.FILE))
        index = cls(raw.d)
        index._index = raw  # an IVF index keeps its tuned nprobe in the file
        return index

    def __len__(self) -> int:
        return int(self._index.ntotal)


def _without(ids: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Each line of `ids` without its query's own row, cut to k (padded with -1)."""
    out = np.full((len(ids), k), -1, dtype=np.int64)
    for i, (line, row) in enumerate(zip(ids, rows)):
        kept = line[line != row][:k]
        out[i, :len(kept)] = kept
    return out


def recall_at(exact: np.ndarray, found: np.ndarray) -> float:
    """Mean share of each query's exact top-k ids that `found` (same shape) also returned."""
    hits = sum(len(set(e[e >= 0].tolist()) & set(f[f >= 0].tolist())) for e, f in zip(exact, found))
    total = int((exact >= 0).sum())
    return hits / total if total else 1.0
