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


def load_worker(config: Config, embedder=None):
    """Worker.from_config, or, given an already loaded embedder, the same worker sharing that model (the
    console then holds one copy of it for answering and building). Runs in a thread: it loads files."""
    from huixiangdou.service.worker.pipeline import Worker

    if embedder is None or config.worker.enable_rerank or config.worker.enable_web_search:
        return Worker.from_config(config)
    from huixiangdou.config import reject_throttle_override
    from huixiangdou.service.feature_store import FeatureStore
    from huixiangdou.service.llm_client import LLMClient
    from huixiangdou.service.worker.pipeline import has_capable_llm

    store = FeatureStore.load(config.path(config.feature_store.work_dir), embedder)
    log_path = config.path(config.worker.save_path) if config.worker.save_path else None
    return Worker(config.worker, store, LLMClient(config.llm),
                  reject_throttle=reject_throttle_override(config, store.calibrated_threshold),
                  log_path=log_path, capable_llm=has_capable_llm(config))


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
