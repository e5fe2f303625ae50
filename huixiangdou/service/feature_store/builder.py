"""Builds the feature store: walk repodir, parse, chunk, embed, index, calibrate, save atomically.

Only new or changed files are parsed and embedded again (by content hash); one bad file is skipped and
reported, never fatal. Querying a built store is in store.py; thresholds are chosen in calibration.py.
"""
from __future__ import annotations

import hashlib
import threading
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from filelock import Timeout
from loguru import logger
from tqdm import tqdm

from huixiangdou.config import FeatureStoreConfig, OCRConfig
from huixiangdou.primitive.chunk import Chunk
from huixiangdou.primitive.chunk_table import ChunkTable
from huixiangdou.primitive.documents.image import IMAGE_SUFFIXES
from huixiangdou.primitive.documents.parse_pool import ParseCancelled, ParseLimits, ParsePool
from huixiangdou.primitive.documents.walker import walk_repo
from huixiangdou.primitive.embedding_cache import EmbeddingCache
from huixiangdou.primitive.image_reader import ImageReader
from huixiangdou.primitive.ocr import make_ocr
from huixiangdou.primitive.entity_graph import EntityGraph
from huixiangdou.primitive.sparse_index import SparseIndex
from huixiangdou.primitive.splitter import TextSplitter, embedding_text
from huixiangdou.primitive.tokenizer import tokenize
from huixiangdou.service.feature_store import calibration
from huixiangdou.service.feature_store.calibration_cache import CALIBRATION_CACHE
from huixiangdou.service.feature_store.milvus_store import make_milvus_index
from huixiangdou.service.feature_store.reject_model import RejectModel, RejectModelError
from huixiangdou.service.feature_store.store import FeatureStore
from huixiangdou.service.feature_store.store_calibration import StoreCalibrator
from huixiangdou.service.feature_store.store_files import (CURRENT, FORMAT_VERSION, FileRecord, Manifest,
                                                           StoreError, current_folder, make_dense_index,
                                                           read_chunks, read_manifest, remove_partial_folders,
                                                           verify_version, workdir_lock)


# Text read from images, by image content: a --rebuild or a changed docx with the same pictures costs no OCR.
OCR_CACHE = 'ocr_cache'
# Vectors by (model, chunk text): unchanged, duplicated or re-split text is never embedded twice.
EMBEDDING_CACHE = 'embedding_cache.sqlite'
# Files whose text depends on OCR: read again, even unchanged, when OCR is switched on or off or its engine changes.
_READ_WITH_OCR = frozenset({'.pdf', '.docx', '.pptx', *IMAGE_SUFFIXES})


class BuildError(RuntimeError):
    """The build cannot start or produced nothing: the message says what to fix."""


class BuildCancelled(BuildError):
    """The build was cancelled (console button, SIGTERM): nothing was published, the previous store stands."""

    def __init__(self, message: str = 'build cancelled: the previous feature store (if any) is unchanged'):
        super().__init__(message)


@dataclass
class BuildReport:
    repo_dir: str
    work_dir: str
    indexed: list[str] = field(default_factory=list)      # parsed and embedded in this run
    reused: list[str] = field(default_factory=list)       # unchanged since the last build
    deleted: list[str] = field(default_factory=list)      # gone from repodir, dropped
    skipped: list[dict] = field(default_factory=list)     # {"source", "reason"}
    chunks: int = 0
    new_chunks: int = 0
    seconds: float = 0.0
    parse_seconds: float = 0.0
    embed_seconds: float = 0.0
    calibration: dict = field(default_factory=dict)
    examples: dict = field(default_factory=dict)
    ocr: dict = field(default_factory=dict)               # {"engine", "images", "cached", "seconds"}; {} when off
    # {"index": "flat" or "IVF<n>,Flat nprobe=<p>", "recall_at_10": against exact search, None when exact}
    dense_index: dict = field(default_factory=dict)
    embedding_cache: dict = field(default_factory=dict)   # {"path", "hits", "embedded"}; {} when off or unused
    # The entity graph: {"entities", "mentions", "rows_reused", "seconds"} (primitive/entity_graph.py)
    graph: dict = field(default_factory=dict)
    calibrate_seconds: float = 0.0
    # What the calibration reused from its last run: {"evidence_reused", "evidence_computed",
    # "message_fits": "reused" | "fitted" | None (the rule fits none)}; {} without examples.
    calibration_cache: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


def chunk_tokens(chunk: Chunk) -> list[str]:
    """BM25 words of a chunk: its text, its anchor, and its file name (e.g. 安装.md → 安装)."""
    return tokenize(f'{Path(chunk.source).stem}\n{chunk.anchor}\n{chunk.text}')


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


