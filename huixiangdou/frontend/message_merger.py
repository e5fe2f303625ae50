"""The "merge" message policy: hold a sender's message for N seconds and join follow-ups into it.

People often type one question as several short messages; merging them gives the worker the whole
question. It only buffers and joins; queueing and answering happen in the dispatcher.
"""
from __future__ import annotations

import asyncio
from typing import Callable

from huixiangdou.frontend.group_message import GroupMessage
from huixiangdou.frontend.message_images import MAX_IMAGES


class MessageMerger:
    """Buffers messages per (group, sender); `on_ready` gets the merged message after a quiet spell.

    Each new message from the same sender restarts the timer, so a burst becomes one query that is
    answered `merge_seconds` after the sender's last message. `on_merged` is told about each earlier
    message folded into a later one (frontends that answer synchronously must release its caller).
    """

    def __init__(self, merge_seconds: float, on_ready: Callable[[GroupMessage], None],
                 on_merged: Callable[[GroupMessage], None]):
        if merge_seconds < 0:
            raise ValueError(f'merge_seconds must be >= 0, got {merge_seconds}')
        self.merge_seconds = merge_seconds
        self._on_ready = on_ready
        self._on_merged = on_merged
        self._pending: dict[tuple[str, str], tuple[GroupMessage, asyncio.TimerHandle]] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, message: GroupMessage) -> None:
        key = (message.group_id, message.sender_id)
        earlier = self._pending.pop(key, None)
        if earlier is not None:
            previous, timer = earlier
            timer.cancel()
            # The reply goes to the newest message, so it carries the newest id and platform ids.
            message.text = '\n'.join(text for text in (previous.text, message.text) if text)
            # "这个报错怎么办？" then the screenshot, as WeChat sends them: one question with its picture.
            message.images = [*previous.images, *message.images][-MAX_IMAGES:]
            message.merged_message_ids = [*previous.merged_message_ids, previous.message_id]
            message.quote = message.quote or previous.quote
            self._on_merged(previous)
        timer = asyncio.get_running_loop().call_later(self.merge_seconds, self._flush, key)
        self._pending[key] = (message, timer)

    def _flush(self, key: tuple[str, str]) -> None:
        entry = self._pending.pop(key, None)
        if entry is not None:
            self._on_ready(entry[0])

    def flush_all(self) -> None:
        """Release every buffered message now (used at shutdown)."""
        for key in list(self._pending):
            self._pending[key][1].cancel()
            self._flush(key)

    def cancel_all(self) -> None:
        """Forget every buffered message without answering it."""
        for _, timer in self._pending.values():
            timer.cancel()
        self._pending.clear()
