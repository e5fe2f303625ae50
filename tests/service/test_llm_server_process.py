"""start_server() running the hybrid LLM server as a real subprocess (remote backend on the fake)."""
from __future__ import annotations

import pytest

from huixiangdou.config import load_config
from huixiangdou.service.llm_client import LLMClient, LLMClientError
from huixiangdou.service.llm_server_process import start_server
from tests.conftest import free_port
from tests.fakes.fake_openai import fake_openai  # noqa: F401 - fixture


def write_config(tmp_path, base_url: str, port: int):
    path = tmp_path / 'config.ini'
    path.write_text(f'''
[llm]
enable_local = 0
enable_remote = 1
client_url = "http://127.0.0.1:{port}/inference"

[llm.server]
host = "127.0.0.1"
local_llm_bind_port = {port}
remote_type = "vllm"
remote_base_url = "{base_url}"
remote_api_key = "sk-fake"
remote_llm_model = "fake-model"
''', encoding='utf-8')
    return path


async def test_start_server_runs_the_cli_and_reuses_a_healthy_server(fake_openai, tmp_path):
    path = write_config(tmp_path, fake_openai.base_url, free_port())
    config = load_config(path)
    async with start_server(path, config, timeout=120) as server:
        assert server.reused is False and server.process.poll() is None
        process = server.process
        async with start_server(path, config, timeout=120) as again:
            assert again.reused is True and again.process is None
        async with LLMClient(config.llm) as llm:
            reply = await llm.generate('子进程')
        assert reply.text == 'echo: 子进程'
    assert process.wait(10) is not None  # terminated on exit


async def test_start_server_reports_a_server_that_cannot_start(tmp_path, monkeypatch):
    monkeypatch.delenv('DEEPSEEK_API_KEY', raising=False)  # so the deepseek preset has no key
    path = write_config(tmp_path, 'http://127.0.0.1:1/v1', free_port())
    path.write_text(path.read_text().replace('remote_api_key = "sk-fake"', '').replace('"vllm"', '"deepseek"'))
    config = load_config(path)
    with pytest.raises(LLMClientError, match='exited with code'):
        async with start_server(path, config, timeout=120):
            pass
