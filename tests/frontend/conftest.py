"""Fixtures for the frontend tests: a scripted responder and the fake Lark / wkteam servers."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from huixiangdou.config import FrontendConfig, GroupConfig
from huixiangdou.service.worker.session import ErrorCode, Session
from tests.conftest import free_port
from tests.fakes.fake_lark import FakeLark
from tests.fakes.fake_wkteam import FakeWkteam

REFERENCE = 'docs/install.md#Installation'


@dataclass
class ScriptedResponder:
    """Implements the worker protocol: answers questions holding a keyword, stays silent otherwise.

    `gate`, when set and cleared, holds every answer until the test opens it (a busy worker);
    `fail_on` makes questions holding that word raise, as a crashing worker would.
    """
    keywords: tuple[str, ...] = ('install', '安装', 'huixiangdou')
    gate: asyncio.Event | None = None
    fail_on: str = ''
    seen: list[Session] = field(default_factory=list)

    async def run(self, session: Session) -> Session:
        self.seen.append(session)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_on and self.fail_on in session.query:
            raise RuntimeError('scripted worker failure')
        if any(k in session.query.lower() for k in self.keywords):
            session.references = [REFERENCE]
            return session.finish(ErrorCode.SUCCESS, f'Answer to: {session.query}')
        return session.finish(ErrorCode.UNRELATED)

    @property
    def queries(self) -> list[str]:
        return [s.query for s in self.seen]


@pytest.fixture
def responder() -> ScriptedResponder:
    return ScriptedResponder()


@pytest.fixture
async def fake_lark():
    fake = FakeLark()
    await fake.start(free_port())
    yield fake
    await fake.stop()


@pytest.fixture
async def fake_wkteam():
    fake = FakeWkteam()
    await fake.start(free_port())
    yield fake
    await fake.stop()


def frontend_config(**overrides) -> FrontendConfig:
    config = FrontendConfig()
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


__all__ = ['ScriptedResponder', 'REFERENCE', 'frontend_config', 'GroupConfig']
