"""What every handler of the console shares: the config, the worker slot, the build job, the embedder.

One Console per app, under the CONSOLE key. It holds state only; the handlers live in their modules.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from huixiangdou.config import Config
from huixiangdou.web.build_job import BuildJob
from huixiangdou.web.worker_slot import WorkerSlot


@dataclass
class Console:
    config: Config
    slot: WorkerSlot
    build: BuildJob

    @property
    def repo_dir(self) -> Path:
        return self.config.path(self.config.feature_store.repo_dir)

    @property
    def work_dir(self) -> Path:
        return self.config.path(self.config.feature_store.work_dir)

    @property
    def save_path(self) -> Path | None:
        path = self.config.worker.save_path
        return self.config.path(path) if path else None


CONSOLE = web.AppKey('console', Console)


def console_of(request: web.Request) -> Console:
    return request.app[CONSOLE]
