"""Parses files in worker processes bounded by a deadline and a memory limit: a parser that explodes is killed.

Any parser, present or future, that runs too long or needs too much becomes a skipped file with the reason;
it does not chunk, embed or choose which files to parse (the builder does).
"""
from __future__ import annotations

import multiprocessing
import os
import resource
import signal
import sys
import threading
from concurrent.futures import FIRST_COMPLETED, CancelledError, wait
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, NoReturn

from loguru import logger
from pebble import ProcessExpired, ProcessPool

from huixiangdou.primitive.chunk import Document
from huixiangdou.primitive.documents.dispatch import parse_file
from huixiangdou.primitive.documents.errors import ParseError
from huixiangdou.primitive.image_reader import ImageReader, OCRStats

if TYPE_CHECKING:  # a primitive: any object with OCRConfig's attributes will do
    from huixiangdou.config import OCRConfig

# A worker's exit code for "this file needed more memory than the limit".
_OUT_OF_MEMORY = 75
_PR_SET_PDEATHSIG = 1
# How often a wait for results looks at the cancel event.
_POLL_S = 0.2
# Imported once by the fork server, so each worker starts with the parsers loaded (copy-on-write).
_PRELOAD = ['huixiangdou.primitive.documents.parse_pool', 'bs4', 'lxml.etree', 'docx', 'openpyxl', 'pptx']


class ParseCancelled(Exception):
    """The caller's cancel event was set while files were being parsed; the workers are already stopped."""


@dataclass(frozen=True)
class ParseLimits:
    """What one file may cost: `timeout_s` seconds and `memory_mb` of address space in its worker;
    docx/xlsx/pptx whose XML expands past `max_expanded_mb` are refused unread."""
    timeout_s: float = 120.0
    memory_mb: int = 2048
    workers: int = 2
    max_expanded_mb: float = 64.0

    def __post_init__(self):
        if self.timeout_s <= 0 or self.memory_mb <= 0 or self.workers < 1 or self.max_expanded_mb <= 0:
            raise ValueError(f'parse limits must be positive (and workers >= 1), got {self}')


@dataclass
class ParseOutcome:
    """One file's result: a Document, or the reason it was skipped; plus what OCR did for it."""
    source: str
    document: Document | None = None
    reason: str | None = None
    ocr: OCRStats = field(default_factory=OCRStats)
    ocr_keys: frozenset[str] = frozenset()


