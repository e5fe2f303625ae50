"""Chunk texts and citations on disk (SQLite), read by row: a million chunks cost no memory until asked for.

It stores and fetches chunks by row number; which rows a query needs is the feature store's business.
"""
from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from huixiangdou.primitive.chunk import Chunk

_BATCH = 900  # under SQLite's default limit of 999 parameters in one statement


class ChunkTable(Sequence):
    """A read-only, sequence-like view of a version folder's chunks (`table[row]`, `table[a:b]`, `get`).

    Usage:
        ChunkTable.write(folder / ChunkTable.FILE, chunks)
        table = ChunkTable(folder / ChunkTable.FILE)
        table.get([3, 1])      # [Chunk of row 3, Chunk of row 1]
        table.rows_read        # how many rows were fetched so far
    """

    FILE = 'chunks.sqlite'

    def __init__(self, path: Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f'no chunk table at {self.path}')
        # One read-only connection shared by the worker's threads; sqlite3 objects are not thread-safe.
        self._db = sqlite3.connect(f'file:{self.path}?mode=ro', uri=True, check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock:
            (last,) = self._db.execute('SELECT max(row) FROM chunks').fetchone()
        self._len = 0 if last is None else int(last) + 1
        self.rows_read = 0

    @staticmethod
    def write(path: Path, chunks: Iterable[Chunk]) -> int:
        """Write `chunks` in row order to a new table at `path`; returns the row count."""
        db = sqlite3.connect(path)
        try:
            db.execute('CREATE TABLE chunks(row INTEGER PRIMARY KEY, text TEXT NOT NULL, '
                       'source TEXT NOT NULL, anchor TEXT NOT NULL)')
            rows = ((i, c.text, c.source, c.anchor) for i, c in enumerate(chunks))
            with db:
                db.executemany('INSERT INTO chunks VALUES (?, ?, ?, ?)', rows)
            (count,) = db.execute('SELECT count(*) FROM chunks').fetchone()
        finally:
            db.close()
        return int(count)

    def __len__(self) -> int:
        return self._len

    def get(self, rows: Sequence[int]) -> list[Chunk]:
        """The chunks at `rows`, in that order (IndexError for a row the table lacks)."""
        rows = [int(r) for r in rows]
        found: dict[int, Chunk] = {}
        wanted = sorted(set(rows))
        with self._lock:
            for i in range(0, len(wanted), _BATCH):
                part = wanted[i:i + _BATCH]
                marks = ','.join('?' * len(part))
                for row, text, source, anchor in self._db.execute(
                        f'SELECT row, text, source, anchor FROM chunks WHERE row IN ({marks})', part):
                    found[row] = Chunk(text, source, anchor)
        self.rows_read += len(found)
        missing = [r for r in rows if r not in found]
        if missing:
            raise IndexError(f'rows {missing[:5]} are not in the chunk table of {len(self)} rows')
        return [found[r] for r in rows]

    def __getitem__(self, key):
        if isinstance(key, slice):
            start, stop, step = key.indices(self._len)
            if step != 1:
                return self.get(range(start, stop, step))
            return list(self._range(start, stop))
        row = int(key)
        if row < 0:
            row += self._len
        if not 0 <= row < self._len:
            raise IndexError(f'row {key} is not in the chunk table of {len(self)} rows')
        return self.get([row])[0]

    def _range(self, start: int, stop: int, batch: int = 10_000) -> Iterator[Chunk]:
        for lo in range(start, stop, batch):
            with self._lock:
                part = self._db.execute('SELECT text, source, anchor FROM chunks WHERE row >= ? AND row < ? '
                                        'ORDER BY row', (lo, min(stop, lo + batch))).fetchall()
            self.rows_read += len(part)
            yield from (Chunk(*r) for r in part)

    def __iter__(self) -> Iterator[Chunk]:
        """Every chunk in row order, fetched in batches (the builder streams a previous version this way)."""
        return self._range(0, self._len)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def chunks_at(chunks: Sequence[Chunk], rows: Sequence[int]) -> list[Chunk]:
    """`[chunks[r] for r in rows]`, in one query when `chunks` is a ChunkTable."""
    if isinstance(chunks, ChunkTable):
        return chunks.get(rows)
    return [chunks[int(r)] for r in rows]
