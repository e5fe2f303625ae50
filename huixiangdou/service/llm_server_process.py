"""The hybrid LLM server as a child process for `main --standalone`: start it (or reuse a healthy one on the
configured port), wait for GET /health, stop it on exit. The child watches our pid (--parent-pid) and exits
if we die without stopping it.

It does not talk to the server beyond the health probe (llm_client.py does).
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from loguru import logger

from huixiangdou.config import Config
from huixiangdou.service.llm_client import LLMClientError

SERVICE_NAME = 'huixiangdou-llm'  # what GET /health answers in "service"


def probe_health(url: str, timeout: float = 2.0) -> dict | None:
    """GET /health; the JSON body if a huixiangdou LLM server answered there, else None."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - our own loopback URL
            body = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return body if isinstance(body, dict) and body.get('service') == SERVICE_NAME else None


class LLMServerProcess:
    """The hybrid LLM server as a child process, started and stopped as a context manager.

    A plain (sync) context manager; `async with` works too and waits without blocking the loop.
    If a healthy huixiangdou LLM server already answers on the configured port it is reused and
    left running on exit.

    Usage:
        with start_server(Path('config.ini'), config) as server:
            print(server.url, server.reused)
    """

    def __init__(self, config_path: Path, config: Config, timeout: float = 600.0):
        if timeout <= 0:
            raise ValueError(f'timeout must be > 0, got {timeout}')
        self.config_path = Path(config_path)
        server = config.llm.server
        # A server bound to every interface is still reached on loopback.
        host = '127.0.0.1' if server.host in ('0.0.0.0', '::', '') else server.host
        self.url = f'http://{host}:{server.local_llm_bind_port}'
        self.health_url = f'{self.url}/health'
        self.timeout = timeout
        self.process: subprocess.Popen | None = None
        self.reused = False

    def start(self) -> 'LLMServerProcess':
        if probe_health(self.health_url):
            self.reused = True
            logger.info(f'reusing the LLM server already running at {self.url}')
            return self
        command = [sys.executable, '-m', 'huixiangdou.service.llm_server_hybrid', '--config', str(self.config_path),
                   '--parent-pid', str(os.getpid())]
        logger.info(f'starting the LLM server: {" ".join(command)}')
        self.process = subprocess.Popen(command, env=dict(os.environ, HF_HUB_OFFLINE='1'))
        try:
            return self._wait_ready()
        except BaseException:
            # Ctrl-C or a timeout while the model loads: __exit__ will not run, so stop it here.
            self.stop()
            raise

    def _wait_ready(self) -> 'LLMServerProcess':
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                raise LLMClientError(f'the LLM server exited with code {code} before it was ready: read its '
                                     'log above (a bad [llm.server] setting or a busy port)')
            if probe_health(self.health_url, timeout=1.0):
                logger.info(f'LLM server ready at {self.url}')
                return self
            time.sleep(0.2)
        raise LLMClientError(f'the LLM server did not answer {self.health_url} within {self.timeout:g}s: '
                             'loading the model may need longer; pass a larger timeout')

    def stop(self, grace: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            logger.warning(f'LLM server (pid {process.pid}) ignored SIGTERM for {grace:g}s; killing it')
            process.kill()
            process.wait()

    def __enter__(self) -> 'LLMServerProcess':
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    async def __aenter__(self) -> 'LLMServerProcess':
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc) -> None:
        await asyncio.to_thread(self.stop)


def start_server(config_path: Path, config: Config, timeout: float = 600.0) -> LLMServerProcess:
    """An unstarted LLMServerProcess; enter it (`with` or `async with`) to start and wait for /health."""
    return LLMServerProcess(config_path, config, timeout)
