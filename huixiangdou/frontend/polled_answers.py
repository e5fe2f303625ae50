"""Answers for the Android helper app, held per group until the app polls for that group.

Bounded per group and by age; each answer is handed out once. It holds data only: no HTTP, no worker.
"""
from __future__ import annotations

import time
from collections import deque
from typing import Callable

from loguru import logger

from huixiangdou.frontend.wechat_app_protocol import PolledItem


class PolledAnswers:
    """Per-group FIFO of PolledItem; `take` empties a group's queue, items older than `keep_seconds` vanish.

    Usage:
        answers = PolledAnswers(keep_seconds=600, per_group=32)
        answers.put('茴香豆用户群', item)
        answers.take('茴香豆用户群')   # [item]; a second take returns []
    """

    def __init__(self, keep_seconds: float, per_group: int, clock: Callable[[], float] = time.monotonic):
        if keep_seconds <= 0:
            raise ValueError(f'keep_seconds must be > 0, got {keep_seconds}')
        if per_group < 1:
            raise ValueError(f'per_group must be >= 1, got {per_group}')
        self.keep_seconds = keep_seconds
        self.per_group = per_group
        self.clock = clock
        self._groups: dict[str, deque[tuple[float, PolledItem]]] = {}
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return sum(len(items) for items in self._groups.values())

    def put(self, group_id: str, item: PolledItem) -> None:
        now = self.clock()
        self._sweep(now)
        items = self._groups.setdefault(group_id, deque())
        if len(items) >= self.per_group:
            items.popleft()
            # The app polls twice after each post; answers pile up only when it stopped polling.
            logger.warning('group {}: {} answers wait unpolled; dropped the oldest', group_id, self.per_group)
        items.append((now + self.keep_seconds, item))

    def take(self, group_id: str) -> list[PolledItem]:
        now = self.clock()
        self._sweep(now)
        items = self._groups.pop(group_id, None)
        return [item for expires, item in items or () if expires > now]

    def _sweep(self, now: float) -> None:
        # Groups nobody polls any more must not keep memory: drop expired items at most once a second.
        if now < self._next_sweep:
            return
        self._next_sweep = now + 1.0
        for group_id in list(self._groups):
            items = self._groups[group_id]
            while items and items[0][0] <= now:
                items.popleft()
            if not items:
                del self._groups[group_id]
