"""At-least-once delivery with a real `kill -9`: a message acknowledged (HTTP 200) and then killed before its
reply is answered exactly once by the next start, and its redelivery is not answered again.

Lark runs the real `python -m huixiangdou.main` (real worker, LLM server whose upstream hangs on the first
call); wkteam and the personal-WeChat app run `run_frontend` in a process of their own whose worker is
held at a gate (frontend_process.py), since what is under test is the frontend, not the worker.
"""
from __future__ import annotations

import asyncio
import shutil
import signal
import sqlite3
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import REPO_ROOT, free_port, llm_client_for, write_config
from tests.frontend.lark_events import ENCRYPT_KEY, TOKEN, message_event, signed_request
from tests.frontend.test_wechat_wkteam import WID, push

ON_TOPIC = '飞书群应用的 encrypt_key 加密密钥应该在 config.ini 哪里配置？'
STARTUP = 600.0   # loading models on a busy machine: a generous deadline, not a timing assertion


async def until(predicate, what: str, timeout: float = STARTUP) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f'gave up after {timeout:.0f} s waiting for {what}')
        await asyncio.sleep(0.1)


class Process:
    """One run of a frontend process; its log goes to a file the failure message can show."""

    def __init__(self, args: list[str], log: Path):
        self.args, self.log = args, log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> 'Process':
        with self.log.open('ab') as log:
            self.proc = await asyncio.create_subprocess_exec(sys.executable, *self.args, cwd=REPO_ROOT,
                                                             stdout=log, stderr=log)
        return self

    async def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        assert await self.proc.wait() == -signal.SIGKILL

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()

    def tail(self) -> str:
        return self.log.read_text(errors='replace')[-3000:]


async def post(url: str, body: dict | bytes, headers: dict | None = None) -> tuple[int, dict]:
    """POST, retrying while the process is not listening yet."""
    deadline = time.monotonic() + STARTUP
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                kwargs = {'data': body} if isinstance(body, bytes) else {'json': body}
                async with http.post(url, headers=headers, **kwargs) as r:
                    return r.status, await r.json(content_type=None)
            except aiohttp.ClientConnectionError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.25)


def asked(gate: Path) -> list[str]:
    return sorted(p.name for p in gate.glob('asked-*'))


# ---- lark_group, the real main ------------------------------------------------------------------

async def test_lark_event_acknowledged_then_killed_is_answered_once_after_restart(tmp_path, fake_openai, fake_lark,
                                                                                   sample_store):
    work_dir = tmp_path / 'workdir'
    shutil.copytree(sample_store[0], work_dir, symlinks=True)
    fake_openai.responder = lambda messages: '在 [frontend.lark_group] 段填写 encrypt_key [1]'
    fake_openai.fail('hang', times=1, paths=['/v1/chat/completions'])   # the first run's answer never comes
    port = free_port()
    async with llm_client_for(fake_openai, remote_timeout=600.0) as llm:
        config = write_config(
            tmp_path / 'config.ini',
            feature_store={'work_dir': str(work_dir), 'repo_dir': str(REPO_ROOT / 'repodir'),
                           'embedding_model_path': ''},
            llm={'enable_local': 0, 'enable_remote': 1, 'client_url': llm.url,
                 'client_timeout': 600.0},
            frontend={'type': 'lark_group'},
            **{'llm.server': {'remote_type': 'vllm', 'remote_base_url': fake_openai.base_url},
               'frontend.lark_group': {'app_id': fake_lark.app_id, 'app_secret': fake_lark.app_secret,
                                       'base_url': fake_lark.base_url, 'encrypt_key': ENCRYPT_KEY,
                                       'verification_token': TOKEN, 'port': port}})
        url = f'http://127.0.0.1:{port}/event'
        event = message_event(ON_TOPIC, message_id='om_crash', event_id='ev_crash')
        main = Process(['-m', 'huixiangdou.main', '--config', str(config)], tmp_path / 'main.log')
        try:
            await main.start()
            assert await post(url, *signed_request(event, ENCRYPT_KEY)) == (200, {})
            await until(lambda: any(r.path == '/v1/chat/completions' for r in fake_openai.requests),
                        'the worker to ask the LLM')
            assert fake_lark.reply_attempts == []          # acknowledged, and no reply exists yet
            await main.kill9()

            main = await Process(['-m', 'huixiangdou.main', '--config', str(config)], tmp_path / 'main.log').start()
            await fake_lark.wait_until(lambda: fake_lark.reply_attempts, timeout=STARTUP)
            assert 'encrypt_key' in fake_lark.replies[0].text
            # Lark redelivers the event (it never saw... or doubts our 200): acknowledged, not answered again.
            assert await post(url, *signed_request(event, ENCRYPT_KEY)) == (200, {})
            later = message_event(ON_TOPIC, message_id='om_later')
            assert await post(url, *signed_request(later, ENCRYPT_KEY)) == (200, {})
            await fake_lark.wait_until(lambda: len(fake_lark.reply_attempts) >= 2, timeout=STARTUP)
            # The same group's queue answers in order, so a second reply to om_crash would have come first.
            assert fake_lark.reply_attempts == ['om_crash', 'om_later'], main.tail()
        finally:
            await main.stop()
            # The first run's LLM request still hangs in the LLM server: let it end, or leaving the server
            # waits out aiohttp's shutdown timeout for it.
            fake_openai.release()


