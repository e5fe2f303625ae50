"""Answers for the Android helper app, held per group until the app polls for that group, in the frontend's
inbox database so an answer waiting for its poll survives a restart.

Bounded per group and by age; each answer is handed out once. It holds data only: no HTTP, no worker.
"""
from __future__ import annotations

import json
import sqlite3
import time
from typing import Callable

from loguru import logger

from huixiangdou.frontend.inbox import ANSWERED, SKIPPED, Inbox, settle
from huixiangdou.frontend.wechat_app_protocol import PolledItem
from huixiangdou.primitive.json_input import clean_text

_SCHEMA = (
    'CREATE TABLE IF NOT EXISTS polled_answers (id INTEGER PRIMARY KEY AUTOINCREMENT, group_id TEXT NOT NULL, '
    'item TEXT NOT NULL, expires_at REAL NOT NULL)',
    'CREATE INDEX IF NOT EXISTS polled_by_group ON polled_answers (group_id, id)',
)


class PolledAnswers:
    """Per-group FIFO of PolledItem; `take` empties a group's queue, items older than `keep_seconds` vanish.

    Usage:
        answers = PolledAnswers(inbox, keep_seconds=600, per_group=32)   # inbox opened
        await answers.open()
        await answers.put('茴香豆用户群', item, settles='3f2a…')   # and marks that inbox message answered
        await answers.take('茴香豆用户群')   # [item]; a second take returns []

    The clock is wall time (not monotonic), since expiry times outlive the process.
    """

    def __init__(self, inbox: Inbox, keep_seconds: float, per_group: int, clock: Callable[[], float] = time.time):
        if keep_seconds <= 0:
            raise ValueError(f'keep_seconds must be > 0, got {keep_seconds}')
        if per_group < 1:
            raise ValueError(f'per_group must be >= 1, got {per_group}')
        self.inbox = inbox
        self.keep_seconds = keep_seconds
        self.per_group = per_group
        self.clock = clock

    async def open(self) -> None:
        def create(db: sqlite3.Connection) -> None:
            for statement in _SCHEMA:  # not executescript: it would commit the inbox's open transaction
                db.execute(statement)
        await self.inbox.run(create)

    async def put(self, group_id: str, item: PolledItem, settles: str = '') -> None:
        """Queue `item` for the group's next poll; in the same transaction the inbox message `settles`
        becomes answered (skipped for a code other than 0), so a crash leaves either both or neither."""
        now = self.clock()
        group_id = clean_text(group_id)

        def insert(db: sqlite3.Connection) -> int:
            db.execute('DELETE FROM polled_answers WHERE expires_at <= ?', (now,))
            db.execute('INSERT INTO polled_answers (group_id, item, expires_at) VALUES (?, ?, ?)',
                       (group_id, json.dumps(item.to_json()), now + self.keep_seconds))
            dropped = db.execute('DELETE FROM polled_answers WHERE group_id = ? AND id NOT IN (SELECT id FROM '
                                 'polled_answers WHERE group_id = ? ORDER BY id DESC LIMIT ?)',
                                 (group_id, group_id, self.per_group)).rowcount
            if settles:
                if item.answer.code == 0:
                    settle(db, [settles], ANSWERED, reply=item.answer.text, now=now)
                else:
                    settle(db, [settles], SKIPPED, reason=item.answer.state, now=now)
            return dropped
        if await self.inbox.run(insert):
            # The app polls twice after each post; answers pile up only when it stopped polling.
            logger.warning('group {}: {} answers wait unpolled; dropped the oldest', group_id, self.per_group)

    async def take(self, group_id: str) -> list[PolledItem]:
        """The group's waiting answers, oldest first, removed from the store.

        Removed when read, before the HTTP response is written: a crash in between loses them (at most once).
        """
        now = self.clock()
        group_id = clean_text(group_id)

        def pop(db: sqlite3.Connection) -> list[str]:
            rows = db.execute('SELECT item FROM polled_answers WHERE group_id = ? AND expires_at > ? ORDER BY id',
                              (group_id, now)).fetchall()
            db.execute('DELETE FROM polled_answers WHERE group_id = ?', (group_id,))
            return [row[0] for row in rows]
        return [PolledItem.from_json(json.loads(text)) for text in await self.inbox.run(pop)]

    async def count(self) -> int:
        """Answers waiting, expired ones included until the next put."""
        return await self.inbox.run(lambda db: db.execute('SELECT COUNT(*) FROM polled_answers').fetchone()[0])
