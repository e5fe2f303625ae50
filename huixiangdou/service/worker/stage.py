"""The shape every pipeline stage has: a name and one async entry point that updates the session.

A stage finishes the session (session.finish(code)) to stop the pipeline; otherwise the next one runs.
"""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Callable, Protocol, TypeVar

from huixiangdou.service.worker.session import Session

if TYPE_CHECKING:
    from huixiangdou.service.feature_store import FeatureStore, QueryFeatures

T = TypeVar('T')

# CPU work (embedding a query, scoring) runs here, one at a time, so the event loop never blocks and
# concurrent queries do not oversubscribe the cores.
_CPU = ThreadPoolExecutor(max_workers=1, thread_name_prefix='huixiangdou-cpu')


async def run_cpu(fn: Callable[..., T], *args) -> T:
    return await asyncio.get_running_loop().run_in_executor(_CPU, fn, *args)


async def query_features(store: 'FeatureStore', session: Session) -> 'QueryFeatures':
    """The store's features of `session.text` (the typed words and any screenshot's text), computed
    by the first stage that asks and carried on the session for the next (reject computes, retrieval reuses)."""
    text = session.text
    if session.features is None or session.features.text != text:
        session.features = (await run_cpu(store.featurize, [text]))[0]
    return session.features


class Stage(Protocol):
    name: str

    async def run(self, session: Session) -> None: ...