@dataclass
class _Previous:
    """Rows of the last build, reusable for files whose content hash is unchanged: read from disk by
    each file's row range, never all at once."""
    manifest: Manifest
    chunks: ChunkTable | list[Chunk]
    vectors: np.ndarray     # memory-mapped
    sparse: SparseIndex     # memory-mapped; `tokens(first, stop)` gives a file's BM25 words back
    reject_model: RejectModel | None = None
    graph: EntityGraph | None = None   # its rows' entities are reused for unchanged files


def _load_previous(work_dir: Path, manifest: Manifest) -> _Previous | None:
    folder = current_folder(work_dir)
    try:
        chunks = read_chunks(folder)
        vectors = np.load(folder / 'vectors.npy', mmap_mode='r')
        sparse = SparseIndex.load(folder)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning('previous store in {} unreadable ({}); rebuilding everything', folder, exc)
        return None
    if not len(chunks) == len(vectors) == len(sparse):
        return None
    reject_model = None
    if manifest.reject_threshold is not None and manifest.format_version == FORMAT_VERSION:
        try:
            reject_model = RejectModel.load(folder)
        except RejectModelError as exc:
            logger.warning('previous reject model unusable ({})', exc)
    graph = None
    try:
        graph = EntityGraph.open(folder)
    except sqlite3.Error as exc:
        logger.warning('previous entity graph unreadable ({}); extracting entities afresh', exc)
    return _Previous(manifest, chunks, vectors, sparse, reject_model, graph if graph and graph.current else None)


# Rows of the previous entity graph read at once when a build reuses unchanged files' entities.
_GRAPH_ROWS_PER_READ = 512


