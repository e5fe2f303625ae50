"""The background build of one knowledge base in the console: an incremental rebuild or a recalibration, with
live progress (phase, done/total and an estimate of the time left).

The build runs FeatureStoreBuilder in a thread; when it succeeds, a new worker is loaded on the new store and
swapped in. One job per knowledge base; jobs share a turn, so builds of several run one after the other (each
"queued" until its turn). `cancel()` stops a build between files or batches (its parse processes killed), and
the old store keeps answering. It does not serve HTTP itself.
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from loguru import logger

from huixiangdou.config import DEFAULT_KNOWLEDGE_BASE, Config
from huixiangdou.web.api_error import ApiError
from huixiangdou.web.worker_slot import WorkerSlot

SUMMARY_KEYS = ('indexed', 'reused', 'deleted', 'skipped', 'chunks', 'seconds')
# Seconds to wait between looks at a cancel while queued behind another knowledge base's build.
_QUEUE_POLL = 0.25


def _now() -> str:
    return time.strftime('%Y-%m-%dT%H:%M:%S%z')


def _has_questions(path: Path) -> bool:
    try:
        return path.read_text(encoding='utf-8-sig').strip() not in ('', '[]')
    except OSError:
        return False


def summary_of(report: dict) -> dict:
    return {key: report[key] for key in SUMMARY_KEYS}


def done_message(purpose: str, summary: dict) -> str:
    return (f'{purpose} done: {len(summary["indexed"])} indexed, {len(summary["reused"])} unchanged, '
            f'{len(summary["skipped"])} skipped, {summary["chunks"]} chunks')


@dataclass
class BuildStatus:
    state: str = 'idle'          # idle | running | done | failed | cancelled
    phase: str | None = None     # queued | parse | embed | calibrate (by fold) | save | load
    done: int = 0
    total: int = 0
    message: str = ''
    started_at: str | None = None
    finished_at: str | None = None
    report: dict | None = None
    knowledge_base: str = DEFAULT_KNOWLEDGE_BASE
    # Seconds the current phase still needs, from its pace so far; None until it can be told.
    eta_s: float | None = None
    # "console": a build started here; "earlier": the last build before the console started (its report.json).
    origin: str = 'console'

    def to_json(self) -> dict:
        return asdict(self)


def last_build(work_dir: Path, name: str) -> BuildStatus:
    """What the knowledge base's last build (at startup, or by the command line) left in work_dir/report.json,
    as a finished build; "idle" when it has none."""
    path = work_dir / 'report.json'
    try:
        report = json.loads(path.read_text(encoding='utf-8'))
        summary = summary_of(report)
        finished = time.strftime('%Y-%m-%dT%H:%M:%S%z', time.localtime(path.stat().st_mtime))
    except (OSError, ValueError, KeyError, TypeError):
        return BuildStatus(knowledge_base=name)
    return BuildStatus(state='done', done=1, total=1, finished_at=finished, report=summary, knowledge_base=name,
                       message=done_message('the last build (before the console started)', summary), origin='earlier')


@dataclass
class BuildJob:
    """Start with `start(full=False)`; poll `snapshot()`. Progress comes from the builder's on_progress
    callback on the build thread, so it is guarded by a lock.

    `config` has this knowledge base as its feature_store (Config.for_knowledge_base); `embedder()` gives its
    loaded embedding model and `load()` a worker on its store (both called in the build thread); `turn` is
    shared by every knowledge base's job, so their builds run one at a time."""
    config: Config
    slot: WorkerSlot
    embedder: Callable[[], object]
    load: Callable[[], object]
    name: str = DEFAULT_KNOWLEDGE_BASE
    turn: asyncio.Lock | None = None
    status: BuildStatus = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _task: asyncio.Task | None = None
    _cancel: threading.Event = field(default_factory=threading.Event)
    _stopping: bool = False
    _phase_started: float = 0.0

    def __post_init__(self) -> None:
        if self.status is None:
            self.status = last_build(self.config.path(self.config.feature_store.work_dir), self.name)

    @property
    def running(self) -> bool:
        with self._lock:
            return self.status.state == 'running'

    def snapshot(self) -> dict:
        with self._lock:
            return self.status.to_json()

    def start(self, full: bool = False, purpose: str = 'rebuild') -> dict:
        with self._lock:
            if self.status.state == 'running':
                raise ApiError(409, 'build_running', 'a build is already running: wait for it to finish '
                                                     '(GET /api/rebuild shows its progress)')
            self.status = BuildStatus(state='running', phase='queued', message=f'{purpose} waiting for its turn',
                                      started_at=_now(), knowledge_base=self.name)
            self._phase_started = time.monotonic()
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
            now = time.monotonic()
            if phase != self.status.phase:
                self._phase_started = now
            self.status.phase, self.status.done, self.status.total = phase, done, total
            elapsed = now - self._phase_started
            # The pace of this phase so far, once a step of it is done: parse, embed and the calibration folds
            # are steps of similar cost.
            self.status.eta_s = round(elapsed / done * (total - done), 1) if 0 < done < total else None
            if not self._cancel.is_set():
                self.status.message = f'{phase} {done}/{total}'

    def shared_embedder(self):
        """The loaded embedding model of this knowledge base, so a build does not load a second copy."""
        return self.embedder()

    def _build(self, full: bool) -> dict:
        from huixiangdou.service.feature_store.builder import FeatureStoreBuilder

        fs = self.config.feature_store
        good, bad = self.config.path(fs.good_questions), self.config.path(fs.bad_questions)
        if not (_has_questions(good) and _has_questions(bad)):
            # As the CLI without question files: keep the last calibration (or the conservative rule). A knowledge
            # base made in the console starts with empty lists.
            good = bad = None
        builder = FeatureStoreBuilder(fs, self.embedder(), progress=False, on_progress=self._progress,
                                      ocr=self.config.ocr, cancel=self._cancel)
        report = builder.build(self.config.path(fs.repo_dir), self.config.path(fs.work_dir), rebuild=full,
                               good=good, bad=bad)
        return report.to_json()

    async def _take_turn(self, purpose: str) -> None:
        """Wait until no other knowledge base builds; a cancel while waiting ends the wait."""
        from huixiangdou.service.feature_store.builder import BuildCancelled

        while True:
            if self._cancel.is_set():
                raise BuildCancelled('cancelled before it started')
            try:
                await asyncio.wait_for(self.turn.acquire(), _QUEUE_POLL)
                return
            except TimeoutError:
                continue

    async def _run(self, full: bool, purpose: str) -> None:
        from huixiangdou.service.feature_store.builder import BuildCancelled

        turn_taken = False
        try:
            if self.turn is not None:
                await self._take_turn(purpose)
                turn_taken = True
            self._progress('parse', 0, 0)
            report = await asyncio.to_thread(self._build, full)
            if self._stopping:
                # Published already: the new store is on disk and loads at the next start.
                raise BuildCancelled('the console stopped after the new store was saved: it loads at the next start')
            # A cancel that came while the store was being saved is too late: it is published, so it is what
            # must answer (else CURRENT names one version while the console answers from another, which the
            # next build's clean-up may delete).
            self._progress('load', 0, 1)
            worker = await asyncio.to_thread(self.load)
            self.slot.swap(worker)
        except BuildCancelled as exc:
            with self._lock:
                self.status.state, self.status.finished_at, self.status.eta_s = 'cancelled', _now(), None
                self.status.message = f'{purpose} cancelled: {exc}'
            logger.info('web console: knowledge base "{}": {}', self.name, self.status.message)
            return
        except Exception as exc:  # boundary: the console shows why, the old store keeps answering
            from huixiangdou.main import user_errors

            if not isinstance(exc, user_errors()):
                logger.exception('web console: knowledge base "{}": {} failed', self.name, purpose)
            with self._lock:
                self.status.state, self.status.finished_at, self.status.eta_s = 'failed', _now(), None
                self.status.message = f'{purpose} failed: {exc}'
            return
        finally:
            if turn_taken:
                self.turn.release()
        summary = summary_of(report)
        with self._lock:
            self.status.state, self.status.finished_at, self.status.report = 'done', _now(), summary
            self.status.phase, self.status.done, self.status.total, self.status.eta_s = None, 1, 1, None
            self.status.message = done_message(purpose, summary)
        logger.info('web console: knowledge base "{}": {}', self.name, self.status.message)