class ParsePool:
    """Parse files in `limits.workers` processes; each file is killed past its deadline or memory limit.

        with ParsePool(ParseLimits(timeout_s=20, memory_mb=300)) as pool:
            for outcome in pool.parse([(Path('repodir/a.docx'), 'a.docx')], cancel=threading.Event()):
                print(outcome.source, outcome.reason or len(outcome.document.sections))

    With `ocr` (an OCRConfig) the workers read pictures, each loading the OCR engine on its first image and
    sharing the text cache in `ocr_cache`. Leaving the `with` block (or `close()`) kills the workers at once.
    """

    def __init__(self, limits: ParseLimits, ocr: 'OCRConfig | None' = None, ocr_cache: Path | None = None):
        self.limits = limits
        self._ocr = ocr
        self._ocr_cache = ocr_cache
        self._pool: ProcessPool | None = None

    def _start(self) -> ProcessPool:
        if self._pool is None:
            # Not fork: the console forks from a process with threads and loaded models. The fork server
            # is a clean process that imported only the parsers.
            context = multiprocessing.get_context('forkserver')
            context.set_forkserver_preload(_PRELOAD)
            # Workers live on from file to file (a fresh one per file costs ~0.1 s, more than most parses);
            # one that ran out of memory or past its deadline is replaced.
            self._pool = ProcessPool(max_workers=self.limits.workers, context=context,
                                     initializer=_init_worker, initargs=(self.limits.memory_mb,))
        return self._pool

    def parse(self, files: list[tuple[Path, str]], cancel: threading.Event | None = None) -> Iterator[ParseOutcome]:
        """Yield an outcome per (path, source), in the order they finish. Raises ParseCancelled (after
        stopping the workers) as soon as `cancel` is set."""
        pool = self._start()
        pending = {pool.schedule(_parse_in_worker, (path, source, self.limits.max_expanded_mb, self._ocr,
                                                    self._ocr_cache), timeout=self.limits.timeout_s): source
                   for path, source in files}
        while pending:
            if cancel is not None and cancel.is_set():
                self.close()
                raise ParseCancelled('parsing cancelled')
            done, _ = wait(pending, timeout=_POLL_S, return_when=FIRST_COMPLETED)
            for future in done:
                yield self._outcome(pending.pop(future), future)

    def _outcome(self, source: str, future) -> ParseOutcome:
        try:
            return future.result()
        except FutureTimeout:
            reason = f'took longer than {self.limits.timeout_s:g} s to parse'
        except ProcessExpired as exc:
            if exc.exitcode == _OUT_OF_MEMORY:
                return ParseOutcome(source, reason=f'needed more than {self.limits.memory_mb} MB to parse')
            # killed by the kernel (out of memory) or crashed in a C library
            reason = (f'the parser process died ({_exit_reason(exc.exitcode)}); it may have needed more than '
                      f'{self.limits.memory_mb} MB')
        except CancelledError:
            reason = 'parsing cancelled'
        except Exception as exc:  # a result that could not come back (unpicklable, a broken pool)
            reason = f'parser failed: {type(exc).__name__}: {exc}'
        return ParseOutcome(source, reason=reason)

    def close(self) -> None:
        """Stop now: running parses are killed (the workers' SIGTERM is not deferred to Python code)."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.stop()
            pool.join()

    def __enter__(self) -> 'ParsePool':
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f'signal {signal.Signals(-code).name}'
        except ValueError:
            pass
    return f'exit code {code}'


def _exit_out_of_memory() -> NoReturn:
    """End this worker, which may hold what the failed parse fragmented: a fresh one takes the next file, with
    its peak memory back at the start, and the pool reports the reason by the exit code."""
    os._exit(_OUT_OF_MEMORY)


def _peak_mb() -> int:
    """This process's peak address space (VmPeak), 0 where /proc does not say."""
    try:
        with open('/proc/self/status', encoding='ascii') as f:
            for line in f:
                if line.startswith('VmPeak:'):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError):
        pass
    return 0


def _die_with_parent() -> None:
    """Linux: SIGKILL this worker when its parent (the fork server) dies, so a build killed with -9 leaves no
    parse running on. Elsewhere a no-op.

    The fork server ends when every holder of the build process's "alive" pipe has closed it, and each worker
    is handed that pipe: a worker stuck in a parse would keep the server, and so itself, alive. Workers start
    no processes, so they have no use for it."""
    from multiprocessing import forkserver

    server = getattr(forkserver, '_forkserver', None)
    alive = getattr(server, '_forkserver_alive_fd', None)
    if alive is not None:
        os.close(alive)
        server._forkserver_alive_fd = None
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def _init_worker(memory_mb: int) -> None:
    """In each worker: the memory limit, and die at once on SIGTERM (pebble's handler waits for Python code,
    which a parser stuck inside lxml or PyMuPDF never returns to, so stopping would stall)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent()
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    logger.remove()
    logger.add(sys.stderr, level='WARNING')


def _parse_in_worker(path: Path, source: str, max_expanded_mb: float, ocr: 'OCRConfig | None',
                     ocr_cache: Path | None) -> ParseOutcome:
    reader = None
    if ocr is not None:
        from huixiangdou.primitive.ocr import make_ocr

        reader = ImageReader(make_ocr(ocr), ocr, cache_dir=ocr_cache)  # the engine loads on the first image
    near_limit = 0.9 * resource.getrlimit(resource.RLIMIT_AS)[0] / (1024 * 1024)
    clean = _peak_mb() < near_limit  # no earlier file in this worker came near the limit
    try:
        document = parse_file(path, source, ocr=reader, max_expanded_mb=max_expanded_mb)
    except ParseError as exc:
        # C libraries report a failed allocation their own way (lxml: "unknown error"): a parse that failed
        # at the memory limit failed for want of memory.
        if isinstance(exc.__cause__, MemoryError) or (clean and _peak_mb() >= near_limit):
            _exit_out_of_memory()
        return ParseOutcome(source, reason=str(exc))
    except MemoryError:  # while checking the file
        _exit_out_of_memory()
    if reader is None:
        return ParseOutcome(source, document=document)
    return ParseOutcome(source, document=document, ocr=reader.stats, ocr_keys=reader.keys_read)
