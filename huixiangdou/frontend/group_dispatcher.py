"""One bounded queue and one consumer task per group: runs the worker off the request handler.

Applies the message policy (immediate or merge), the per-group reply rate limit and the history
store, then hands each Outcome to the frontend; it never talks to a chat platform itself.
"""
from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable

from loguru import logger

from huixiangdou.config import FrontendConfig
from huixiangdou.frontend.group_message import GroupMessage, Outcome, OutcomeStatus, Responder
from huixiangdou.frontend.history_store import HistoryStore, StoredMessage
from huixiangdou.frontend.message_merger import MessageMerger
from huixiangdou.frontend.rate_limit import ReplyRateLimiter
from huixiangdou.service.worker.session import Session

OutcomeHandler = Callable[[Outcome], Awaitable[None]]
IMAGE_PLACEHOLDER = '[图片]'


class GroupDispatcher:
    """Accepts messages without blocking; answers them group by group in arrival order.

    Usage:
        dispatcher = GroupDispatcher(worker, send_reply, queue_size=32, reply_rate_per_minute=10)
        dispatcher.submit(GroupMessage(group_id='oc_1', text='如何安装？', message_id='om_1'))
        ...
        await dispatcher.close()

    `on_outcome` is awaited inside the group's consumer, so replies to one group go out in order
    and a slow platform slows only that group.
    """

    def __init__(self, responder: Responder, on_outcome: OutcomeHandler, *, policy: str = 'immediate',
                 merge_seconds: float = 5.0, queue_size: int = 32, reply_rate_per_minute: int = 10,
                 history: HistoryStore | None = None, clock: Callable[[], float] = time.monotonic):
        if policy not in ('immediate', 'merge'):
            raise ValueError(f'policy must be "immediate" or "merge", got {policy!r}')
        if queue_size < 1:
            raise ValueError(f'queue_size must be >= 1, got {queue_size}')
        self.responder = responder
        self.on_outcome = on_outcome
        self.policy = policy
        self.queue_size = queue_size
        self.limiter = ReplyRateLimiter(reply_rate_per_minute, clock=clock)
        self.history = history
        self.merger = MessageMerger(merge_seconds, on_ready=self._enqueue, on_merged=self._report_merged)
        self._queues: dict[str, asyncio.Queue[GroupMessage]] = {}
        self._consumers: dict[str, asyncio.Task] = {}
        self._side_tasks: set[asyncio.Task] = set()
        self._in_flight = 0  # messages queued or being answered, across groups
        self._closed = False
        # For cancel(): ids waiting in a queue, ids to skip when dequeued, the answer task per running id.
        self._queued_ids: set[str] = set()
        self._dropped_ids: set[str] = set()
        self._running: dict[str, asyncio.Task[Outcome]] = {}

    @classmethod
    def from_config(cls, config: FrontendConfig, responder: Responder, on_outcome: OutcomeHandler,
                    history: HistoryStore | None = None) -> 'GroupDispatcher':
        return cls(responder, on_outcome, policy=config.message_process_policy,
                   merge_seconds=config.merge_seconds, queue_size=config.group_queue_size,
                   reply_rate_per_minute=config.reply_rate_per_minute, history=history)

    @property
    def closed(self) -> bool:
        return self._closed

    def submit(self, message: GroupMessage) -> bool:
        """Take a message without waiting; False if the dispatcher is closed or the group's queue is full."""
        if self._closed:
            return False
        if self.history is not None:
            # A picture alone is kept as the placeholder chat apps show for it, so the turn still reads.
            self.history.append(StoredMessage(message.group_id, 'user', message.text or IMAGE_PLACEHOLDER,
                                              sender_id=message.sender_id, message_id=message.message_id))
        if self.policy == 'merge':
            self.merger.add(message)
            return True
        return self._enqueue(message)

    def _enqueue(self, message: GroupMessage) -> bool:
        queue = self._queues.get(message.group_id)
        if queue is None:
            queue = self._queues[message.group_id] = asyncio.Queue(self.queue_size)
            self._consumers[message.group_id] = asyncio.create_task(
                self._consume(message.group_id, queue), name=f'group-consumer-{message.group_id}')
        try:
            queue.put_nowait(message)
            self._in_flight += 1
            self._queued_ids.add(message.message_id)
        except asyncio.QueueFull:
            logger.warning('group {} queue full ({} waiting): dropped message {}', message.group_id,
                           self.queue_size, message.message_id)
            self._report(Outcome(message, OutcomeStatus.QUEUE_FULL))
            return False
        return True

    def _report_merged(self, message: GroupMessage) -> None:
        self._report(Outcome(message, OutcomeStatus.MERGED))

    def _report(self, outcome: Outcome) -> None:
        # Called from sync code (submit, timer callbacks): run the async handler as a tracked task.
        task = asyncio.create_task(self._deliver(outcome))
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    def cancel(self, message_id: str) -> bool:
        """Stop spending work on a message nobody waits for any more (its caller timed out).

        A queued message is dropped when its turn comes; one being answered has its worker call
        cancelled. Either way the outcome is CANCELLED. False when the message is not queued or
        running: already answered, unknown, or still held by the merge policy.
        """
        task = self._running.get(message_id)
        if task is not None:
            return task.cancel()
        if message_id in self._queued_ids:
            self._dropped_ids.add(message_id)
            return True
        return False

    async def _consume(self, group_id: str, queue: asyncio.Queue[GroupMessage]) -> None:
        while True:
            message = await queue.get()
            self._queued_ids.discard(message.message_id)
            try:
                if message.message_id in self._dropped_ids:
                    self._dropped_ids.discard(message.message_id)
                    logger.info('group {} message {}: dropped unanswered, its caller gave up', group_id,
                                message.message_id)
                    outcome = Outcome(message, OutcomeStatus.CANCELLED)
                else:
                    outcome = await self._answer_cancellable(message)
                await self._deliver(outcome)
            finally:
                self._in_flight -= 1
                queue.task_done()

    async def _answer_cancellable(self, message: GroupMessage) -> Outcome:
        # A task of its own, so cancel() can stop this message without stopping the group's consumer.
        task = asyncio.create_task(self._answer(message), name=f'answer-{message.message_id}')
        self._running[message.message_id] = task
        try:
            return await task
        except asyncio.CancelledError:
            consumer = asyncio.current_task()
            if consumer is not None and consumer.cancelling():
                raise  # abort() or shutdown: not a per-message cancel
            logger.info('group {} message {}: worker stopped, its caller gave up', message.group_id,
                        message.message_id)
            return Outcome(message, OutcomeStatus.CANCELLED)
        finally:
            self._running.pop(message.message_id, None)

    async def _answer(self, message: GroupMessage) -> Outcome:
        if not self.limiter.allows(message.group_id):
            # Checked before the worker runs so a chatty group does not burn LLM time on replies
            # that would be thrown away.
            logger.info('group {} reached {} replies/minute: skipped message {}', message.group_id,
                        self.limiter.per_minute, message.message_id)
            return Outcome(message, OutcomeStatus.RATE_LIMITED)
        history = self.history.pairs(message.group_id) if self.history is not None else []
        session = Session(query=message.text, quote=message.quote, history=history, group_id=message.group_id,
                          group_name=message.group_name, group_introduction=message.group_introduction,
                          message_id=message.message_id, images=list(message.images))
        try:
            session = await self.responder.run(session)
        except Exception:  # the worker is a boundary: one bad message must not stop the group
            logger.exception('worker failed on group {} message {}', message.group_id, message.message_id)
            return Outcome(message, OutcomeStatus.FAILED, session)
        if session.code is None or not session.code.should_reply:
            logger.info('group {} message {}: no reply ({})', message.group_id, message.message_id, session.code)
            return Outcome(message, OutcomeStatus.SILENT, session)
        self.limiter.record(message.group_id)
        if self.history is not None:
            self.history.append(StoredMessage(message.group_id, 'bot', session.reply, reply_to=message.message_id))
        return Outcome(message, OutcomeStatus.ANSWERED, session)

    async def _deliver(self, outcome: Outcome) -> None:
        try:
            await self.on_outcome(outcome)
        except Exception:  # sending is a boundary too: log with ids, keep serving the group
            logger.exception('delivering {} for group {} message {} failed', outcome.status.value,
                             outcome.message.group_id, outcome.message.message_id)

    async def wait_idle(self) -> None:
        """Return once nothing is buffered, queued, being answered or being delivered."""
        while len(self.merger) or self._in_flight or self._side_tasks:
            if self._side_tasks:
                await asyncio.gather(*list(self._side_tasks), return_exceptions=True)
            else:
                await asyncio.sleep(0.01)

    async def close(self) -> None:
        """Answer what is already buffered, then stop the consumers."""
        self._closed = True
        self.merger.flush_all()
        await self.wait_idle()
        for task in self._consumers.values():
            task.cancel()
        await asyncio.gather(*self._consumers.values(), return_exceptions=True)
        self._consumers.clear()
        self._queues.clear()

    async def abort(self) -> None:
        """Stop now, dropping buffered and queued messages (shutdown must not wait for the LLM)."""
        self._closed = True
        self.merger.cancel_all()
        dropped = sum(q.qsize() for q in self._queues.values())
        tasks = [*self._consumers.values(), *self._side_tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._consumers.clear()
        self._queues.clear()
        self._queued_ids.clear()
        self._dropped_ids.clear()
        self._in_flight = 0
        if dropped:
            logger.info('dispatcher stopped with {} unanswered queued message(s)', dropped)
