"""Shared fixtures: free loopback ports and the repository root."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

# Never reach a model hub from the tests: every model comes from an installed package.
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture
def unused_port() -> int:
    return free_port()


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT
