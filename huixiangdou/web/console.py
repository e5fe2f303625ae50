"""What every handler of the console shares: the config, and for each knowledge base its worker slot and build
job (made on first use), plus the loaded embedding models they share.

One Console per app, under the CONSOLE key. It holds state only; the handlers live in their modules, and which
knowledge base a request may reach is decided in scope.py.
"""
from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from loguru import logger

from huixiangdou.config import DEFAULT_KNOWLEDGE_BASE, Config, FeatureStoreConfig
from huixiangdou.web.build_job import BuildJob
from huixiangdou.web.worker_slot import WorkerSlot, load_worker


def _model_of(fs: FeatureStoreConfig) -> tuple[str, str]:
    return fs.embedding_model_path, fs.embedding_api_model


@dataclass
class KnowledgeBaseState:
    """One knowledge base as the console serves it. `config` has it as its feature_store
    (Config.for_knowledge_base), so the page modules read its repo_dir, work_dir and example files there."""
    name: str
    config: Config
    slot: WorkerSlot
    build: BuildJob
    _loading: asyncio.Lock = field(default_factory=asyncio.Lock)

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


@dataclass
class Console:
    """`config` is the whole configuration (replaced when the console adds or removes a knowledge base or binds
    a group); `bases` the knowledge bases served so far, by name."""
    config: Config
    embedder: object = None
    bases: dict[str, KnowledgeBaseState] = field(default_factory=dict)
    # Builds of different knowledge bases take turns: two at once would compete for the CPUs and the memory.
    build_turn: asyncio.Lock = field(default_factory=asyncio.Lock)
    _embedders: dict[tuple[str, str], object] = field(default_factory=dict)
    _embedders_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.embedder is not None:
            self._embedders[_model_of(self.config.feature_store)] = self.embedder

    def kb(self, name: str) -> KnowledgeBaseState:
        """The state of knowledge base `name` (made on first use); KeyError when the config has none so named."""
        state = self.bases.get(name)
        if state is None:
            if name not in self.config.knowledge_bases():
                raise KeyError(name)
            kb_config = self.config.for_knowledge_base(name)
            slot = WorkerSlot()
            build = BuildJob(kb_config, slot, embedder=lambda: self.embedder_for(name),
                             load=lambda: self.load_worker(name), name=name, turn=self.build_turn)
            state = self.bases[name] = KnowledgeBaseState(name, kb_config, slot, build)
        return state

    # The default knowledge base's, as before there were several (scripts and tests reach them).
    @property
    def slot(self) -> WorkerSlot:
        return self.kb(DEFAULT_KNOWLEDGE_BASE).slot

    @property
    def build(self) -> BuildJob:
        return self.kb(DEFAULT_KNOWLEDGE_BASE).build

    def embedder_for(self, name: str):
        """The loaded embedding model of knowledge base `name`: one copy per model for all of them. Call it in a
        thread: the first call for a model loads it."""
        model = _model_of(self.config.knowledge_bases()[name])
        with self._embedders_lock:
            if model not in self._embedders:
                from huixiangdou.service.api_embedder import make_embedder

                self._embedders[model] = make_embedder(self.config.for_knowledge_base(name))
            return self._embedders[model]

    def load_worker(self, name: str):
        """A worker answering from knowledge base `name` alone (Worker.from_config), sharing a loaded model when
        there is one. Call it in a thread."""
        model = _model_of(self.config.knowledge_bases()[name])
        worker = load_worker(self.config, self._embedders.get(model), knowledge_base=name)
        with self._embedders_lock:  # the model it loaded serves the next knowledge base and build
            self._embedders.setdefault(model, getattr(worker.store, 'embedder', None))
        return worker

    async def ready(self, state: KnowledgeBaseState) -> KnowledgeBaseState:
        """`state` with its worker loaded, when its store can be: tried on first use and again while it has
        none (a store built from the command line loads without a restart)."""
        if state.slot.worker is not None or state.build.running:
            return state
        async with state._loading:
            if state.slot.worker is None:
                from huixiangdou.service.feature_store.store import CURRENT

                if not (state.work_dir / CURRENT).exists():  # nothing to load: say so without loading models
                    state.slot.load_error = (f'knowledge base "{state.name}" has no store yet: upload documents and '
                                             'build it on the Knowledge base page (POST /api/rebuild?kb=' +
                                             f'{state.name})')
                    return state
                try:
                    state.slot.swap(await asyncio.to_thread(self.load_worker, state.name))
                except Exception as exc:  # boundary: the console must come up to show and fix the store
                    from huixiangdou.main import user_errors

                    if not isinstance(exc, user_errors()):
                        raise
                    state.slot.load_error = f'the assistant cannot answer from "{state.name}" yet: {exc}'
                    logger.warning('web console: {}', state.slot.load_error)
        return state

    async def forget(self, name: str) -> None:
        """Stop serving knowledge base `name` (it was deleted): its build cancelled, its worker closed."""
        state = self.bases.pop(name, None)
        if state is not None:
            await state.build.stop()
            await state.slot.close()

    async def close(self) -> None:
        for name in list(self.bases):
            await self.forget(name)


CONSOLE = web.AppKey('console', Console)


def console_of(request: web.Request) -> Console:
    return request.app[CONSOLE]
