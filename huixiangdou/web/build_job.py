"""The one background build of the console: an incremental rebuild or a recalibration, with live progress.

The build runs FeatureStoreBuilder in a thread; when it succeeds, a new worker is loaded on the new
store and swapped in. Only one runs at a time (409 otherwise); `cancel()` stops it between files or
batches (its parse processes killed), and the old store keeps answering. It does not serve HTTP itself.
"""
from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import asdict, dataclass, field

from loguru import logger

from huixiangdou.config import Config
from huixiangdou.web.api_error import ApiError
from huixiangdou.web.worker_slot import WorkerSlot, load_worker


def _now() -> str:
    return time.strftime('%Y-%m-%dT%H:%M:%S%z')


@dataclass
class BuildStatus:
    state: str = 'idle'          # idle | running | done | failed | cancelled
    phase: str | None = None     # parse | embed | calibrate | save | load
    done: int = 0
    total: int = 0
    message: str = ''
    started_at: str | None = None
    finished_at: str | None = None
    report: dict | None = None

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class BuildJob:
    """Start with `start(full=False)`; poll `status`. Progress comes from the builder's on_progress
    callback on the build thread, so it is guarded by a lock."""
    config: Config
    slot: WorkerSlot
    embedder: object = None
    status: BuildStatus = field(default_factory=BuildStatus)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _task: asyncio.Task | None = None
    _cancel: threading.Event = field(default_factory=threading.Event)
    _stopping: bool = False

    def snapshot(self) -> dict:
        with self._lock:
            return self.status.to_json()

    def start(self, full: bool = False, purpose: str = 'rebuild') -> dict:
        with self._lock:
            if self.status.state == 'running':
                raise ApiError(409, 'build_running', 'a build is already running: wait for it to finish '
                                                     '(GET /api/rebuild shows its progress)')
            self.status = BuildStatus(state='running', phase='parse', message=f'{purpose} started',
                                      started_at=_now())
            self._cancel = threading.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(full, purpose))
        return self.snapshot()

    async def wait(self) -> None:
        if self._task is not None:
            await asyncio.shield(self._task)

    def cancel(self) -> dict:
        """Ask the running build to stop; it ends as "cancelled" within about a file or a batch."""
        with self._lock:
            if self.status.state != 'running':
                raise ApiError(409, 'no_build_running', f'no build is running (the last one is '
                                                        f'{self.status.state}): nothing to cancel')
            self._cancel.set()
            self.status.message = 'cancelling'
        return self.snapshot()

    async def stop(self) -> None:
        """On shutdown: cancel a running build rather than wait for it, then wait for it to unwind."""
        self._stopping = True
        self._cancel.set()
        await self.wait()

    def _progress(self, phase: str, done: int, total: int) -> None:
        with self._lock:
            self.status.phase, self.status.done, self.status.total = phase, done, total
            if not self._cancel.is_set():
                self.status.message = f'{phase} {done}/{total}'

    def shared_embedder(self):
        """The loaded embedding model the worker answers with, so a build does not load a second copy."""
        if self.embedder is None:
            worker = self.slot.worker
            store = getattr(worker, 'store', None)
            self.embedder = getattr(store, 'embedder', None)
        if self.embedder is None:
            from huixiangdou.service.api_embedder import make_embedder
            self.embedder = make_embedder(self.config)
        return self.embedder

    def _build(self, full: bool) -> dict:
        from huixiangdou.service.feature_store.builder import FeatureStoreBuilder

        fs = self.config.feature_store
        good, bad = self.config.path(fs.good_questions), self.config.path(fs.bad_questions)
        if not (good.is_file() and bad.is_file()):
            good = bad = None  # as the CLI: keep the last calibration (or the conservative rule)
        builder = FeatureStoreBuilder(fs, self.shared_embedder(), progress=False, on_progress=self._progress,
                                      ocr=self.config.ocr, cancel=self._cancel)
        report = builder.build(self.config.path(fs.repo_dir), self.config.path(fs.work_dir), rebuild=full,
                               good=good, bad=bad)
        return report.to_json()

    async def _run(self, full: bool, purpose: str) -> None:
        from huixiangdou.service.feature_store.builder import BuildCancelled

        try:
            report = await asyncio.to_thread(self._build, full)
            if self._stopping:
                # Published already: the new store is on disk and loads at the next start.
                raise BuildCancelled('the console stopped after the new store was saved: it loads at the next start')
            # A cancel that came while the store was being saved is too late: it is published, so it is what
            # must answer (else CURRENT names one version while the console answers from another, which the
            # next build's clean-up may delete).
            self._progress('load', 0, 1)
            worker = await asyncio.to_thread(load_worker, self.config, self.shared_embedder())
            self.slot.swap(worker)
        except BuildCancelled as exc:
            with self._lock:
                self.status.state, self.status.finished_at = 'cancelled', _now()
                self.status.message = f'{purpose} cancelled: {exc}'
            logger.info('web console: {}', self.status.message)
            return
        except Exception as exc:  # boundary: the console shows why, the old store keeps answering
            from huixiangdou.main import user_errors

            if not isinstance(exc, user_errors()):
                logger.exception('web console: {} failed', purpose)
            with self._lock:
                self.status.state, self.status.finished_at = 'failed', _now()
                self.status.message = f'{purpose} failed: {exc}'
            return
        summary = {key: report[key] for key in ('indexed', 'reused', 'deleted', 'skipped', 'chunks', 'seconds')}
        with self._lock:
            self.status.state, self.status.finished_at, self.status.report = 'done', _now(), summary
            self.status.phase, self.status.done, self.status.total = None, 1, 1
            self.status.message = (f'{purpose} done: {len(summary["indexed"])} indexed, {len(summary["reused"])} '
                                   f'unchanged, {len(summary["skipped"])} skipped, {summary["chunks"]} chunks')
        logger.info('web console: {}', self.status.message)