class FeatureStoreBuilder:
    """Build or update the store in `work_dir` from `repo_dir`.

    Usage:
        builder = FeatureStoreBuilder(config.feature_store, make_embedder(config), ocr=config.ocr)
        report = builder.build(Path('repodir'), Path('workdir'),
                               good=Path('resource/good_questions.json'),
                               bad=Path('resource/bad_questions.json'))
    """

    def __init__(self, config: FeatureStoreConfig, embedder, progress: bool = True,
                 on_progress: Callable[[str, int, int], None] | None = None, ocr: OCRConfig | None = None,
                 cancel: threading.Event | None = None):
        """`on_progress(phase, done, total)` hears of each step as it happens, for a live view (the web
        console): phases "parse" (files), "embed" (new chunks), "calibrate" and "save" (0 of 1, then 1 of 1).
        `ocr` says how text in images is read when `config.ocr` is on; without it, the offline default
        ([ocr] engine = "rapidocr"), so a builder reads images exactly as an unedited config.ini does.
        Setting `cancel` stops the build between files and batches (running parses are killed) with
        BuildCancelled, publishing nothing."""
        self.config = config
        self.cancel = cancel
        self.limits = ParseLimits(timeout_s=config.parse_timeout_s, memory_mb=config.parse_memory_mb,
                                  workers=config.parse_workers, max_expanded_mb=config.max_expanded_mb)
        self.ocr_config = ocr if ocr is not None else OCRConfig()
        self.embedder = embedder
        self.progress = progress
        self.on_progress = on_progress or (lambda phase, done, total: None)
        # [feature_store] reject_dense_weight = -1 means "calibrate it": resolved here, once.
        self.fixed_dense_weight = None if config.reject_dense_weight == -1 else config.reject_dense_weight

    def _check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise BuildCancelled()

    def _splitter(self) -> TextSplitter:
        size = min(self.config.chunk_size, self.embedder.max_tokens)
        overlap = min(self.config.chunk_overlap, size // 2)
        return TextSplitter(self.embedder.counter, chunk_size=size, chunk_overlap=overlap,
                            min_chunk_chars=self.config.min_chunk_chars)

    def _previous(self, work_dir: Path, rebuild: bool) -> _Previous | None:
        if rebuild or not (work_dir / CURRENT).exists():
            return None
        try:
            manifest = read_manifest(work_dir)
            # Reusing damaged rows would publish the damage under fresh checksums.
            verify_version(current_folder(work_dir), manifest)
        except (StoreError, OSError, ValueError, TypeError) as exc:
            logger.warning('previous store unusable ({}); rebuilding everything', exc)
            return None
        same = (manifest.embedding_model == self.embedder.model_id
                and manifest.chunk_size == self.config.chunk_size
                and manifest.chunk_overlap == self.config.chunk_overlap
                and manifest.min_chunk_chars == self.config.min_chunk_chars)
        if not same:
            logger.info('model or chunk settings changed since the last build; rebuilding everything')
            return None
        return _load_previous(work_dir, manifest)

    def _last_calibration(self, work_dir: Path, previous: _Previous | None) -> tuple[Manifest, RejectModel] | None:
        """The current store's manifest and reject model, if they fit this embedding model."""
        if previous is not None:
            return (previous.manifest, previous.reject_model) if previous.reject_model is not None else None
        # A full rebuild (or new chunk settings) re-embeds everything, but a model fitted on examples
        # embedded by the same model still applies: keep it rather than falling back to the rule.
        try:
            manifest = read_manifest(work_dir)
            if (manifest.embedding_model != self.embedder.model_id or manifest.reject_threshold is None
                    or manifest.format_version != FORMAT_VERSION):
                return None
            verify_version(current_folder(work_dir), manifest)
            return manifest, RejectModel.load(current_folder(work_dir))
        except (StoreError, RejectModelError):
            return None

    def build(self, repo_dir: Path, work_dir: Path, rebuild: bool = False,
              good: Path | None = None, bad: Path | None = None) -> BuildReport:
        """Build and publish under the workdir lock, so a concurrent build waits and then sees this one's
        result (its incremental pass starts from it) instead of publishing over it."""
        work_dir = Path(work_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
        lock = workdir_lock(work_dir)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            logger.warning('another build is running on {} (it holds {}); waiting for it to finish', work_dir,
                           lock.lock_file)
            while True:  # in steps, so a cancel is heard while waiting
                self._check_cancel()
                try:
                    lock.acquire(timeout=0.5)
                    break
                except Timeout:
                    continue
        try:
            remove_partial_folders(work_dir)
            return self._build_locked(Path(repo_dir), work_dir, rebuild, good, bad)
        finally:
            lock.release()

    def _build_locked(self, repo_dir: Path, work_dir: Path, rebuild: bool, good: Path | None,
                      bad: Path | None) -> BuildReport:
        start = time.perf_counter()
        started = time.time()
        report = BuildReport(str(repo_dir), str(work_dir))
        walk = walk_repo(repo_dir, int(self.config.max_file_size_mb * 1024 * 1024))
        report.skipped = [{'source': s.source, 'reason': s.reason} for s in walk.skipped]
        if not walk.files:
            raise BuildError(f'{repo_dir} has no supported documents to index (put md, txt, pdf, docx, '
                             'xlsx, pptx, html, images or source files there, or fix [feature_store] repo_dir)')
        self.embedder.warm_up()
        previous = self._previous(work_dir, rebuild)
        splitter = self._splitter()
        # The engine loads its model on the first image only; a repodir without images pays nothing.
        reader = (ImageReader(make_ocr(self.ocr_config), self.ocr_config, cache_dir=work_dir / OCR_CACHE)
                  if self.config.ocr else None)
        ocr_used = f'{reader.engine.name} {getattr(reader.engine, "model", "")}'.strip() if reader else ''
        ocr_changed = previous is not None and previous.manifest.ocr != ocr_used

        # Each entry: (source, FileRecord-without-rows, chunks, vectors-or-None, tokens-or-None)
        plan: list[tuple[str, str, int, list[Chunk], np.ndarray | None, list[list[str]] | None]] = []
        parse_start = time.perf_counter()
        total = len(walk.files)
        bar = tqdm(total=total, desc='parse', unit='file', disable=not self.progress)
        done = 0

        def step() -> None:
            nonlocal done
            done += 1
            bar.update(1)
            self.on_progress('parse', done, total)

        digests: dict[str, str] = {}
        to_parse: list[tuple[Path, str]] = []
        reused: dict[str, tuple] = {}
        reused_first: dict[str, int] = {}   # the previous store's first row of each reused file
        for entry in walk.files:
            self._check_cancel()
            try:
                digest = file_sha256(entry.path)
            except OSError as exc:
                report.skipped.append({'source': entry.source, 'reason': f'cannot read: {exc.strerror}'})
                step()
                continue
            digests[entry.source] = digest
            old = previous.manifest.files.get(entry.source) if previous else None
            if (old is not None and old.sha256 == digest
                    and not (ocr_changed and entry.path.suffix.lower() in _READ_WITH_OCR)):
                rows = slice(old.first, old.first + old.count)
                reused_first[entry.source] = old.first
                reused[entry.source] = (previous.chunks[rows], previous.vectors[rows],
                                        previous.sparse.tokens(rows.start, rows.stop))
                step()
            else:
                to_parse.append((entry.path, entry.source))
        # Every file is parsed in a worker process killed past the deadline or the memory limit.
        parsed: dict[str, list[Chunk]] = {}
        try:
            with ParsePool(self.limits, ocr=self.ocr_config if reader else None,
                           ocr_cache=work_dir / OCR_CACHE) as pool:
                for outcome in pool.parse(to_parse, cancel=self.cancel):
                    step()
                    if reader is not None:
                        reader.absorb(outcome.ocr, outcome.ocr_keys)
                    if outcome.reason is not None:
                        report.skipped.append({'source': outcome.source, 'reason': outcome.reason})
                        logger.warning('skipped {}: {}', outcome.source, outcome.reason)
                        continue
                    try:
                        chunks = splitter.split(outcome.document)
                    except Exception as exc:  # boundary: one broken file must not stop the build
                        report.skipped.append({'source': outcome.source,
                                               'reason': f'splitter failed: {exc.__class__.__name__}: {exc}'})
                        logger.exception('splitter failed on {}', outcome.source)
                        continue
                    if not chunks:
                        report.skipped.append({'source': outcome.source, 'reason': 'no text'})
                        continue
                    parsed[outcome.source] = chunks
        except ParseCancelled as exc:
            raise BuildCancelled() from exc
        finally:
            bar.close()
        for entry in walk.files:  # in walk order, so a store's rows do not depend on which parse ended first
            if entry.source in reused:
                plan.append((entry.source, digests[entry.source], entry.size, *reused[entry.source]))
                report.reused.append(entry.source)
            elif entry.source in parsed:
                plan.append((entry.source, digests[entry.source], entry.size, parsed[entry.source], None, None))
                report.indexed.append(entry.source)
        report.parse_seconds = time.perf_counter() - parse_start
        if reader is not None:
            report.ocr = {'engine': reader.engine.name, 'images': reader.stats.images,
                          'cached': reader.stats.cached, 'seconds': round(reader.stats.seconds, 3)}
        self.on_progress('parse', len(walk.files), len(walk.files))
        if previous:
            present = {p[0] for p in plan} | {s['source'] for s in report.skipped}
            report.deleted = sorted(set(previous.manifest.files) - present)
        if not plan:
            raise BuildError(f'none of the documents in {repo_dir} could be parsed; see the skipped list')

        self._check_cancel()
        new_chunks = [c for p in plan if p[4] is None for c in p[3]]
        report.new_chunks = len(new_chunks)
        embed_start = time.perf_counter()
        new_vectors = self._embed([embedding_text(c) for c in new_chunks], work_dir, report)
        report.embed_seconds = time.perf_counter() - embed_start
        new_tokens = [chunk_tokens(c) for c in new_chunks]

        chunks: list[Chunk] = []
        vectors: list[np.ndarray] = []
        tokens: list[list[str]] = []
        files_meta: dict[str, FileRecord] = {}
        old_rows = np.full(sum(len(p[3]) for p in plan), -1, dtype=np.int64)   # new row -> previous row
        cursor = 0
        for source, digest, size, file_chunks, file_vectors, file_tokens in plan:
            if file_vectors is None:
                n = len(file_chunks)
                file_vectors = new_vectors[cursor:cursor + n]
                file_tokens = new_tokens[cursor:cursor + n]
                cursor += n
            if source in reused_first:
                old_rows[len(chunks):len(chunks) + len(file_chunks)] = range(
                    reused_first[source], reused_first[source] + len(file_chunks))
            files_meta[source] = FileRecord(digest, size, len(chunks), len(file_chunks))
            chunks.extend(file_chunks)
            vectors.append(file_vectors)
            tokens.extend(file_tokens)
        matrix = np.ascontiguousarray(np.concatenate(vectors), dtype=np.float32)
        manifest = Manifest(embedding_model=self.embedder.model_id, dimension=self.embedder.dimension,
                            chunk_size=self.config.chunk_size, chunk_overlap=self.config.chunk_overlap,
                            min_chunk_chars=self.config.min_chunk_chars, ocr=ocr_used,
                            files=files_meta, built_at=time.strftime('%Y-%m-%dT%H:%M:%S%z'))
        dense = (make_milvus_index(self.config, manifest, chunks, matrix) if self.config.vector_store == 'milvus'
                 else make_dense_index(matrix, self.config.exact_search_max_chunks))
        report.dense_index = {'index': dense.describe(), 'recall_at_10': dense.recall_at_10}
        store = FeatureStore(manifest, chunks, matrix, SparseIndex(tokens), self.embedder, dense=dense)
        store.graph = self._graph(chunks, old_rows, previous, report)
        report.chunks = len(chunks)
        if self.fixed_dense_weight is not None:
            manifest.reject_dense_weight = self.fixed_dense_weight
        self._check_cancel()
        self.on_progress('calibrate', 0, 1)
        calibrate_start = time.perf_counter()
        if good and bad:
            self._calibrator(work_dir).run(store, calibration.load_questions(Path(good)),
                                           calibration.load_questions(Path(bad)), report)
        elif (last := self._last_calibration(work_dir, previous)) is not None:
            # No question files this time: keep the last calibration rather than silently losing it.
            last_manifest, store.reject_model = last
            manifest.reject_threshold = last_manifest.reject_threshold
            manifest.reject_dense_weight = last_manifest.reject_dense_weight
            manifest.calibration = report.calibration = last_manifest.calibration
            logger.warning('no question files: reusing the previous calibration (threshold {:.4f}); it may '
                           'no longer fit the changed documents', manifest.reject_threshold)
        else:
            # No examples at all: the conservative rule, never "answer everything".
            self._calibrator(work_dir).run(store, [], [], report)
        report.calibrate_seconds = time.perf_counter() - calibrate_start
        self._check_cancel()
        self.on_progress('save', 0, 1)
        report.seconds = time.perf_counter() - start
        manifest.build_seconds = round(report.seconds, 3)
        store.save(work_dir, report.to_json(), started=started)
        if reader is not None and not report.reused:
            reader.prune()  # every file was read: texts of images no longer in repodir can go
        self.on_progress('save', 1, 1)
        return report

    def _graph(self, chunks: list[Chunk], old_rows: np.ndarray, previous: _Previous | None,
               report: BuildReport) -> EntityGraph:
        """The entity graph of the new rows; an unchanged file's rows take their entities from the last graph."""
        self._check_cancel()
        start = time.perf_counter()
        last = previous.graph if previous is not None else None
        reused = 0
        block: dict[int, dict[str, bool]] = {}   # previous rows read in runs, not one query per row

        def reuse(row: int) -> dict[str, bool] | None:
            nonlocal reused, block
            old = int(old_rows[row])
            if last is None or old < 0:
                return None
            if old not in block:
                block = dict(enumerate(last.row_entities(old, old + _GRAPH_ROWS_PER_READ), start=old))
            reused += 1
            return block[old]

        graph = EntityGraph.build(chunks, reuse=reuse)
        report.graph = {'entities': len(graph), 'rows_reused': reused,
                        'seconds': round(time.perf_counter() - start, 3)}
        return graph

    def _embed(self, texts: list[str], work_dir: Path, report: BuildReport) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.embedder.dimension), dtype=np.float32)
        cache = self._embedding_cache(work_dir)
        step = self.config.embedding_batch_size
        # Longest first across the whole set, so every batch holds texts of similar length and little
        # padding is computed (the model sorts only within one call); results go back in input order.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        vectors = np.zeros((len(texts), self.embedder.dimension), dtype=np.float32)
        try:
            with tqdm(total=len(texts), desc='embed', unit='chunk', disable=not self.progress) as bar:
                for i in range(0, len(texts), step):
                    self._check_cancel()
                    self.on_progress('embed', i, len(texts))
                    rows = order[i:i + step]
                    batch = [texts[r] for r in rows]
                    vectors[rows] = cache.embed(batch, self.embedder.encode) if cache else self.embedder.encode(batch)
                    bar.update(len(rows))
        finally:
            if cache is not None:
                report.embedding_cache = {'path': str(cache.path), 'hits': cache.hits, 'embedded': cache.misses}
                cache.close()
        self.on_progress('embed', len(texts), len(texts))
        return vectors

    def _calibrator(self, work_dir: Path) -> StoreCalibrator:
        return StoreCalibrator(self.embedder, self.config.reject_target, self.fixed_dense_weight,
                               work_dir / CALIBRATION_CACHE,
                               query_cache=lambda: self._embedding_cache(work_dir, queries=True),
                               progress=self.progress,
                               on_fold=lambda done, total: self.on_progress('calibrate', done, total))

    def _embedding_cache(self, work_dir: Path, queries: bool = False) -> EmbeddingCache | None:
        """The content-addressed cache ([feature_store] embedding_cache), or None when it is "off".
        `queries`: the model's query side (the examples), under its own key: e5 embeds queries differently."""
        where = self.config.embedding_cache
        if where == 'off':
            return None
        path = Path(where) if where else work_dir / EMBEDDING_CACHE
        model_id = f'{self.embedder.model_id}\0query' if queries else self.embedder.model_id
        return EmbeddingCache(path, model_id, self.embedder.dimension)
