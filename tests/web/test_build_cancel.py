"""A console build can be cancelled mid-parse (its parse processes die, the old store keeps answering, a later
rebuild works), and SIGTERM stops `python -m huixiangdou.web` within 10 s mid-build, leaving no process."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import aiohttp
import psutil

from tests.conftest import REPO_ROOT, free_port, wait_for, write_config
from tests.crafted_files import crafted_docx, parse_workers
from tests.web.conftest import ADMIN_TOKEN, copy_knowledge_base, start_console

# Never finishes within a test: python-docx walks 600,000 paragraphs; the deadline is far away.
SLOW = {'parse_timeout_s': 300, 'max_expanded_mb': 1000}



async def test_cancel_stops_the_build_mid_parse_and_the_old_store_stays(tmp_path, sample_store, embedder):
    copy_knowledge_base(tmp_path, sample_store)
    server, stop = start_console(tmp_path, embedder, feature_store=SLOW)
    try:
        built_before = json.loads((server.work_dir / 'report.json').read_text(encoding='utf-8'))
        crafted_docx(server.repo_dir / 'slow.docx', 20)
        async with aiohttp.ClientSession(headers=server.auth) as http:
            async with http.post(f'{server.base_url}/api/rebuild/cancel') as r:
                assert r.status == 409  # nothing to cancel yet
            async with http.post(f'{server.base_url}/api/rebuild', json={}) as r:
                assert r.status == 202
            wait_for(lambda: parse_workers(os.getpid()), what='the docx being parsed')
            async with http.post(f'{server.base_url}/api/rebuild/cancel') as r:
                assert r.status == 202
            status = server.wait_for_build(timeout=60)
            assert status['state'] == 'cancelled', status
            wait_for(lambda: not parse_workers(os.getpid()), timeout=10, what='the parse workers to be killed')
            # Nothing was published; the store answering is the old one.
            assert json.loads((server.work_dir / 'report.json').read_text(encoding='utf-8')) == built_before
            async with http.get(f'{server.base_url}/api/chunks', params={'path': 'README.md'}) as r:
                assert r.status == 200 and (await r.json())['chunks']
            # A later rebuild runs to the end.
            (server.repo_dir / 'slow.docx').unlink()
            (server.repo_dir / 'new.md').write_text('# 新文档\n\n取消之后的重建照常完成。\n', encoding='utf-8')
            async with http.post(f'{server.base_url}/api/rebuild', json={}) as r:
                assert r.status == 202
            status = server.wait_for_build()
            assert status['state'] == 'done' and 'new.md' in status['report']['indexed'], status
            assert status['report']['skipped'] == []
    finally:
        stop()


def _get(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def test_sigterm_stops_the_console_mid_build_within_10_s(tmp_path, sample_store):
    copy_knowledge_base(tmp_path, sample_store)
    crafted_docx(tmp_path / 'repodir' / 'slow.docx', 20)
    port = free_port()
    config = write_config(tmp_path / 'config.ini', feature_store={
        'repo_dir': 'repodir', 'work_dir': 'workdir', 'embedding_model_path': '', 'ocr': 0,
        'good_questions': 'resource/good_questions.json', 'bad_questions': 'resource/bad_questions.json',
        **SLOW}, worker={'save_path': 'logs/work.txt', 'ocr': 0},
        web={'host': '127.0.0.1', 'port': port, 'admin_token': ADMIN_TOKEN})
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), HF_HUB_OFFLINE='1')
    proc = subprocess.Popen([sys.executable, '-m', 'huixiangdou.web', '--config', str(config)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
    base = f'http://127.0.0.1:{port}'
    try:
        wait_for(lambda: _get(f'{base}/api/rebuild') or proc.poll() is not None, what='the console')
        assert proc.poll() is None, proc.stderr.read().decode()
        request = urllib.request.Request(f'{base}/api/rebuild', data=b'{}', method='POST', headers={
            'Authorization': f'Bearer {ADMIN_TOKEN}', 'Content-Type': 'application/json'})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 202
        wait_for(lambda: parse_workers(proc.pid), what='the docx being parsed')
        tree = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 128 + signal.SIGTERM  # as main exits on SIGTERM
        _, alive = psutil.wait_procs(tree, timeout=10)
        assert alive == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
