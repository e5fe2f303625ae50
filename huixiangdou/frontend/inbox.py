"""A durable inbox of platform messages in SQLite: each message is committed before the platform hears
"received" and moves pending -> answered / skipped, so a restart answers what a crash left pending.

It neither parses, answers nor sends: the frontends (lark_group, wechat_wkteam, wechat_personal) do.
"""
from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Callable, TypeVar

from loguru import logger

from huixiangdou.frontend.errors import InboxError
from huixiangdou.primitive.json_input import clean_text

# Platforms redeliver for hours (Lark: 15 s, 5 min, 1 h, 6 h), so settled ids are kept three days
# to recognise a late redelivery, then pruned.
KEEP_SECONDS = 3 * 24 * 3600
# A message left pending longer than this is not answered at start: the question is a day old.
REPLAY_SECONDS = 24 * 3600
# A message that was pending at three starts in a row is given up: it may be what crashes the process.
MAX_ATTEMPTS = 3
# Pruning settled rows on every insert would cost a scan per message; every Nth insert is enough.
PRUNE_EVERY = 100

PENDING, ANSWERED, SKIPPED = 'pending', 'answered', 'skipped'

_SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (
    message_id TEXT PRIMARY KEY,
    payload TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'answered', 'skipped')),
    accepted_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 1,
    settled_at REAL,
    reason TEXT NOT NULL DEFAULT '',
    reply TEXT NOT NULL DEFAULT '',
    reply_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS inbox_pending ON inbox (state, accepted_at);
"""

T = TypeVar('T')


class Acceptance(Enum):
    NEW = 'new'            # first delivery: the caller dispatches it
    PENDING = 'pending'    # a redelivery of a message being answered: not dispatched twice
    SETTLED = 'settled'    # a redelivery of a message answered or skipped: not answered again


@dataclass(frozen=True)
class InboxEntry:
    """A pending message handed back at start, with what the frontend stored to rebuild it."""
    message_id: str
    payload: dict
    accepted_at: float
    attempts: int


def settle(db: sqlite3.Connection, message_ids: list[str], state: str, *, reason: str = '', reply: str = '',
           reply_id: str = '', now: float | None = None) -> None:
    """Move pending rows to `state` inside the caller's transaction (polled_answers.py joins its insert to it)."""
    when = time.time() if now is None else now
    db.executemany("UPDATE inbox SET state = ?, reason = ?, reply = ?, reply_id = ?, settled_at = ? "
                   "WHERE message_id = ? AND state = 'pending'",
                   [(state, clean_text(reason), clean_text(reply), clean_text(reply_id), when, clean_text(m))
                    for m in message_ids if m])


