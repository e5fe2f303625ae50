"""Runs the configured frontend (`run_frontend`, as main does) in a process of its own, for the kill -9 tests:
`python -m tests.frontend.frontend_process CONFIG GATE_DIR`.

Its responder stands in for the worker: it writes GATE_DIR/asked-<pid>-<n> when a question reaches it and
answers only once GATE_DIR/open exists, so a test can kill the process while a reply does not exist yet.
"""
from __future__ import annotations

import asyncio
import itertools
import os
import sys
from pathlib import Path

from huixiangdou.config import load_config
from huixiangdou.frontend import run_frontend
from huixiangdou.service.worker.session import ErrorCode, Session

REFERENCE = 'docs/install.md#Installation'


class GatedResponder:
    def __init__(self, gate: Path):
        self.gate = gate
        self._count = itertools.count(1)

    async def run(self, session: Session) -> Session:
        (self.gate / f'asked-{os.getpid()}-{next(self._count)}').write_text(session.query, encoding='utf-8')
        while not (self.gate / 'open').exists():
            await asyncio.sleep(0.05)
        session.references = [REFERENCE]
        return session.finish(ErrorCode.SUCCESS, f'Answer to: {session.query}')


def main(argv: list[str]) -> None:
    config = load_config(argv[0])
    asyncio.run(run_frontend(config, GatedResponder(Path(argv[1]))))


if __name__ == '__main__':
    main(sys.argv[1:])
