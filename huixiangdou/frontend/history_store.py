"""Recent messages per group in SQLite, so conversation context survives restarts.

Keeps the last `size` messages of each group and turns them into (question, answer) pairs for the
worker; it does not decide what to answer or talk to any platform.
"""
from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

from huixiangdou.primitive.json_input import clean_text

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('user', 'bot')),
    sender_id TEXT NOT NULL DEFAULT '',
    message_id TEXT NOT NULL DEFAULT '',
    reply_to TEXT NOT NULL DEFAULT '',
    content TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_group ON messages (group_id, id);
"""


@dataclass
class StoredMessage:
    group_id: str
    role: str            # 'user' or 'bot'
    content: str
    sender_id: str = ''
    message_id: str = ''
    reply_to: str = ''   # for a bot row: the message id it answered
    created_at: float = 0.0


class HistoryStore:
    """SQLite-backed ring of recent messages per group.

    >>> store = HistoryStore(':memory:', size=4); store.warm_up()
    >>> store.append(StoredMessage('g', 'user', 'how to install?', message_id='m1'))
    >>> store.append(StoredMessage('g', 'bot', 'pip install huixiangdou', reply_to='m1'))
    >>> store.pairs('g')
    [('how to install?', 'pip install huixiangdou')]
    """

    def __init__(self, path: str | Path, size: int = 20):
        if size < 0:
            raise ValueError(f'size must be >= 0, got {size}')
        self.path = str(path)
        self.size = size
        self._db: sqlite3.Connection | None = None

    def warm_up(self) -> None:
        if self._db is not None:
            return
        if self.path != ':memory:':
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path)
        # Text written by another tool may hold bytes that are not UTF-8; read it as U+FFFD, not an error.
        self._db.text_factory = lambda raw: raw.decode('utf-8', 'replace')
        # WAL + NORMAL: a write costs well under a millisecond, so calling from the event loop is fine,
        # and a crash loses at most the last few messages of context, never the database.
        self._db.execute('PRAGMA journal_mode=WAL')
        self._db.execute('PRAGMA synchronous=NORMAL')
        self._db.executescript(_SCHEMA)
        logger.info('history store ready at {} ({} messages per group)', self.path, self.size)

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError('HistoryStore.warm_up() must be called before use')
        return self._db

    def append(self, message: StoredMessage) -> None:
        if self.size == 0:
            return
        with self.db:
            self.db.execute(
                'INSERT INTO messages (group_id, role, sender_id, message_id, reply_to, content, created_at)'
                ' VALUES (?, ?, ?, ?, ?, ?, ?)',
                # Cleaned here, the edge to SQLite: a lone surrogate (from a platform or a model's
                # reply) cannot be encoded as UTF-8 and would fail the insert.
                (clean_text(message.group_id), message.role, clean_text(message.sender_id),
                 clean_text(message.message_id), clean_text(message.reply_to), clean_text(message.content),
                 message.created_at or time.time()))
            self.db.execute(
                'DELETE FROM messages WHERE group_id = ? AND id NOT IN '
                '(SELECT id FROM messages WHERE group_id = ? ORDER BY id DESC LIMIT ?)',
                (clean_text(message.group_id), clean_text(message.group_id), self.size))

    def recent(self, group_id: str) -> list[StoredMessage]:
        """The group's kept messages, oldest first."""
        rows = self.db.execute(
            'SELECT group_id, role, content, sender_id, message_id, reply_to, created_at FROM messages '
            'WHERE group_id = ? ORDER BY id', (clean_text(group_id),)).fetchall()
        return [StoredMessage(*row) for row in rows]

    def pairs(self, group_id: str) -> list[tuple[str, str]]:
        """(question, answer) turns: each bot reply with the user message it answered."""
        messages = self.recent(group_id)
        by_id = {m.message_id: m for m in messages if m.role == 'user' and m.message_id}
        turns = []
        last_user = None
        for m in messages:
            if m.role == 'user':
                last_user = m
                continue
            asked = by_id.get(m.reply_to) or last_user
            if asked is not None:
                turns.append((asked.content, m.content))
        return turns

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