# ---- wkteam and the personal-WeChat app, run_frontend with a gated worker -----------------------

def frontend_process(tmp_path: Path, config: Path, gate: Path) -> Process:
    return Process(['-m', 'tests.frontend.frontend_process', str(config), str(gate)], tmp_path / 'frontend.log')


async def test_wkteam_push_acknowledged_then_killed_is_answered_once_after_restart(tmp_path, fake_wkteam):
    gate = tmp_path / 'gate'
    gate.mkdir()
    port = free_port()
    config = write_config(
        tmp_path / 'config.ini', feature_store={'work_dir': str(tmp_path / 'workdir')},
        frontend={'type': 'wechat_wkteam'},
        **{'frontend.wechat_wkteam': {'base_url': fake_wkteam.base_url, 'api_token': fake_wkteam.token,
                                      'wid': WID, 'callback_host': '127.0.0.1', 'callback_port': port}})
    url = f'http://127.0.0.1:{port}/callback'
    question = push('huixiangdou 怎么安装？', new_msg_id=7_000_001)
    process = await frontend_process(tmp_path, config, gate).start()
    try:
        assert (await post(url, question))[0] == 200
        await until(lambda: asked(gate), 'the worker to get the question')
        assert fake_wkteam.sent == []
        await process.kill9()

        (gate / 'open').touch()
        process = await frontend_process(tmp_path, config, gate).start()
        await fake_wkteam.wait_until(lambda: fake_wkteam.sent, timeout=STARTUP)
        assert 'Answer to: huixiangdou 怎么安装？' in fake_wkteam.sent[0]['content']
        assert (await post(url, question))[0] == 200            # wkteam pushes it again
        assert (await post(url, push('another install question', new_msg_id=7_000_002)))[0] == 200
        await fake_wkteam.wait_until(lambda: len(fake_wkteam.sent) >= 2, timeout=STARTUP)
        assert fake_wkteam.calls['sendText'] == 2, process.tail()
        assert 'another install question' in fake_wkteam.sent[1]['content']
        assert len(asked(gate)) == 3   # first run, the replay, the second question: never the redelivery
    finally:
        await process.stop()


def polled_waiting(inbox: Path) -> int:
    with sqlite3.connect(inbox) as db:
        try:
            return db.execute('SELECT COUNT(*) FROM polled_answers').fetchone()[0]
        except sqlite3.OperationalError:   # table not created yet
            return 0


async def test_personal_app_post_and_its_waiting_answer_survive_kill_9(tmp_path):
    gate = tmp_path / 'gate'
    gate.mkdir()
    port = free_port()
    config = write_config(
        tmp_path / 'config.ini', feature_store={'work_dir': str(tmp_path / 'workdir')},
        frontend={'type': 'wechat_personal'},
        **{'frontend.wechat_personal': {'host': '127.0.0.1', 'bind_port': port}})
    url = f'http://127.0.0.1:{port}/huixiangdou/message'
    inbox = tmp_path / 'workdir' / 'wechat_personal_inbox.sqlite'

    def app_post(kind: str, content: str = '') -> dict:
        return {'query_id': '茴香豆群', 'groupname': '茴香豆群', 'username': 'alice',
                'query': {'type': kind, 'content': content}}

    process = await frontend_process(tmp_path, config, gate).start()
    try:
        # 1. Posted and acknowledged; killed while the worker holds it.
        assert (await post(url, app_post('text', '如何安装？')))[0] == 200
        await until(lambda: asked(gate), 'the worker to get the question')
        await process.kill9()

        # 2. The next start answers it; the answer waits for a poll that never comes before another kill.
        (gate / 'open').touch()
        process = await frontend_process(tmp_path, config, gate).start()
        await until(lambda: inbox.exists() and polled_waiting(inbox) == 1, 'the replayed post to be answered')
        await process.kill9()

        # 3. The answer outlived the kill: the app's poll collects it, once.
        process = await frontend_process(tmp_path, config, gate).start()
        status, body = await post(url, app_post('poll'))
        assert status == 200, process.tail()
        assert [(item['req']['query']['content'], item['rsp']['code'], item['rsp']['text'])
                for item in body['data']] == [('如何安装？', 0, 'Answer to: 如何安装？')]
        assert (await post(url, app_post('poll')))[1]['data'] == []
        assert len(asked(gate)) == 2   # asked once per run that held it unanswered: never after it was answered
    finally:
        await process.stop()
