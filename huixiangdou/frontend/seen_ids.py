"""Event and message ids already handled, kept in SQLite so a platform's redelivery after a restart is dropped.

Platforms retry a delivery for hours (Lark: 15 s, 5 min, 1 h, 6 h), so ids are kept `keep_seconds`
(three days by default) and pruned as new ones arrive; it does not decide what a duplicate is.
"""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Callable

from loguru import logger

from huixiangdou.primitive.json_input import clean_text

KEEP_SECONDS = 3 * 24 * 3600
# Pruning on every insert would cost a scan per event; every Nth insert keeps the table small enough.
PRUNE_EVERY = 100

_SCHEMA = 'CREATE TABLE IF NOT EXISTS seen_ids (id TEXT PRIMARY KEY, seen_at REAL NOT NULL)'


class SeenIds:
    """A persistent "have we handled this id?" set.

    >>> seen = SeenIds(':memory:'); seen.warm_up()
    >>> seen.add('event:ev_1'), seen.add('event:ev_1'), seen.add('event:ev_2')
    (True, False, True)
    """

    def __init__(self, path: str | Path, keep_seconds: float = KEEP_SECONDS,
                 clock: Callable[[], float] = time.time):
        if keep_seconds <= 0:
            raise ValueError(f'keep_seconds must be > 0, got {keep_seconds}')
        self.path = str(path)
        self.keep_seconds = keep_seconds
        self._clock = clock
        self._db: sqlite3.Connection | None = None
        self._inserts = 0

    def warm_up(self) -> None:
        if self._db is not None:
            return
        if self.path != ':memory:':
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None)
        # WAL + NORMAL: an insert costs well under a millisecond, fine on the event loop; a crash may
        # forget the last few ids (a duplicate answer at worst), never corrupt the file.
        self._db.execute('PRAGMA journal_mode=WAL')
        self._db.execute('PRAGMA synchronous=NORMAL')
        self._db.execute(_SCHEMA)
        self._prune()
        logger.debug('seen-id store ready at {}', self.path)

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError('SeenIds.warm_up() must be called before use')
        return self._db

    def add(self, item: str) -> bool:
        """Record `item`; True if it was not seen within keep_seconds (an empty id always counts as new)."""
        if not item:
            return True
        item = clean_text(item)
        now = self._clock()
        # Autocommit, one statement in the common case: the callback path runs this for every event.
        if self.db.execute('INSERT OR IGNORE INTO seen_ids (id, seen_at) VALUES (?, ?)', (item, now)).rowcount == 0:
            # Known id: new again only if it was seen longer ago than keep_seconds (not yet pruned).
            renewed = self.db.execute('UPDATE seen_ids SET seen_at = ? WHERE id = ? AND seen_at < ?',
                                      (now, item, now - self.keep_seconds))
            if renewed.rowcount == 0:
                return False
        self._inserts += 1
        if self._inserts % PRUNE_EVERY == 0:
            self._prune()
        return True

    def _prune(self) -> None:
        self.db.execute('DELETE FROM seen_ids WHERE seen_at < ?', (self._clock() - self.keep_seconds,))

    def __len__(self) -> int:
        return self.db.execute('SELECT COUNT(*) FROM seen_ids').fetchone()[0]

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
