"""The worker the console answers with, and how a rebuilt store replaces it without cutting answers.

A new Worker is loaded in a thread and swapped in; the old one is closed once its in-flight requests
have finished. It does not build stores (build_job.py does).
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator

from loguru import logger

from huixiangdou.config import Config
from huixiangdou.web.api_error import ApiError


def load_worker(config: Config, embedder=None, knowledge_base: str | None = None):
    """The console's worker: Worker.from_config, the same factory `main` uses (so the same knowledge bases,
    group routing, rerank, web search and OCR), sharing the console's already loaded `embedder` when given.
    With `knowledge_base`, it loads that one alone and answers every message from it (one per knowledge base
    in the console). Runs in a thread: it loads files."""
    from huixiangdou.service.worker.pipeline import Worker

    return Worker.from_config(config, embedder=embedder, knowledge_base=knowledge_base)


class WorkerSlot:
    """Holds the current worker; `use()` borrows it for one request, `swap()` replaces it.

    Usage:
        async with slot.use() as worker:
            session = await worker.run(Session(query=q))
    """

    def __init__(self, worker=None, load_error: str = ''):
        self.worker = worker
        self.load_error = load_error
        self._in_flight: dict[int, int] = {}
        self._idle: dict[int, asyncio.Event] = {}
        self._closing: set[asyncio.Task] = set()

    @contextlib.asynccontextmanager
    async def use(self) -> AsyncIterator[object]:
        worker = self.worker
        if worker is None:
            raise ApiError(503, 'no_store', self.load_error or 'the feature store is not loaded yet: build it on '
                                                               'the Knowledge base page (POST /api/rebuild)')
        key = id(worker)
        self._in_flight[key] = self._in_flight.get(key, 0) + 1
        try:
            yield worker
        finally:
            self._in_flight[key] -= 1
            if self._in_flight[key] == 0:
                del self._in_flight[key]
                if key in self._idle:
                    self._idle.pop(key).set()

    def swap_initial(self, worker) -> None:
        """Answer with `worker` from the start (no running loop needed: nothing is replaced)."""
        self.worker, self.load_error = worker, ''

    def swap(self, worker) -> None:
        """Answer with `worker` from now on; close the old one when its last request is done."""
        old, self.worker, self.load_error = self.worker, worker, ''
        if old is not None and old is not worker:
            task = asyncio.get_running_loop().create_task(self._close_when_idle(old))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _close_when_idle(self, worker) -> None:
        key = id(worker)
        if self._in_flight.get(key):
            event = self._idle.setdefault(key, asyncio.Event())
            await event.wait()
        try:
            await worker.close()
        except Exception:  # boundary: a failed close must not disturb the new worker
            logger.exception('closing the replaced worker failed')

    async def close(self) -> None:
        for task in list(self._closing):
            await task
        if self.worker is not None:
            await self.worker.close()
            self.worker = None