class Inbox:
    """Per-frontend store of accepted messages; every call runs on one thread of its own (no fsync on the loop).

    Usage:
        inbox = Inbox(workdir / 'lark_group_inbox.sqlite')
        await inbox.open()
        for entry in await inbox.replay():          # what a crash left pending: dispatch again
            ...
        if await inbox.accept('om_1', {'text': 'how?'}) is Acceptance.NEW:   # before the HTTP 200
            ...                                                                 # dispatch
        await inbox.answered(['om_1'], reply='pip install', reply_id='om_9')   # after sending
    """

    def __init__(self, path: str | Path, *, keep_seconds: float = KEEP_SECONDS,
                 replay_seconds: float = REPLAY_SECONDS, max_attempts: int = MAX_ATTEMPTS,
                 clock: Callable[[], float] = time.time):
        if keep_seconds <= 0 or replay_seconds <= 0:
            raise ValueError(f'keep_seconds and replay_seconds must be > 0, got {keep_seconds}, {replay_seconds}')
        if max_attempts < 1:
            raise ValueError(f'max_attempts must be >= 1, got {max_attempts}')
        self.path = str(path)
        self.keep_seconds = keep_seconds
        self.replay_seconds = replay_seconds
        self.max_attempts = max_attempts
        self.clock = clock
        self._db: sqlite3.Connection | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._inserts = 0
        # accept() calls waiting for the next group commit, and the task committing them (None when idle).
        self._waiting: list[tuple[str, str, asyncio.Future]] = []
        self._committer: asyncio.Task | None = None

    @property
    def durable(self) -> bool:
        return self.path != ':memory:'

    async def open(self) -> None:
        if self._thread is not None:
            return
        # One thread owns the connection: calls are serialised, and fsync waits never block the event loop.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix='inbox')
        await self._call(self._connect)
        logger.info('inbox ready at {}', self.path)

    def _connect(self) -> None:
        if self.durable:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None)
        # WAL + FULL: a commit is on disk (WAL fsynced) before accept() returns, so the platform's
        # "received" is never sent for a message a crash or power cut could lose.
        db.execute('PRAGMA journal_mode=WAL')
        db.execute('PRAGMA synchronous=FULL')
        db.executescript(_SCHEMA)
        self._db = db

    async def _call(self, fn: Callable[..., T], *args) -> T:
        if self._thread is None:
            raise RuntimeError('Inbox.open() must be called before use')
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)
        except (sqlite3.Error, OSError) as exc:
            raise InboxError(f'inbox {self.path}: {exc}; check the disk (free space, permissions) under the '
                             'workdir') from exc

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn(db)` in one transaction on the inbox's thread: for tables kept beside the inbox (polled answers)."""
        def transaction() -> T:
            db = self._require_db()
            db.execute('BEGIN IMMEDIATE')
            try:
                result = fn(db)
            except BaseException:
                db.execute('ROLLBACK')
                raise
            db.execute('COMMIT')
            return result
        return await self._call(transaction)

    def _require_db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError('Inbox.open() must be called before use')
        return self._db

    async def accept(self, message_id: str, payload: dict) -> Acceptance:
        """Commit a newly delivered message (call before acknowledging it); a known id is not stored again.

        An empty id can be neither recognised when redelivered nor settled once answered (the reply names
        no id): such a message is answered once, as it arrives, and not stored — replaying it at every
        start would answer it again each time.
        Messages that arrive while a commit is on disk are committed together in the next one (group
        commit): each caller still returns only once its own message is on disk, for one fsync per batch.
        """
        if self._thread is None:
            raise RuntimeError('Inbox.open() must be called before use')
        if not message_id:
            return Acceptance.NEW
        key = clean_text(message_id)
        text = json.dumps(payload)  # ASCII escapes: a lone surrogate cannot fail the insert
        future: asyncio.Future[Acceptance] = asyncio.get_running_loop().create_future()
        self._waiting.append((key, text, future))
        if self._committer is None:
            self._committer = asyncio.get_running_loop().create_task(self._commit_waiting())
        return await future

    async def _commit_waiting(self) -> None:
        """Commit what accept() queued, batch after batch, until nothing waits."""
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    results = await self._call(self._insert_batch, [(key, text) for key, text, _ in batch])
                except Exception as exc:  # InboxError (disk) or a closed inbox: every caller of the batch hears it
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, _, future), result in zip(batch, results):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._committer = None

    def _insert_batch(self, items: list[tuple[str, str]]) -> list[Acceptance]:
        db = self._require_db()
        db.execute('BEGIN IMMEDIATE')
        try:
            results = [self._insert(db, key, text) for key, text in items]
        except BaseException:
            db.execute('ROLLBACK')
            raise
        db.execute('COMMIT')
        return results

    def _insert(self, db: sqlite3.Connection, key: str, text: str) -> Acceptance:
        inserted = db.execute('INSERT OR IGNORE INTO inbox (message_id, payload, state, accepted_at) '
                              "VALUES (?, ?, 'pending', ?)", (key, text, self.clock())).rowcount
        if inserted:
            self._inserts += 1
            if self._inserts % PRUNE_EVERY == 0:
                self._prune(db)
            return Acceptance.NEW
        row = db.execute('SELECT state FROM inbox WHERE message_id = ?', (key,)).fetchone()
        return Acceptance.PENDING if row and row[0] == PENDING else Acceptance.SETTLED

    async def replay(self) -> list[InboxEntry]:
        """The messages a crash or shutdown left pending, oldest first, each counted as one more attempt.

        Called once at start, before serving. Messages older than replay_seconds, or pending at
        max_attempts starts already, are skipped with a log line; settled rows past keep_seconds are pruned.
        """
        def take() -> list[InboxEntry]:
            db = self._require_db()
            now = self.clock()
            db.execute('BEGIN IMMEDIATE')
            try:
                self._prune(db)
                rows = db.execute('SELECT message_id, payload, accepted_at, attempts FROM inbox WHERE state = ? '
                                  'ORDER BY accepted_at', (PENDING,)).fetchall()
                entries, stale, tired = [], [], []
                for message_id, payload, accepted_at, attempts in rows:
                    if accepted_at < now - self.replay_seconds:
                        stale.append(message_id)
                    elif attempts >= self.max_attempts:
                        tired.append(message_id)
                    else:
                        entries.append(InboxEntry(message_id, json.loads(payload), accepted_at, attempts + 1))
                settle(db, stale, SKIPPED, reason='expired', now=now)
                settle(db, tired, SKIPPED, reason='gave_up', now=now)
                db.executemany('UPDATE inbox SET attempts = attempts + 1 WHERE message_id = ?',
                               [(e.message_id,) for e in entries])
                db.execute('COMMIT')
            except BaseException:
                db.execute('ROLLBACK')
                raise
            if stale:
                logger.warning('inbox {}: {} message(s) pending for over {:.0f} h not answered: {}', self.path,
                               len(stale), self.replay_seconds / 3600, ', '.join(stale[:10]))
            if tired:
                logger.error('inbox {}: gave up on {} message(s) pending at {} starts in a row (did answering them '
                             'crash the process?): {}', self.path, len(tired), self.max_attempts, ', '.join(tired[:10]))
            return entries
        entries = await self._call(take)
        if entries:
            logger.info('inbox {}: answering {} message(s) left pending by the last run', self.path, len(entries))
        return entries

    async def replay_as(self, build: Callable[[dict], T]) -> list[tuple[str, T]]:
        """replay(), each payload rebuilt with `build`; one it cannot rebuild (stored by another version)
        is skipped as unreadable rather than stop the start."""
        rebuilt = []
        for entry in await self.replay():
            try:
                rebuilt.append((entry.message_id, build(entry.payload)))
            except (TypeError, KeyError, ValueError) as exc:
                logger.error('inbox {}: message {} cannot be read back ({}); not answered', self.path,
                             entry.message_id, exc)
                await self.skipped([entry.message_id], 'unreadable')
        return rebuilt

    def _prune(self, db: sqlite3.Connection) -> None:
        db.execute('DELETE FROM inbox WHERE state != ? AND accepted_at < ?', (PENDING, self.clock() - self.keep_seconds))

    async def answered(self, message_ids: list[str], *, reply: str = '', reply_id: str = '') -> None:
        """Record that a reply was sent for these messages (one reply can settle merged messages)."""
        await self.run(lambda db: settle(db, message_ids, ANSWERED, reply=reply, reply_id=reply_id,
                                         now=self.clock()))

    async def skipped(self, message_ids: list[str], reason: str) -> None:
        """Record that these messages get no reply (silent, rate limited, ...): not answered at the next start."""
        await self.run(lambda db: settle(db, message_ids, SKIPPED, reason=reason, now=self.clock()))

    async def state(self, message_id: str) -> str | None:
        """pending / answered / skipped, or None for an id never accepted (or pruned)."""
        row = await self._call(lambda: self._require_db().execute(
            'SELECT state FROM inbox WHERE message_id = ?', (clean_text(message_id),)).fetchone())
        return row[0] if row else None

    async def close(self) -> None:
        if self._thread is None:
            return
        if self._committer is not None:  # what was accepted is committed before the connection closes
            await asyncio.shield(self._committer)
        def disconnect() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None
        try:
            await self._call(disconnect)
        finally:
            self._thread.shutdown(wait=True)
            self._thread = None
