"""A file whose parser explodes (in memory or in time) is killed and skipped with the reason; the build goes
on. The command-line build stops on SIGTERM and leaves no parse process behind."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import psutil
import pytest

from huixiangdou.config import FeatureStoreConfig
from huixiangdou.service.feature_store.builder import FeatureStoreBuilder
from tests.conftest import REPO_ROOT, wait_for, write_config
from tests.crafted_files import crafted_docx, parse_workers

GOOD = '# 部署\n\n茴香豆的配置文件是 config.ini，修改后重启服务即可生效。\n'


def test_crafted_docx_is_refused_by_size_or_memory_and_the_build_goes_on(tmp_path, embedder):
    repo = tmp_path / 'repo'
    repo.mkdir()
    (repo / 'good.md').write_text(GOOD, encoding='utf-8')
    crafted_docx(repo / 'bomb.docx', 80)    # past max_expanded_mb: refused before anything is inflated
    crafted_docx(repo / 'dense.docx', 30)   # under it, but its XML tree needs more than 300 MB
    config = FeatureStoreConfig(parse_memory_mb=300, parse_timeout_s=20, max_expanded_mb=64)
    report = FeatureStoreBuilder(config, embedder, progress=False).build(repo, tmp_path / 'work')
    skipped = {s['source']: s['reason'] for s in report.skipped}
    assert report.indexed == ['good.md']
    assert re.search(r'expands to \d+ MB, over max_expanded_mb = 64', skipped['bomb.docx'])
    assert skipped['dense.docx'] == 'needed more than 300 MB to parse'
    assert parse_workers(os.getpid()) == []


def test_a_parse_past_its_deadline_is_killed_and_skipped(tmp_path, embedder):
    repo = tmp_path / 'repo'
    repo.mkdir()
    (repo / 'good.md').write_text(GOOD, encoding='utf-8')
    # Fits in memory, but python-docx walks its 600,000 paragraphs for half a minute or more.
    crafted_docx(repo / 'slow.docx', 20)
    config = FeatureStoreConfig(parse_memory_mb=2048, parse_timeout_s=5, max_expanded_mb=1000)
    report = FeatureStoreBuilder(config, embedder, progress=False).build(repo, tmp_path / 'work')
    assert report.indexed == ['good.md']
    assert report.skipped == [{'source': 'slow.docx', 'reason': 'took longer than 5 s to parse'}]
    assert parse_workers(os.getpid()) == []


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_cli_build_stops_on_sigterm_or_ctrl_c_and_leaves_no_parse_process(tmp_path, signum):
    """SIGTERM and Ctrl-C unwind (exit 128 + signal, parse processes killed); after kill -9 the parse
    processes die with it rather than parse on."""
    repo = tmp_path / 'repo'
    repo.mkdir()
    (repo / 'good.md').write_text(GOOD, encoding='utf-8')
    crafted_docx(repo / 'slow.docx', 20)
    config = write_config(tmp_path / 'config.ini', feature_store={
        'repo_dir': str(repo), 'work_dir': str(tmp_path / 'work'), 'embedding_model_path': '',
        'good_questions': 'missing.json', 'bad_questions': 'missing.json', 'ocr': 0,
        'parse_timeout_s': 300, 'max_expanded_mb': 1000})
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), HF_HUB_OFFLINE='1')
    proc = subprocess.Popen([sys.executable, '-m', 'huixiangdou.service.feature_store', '--config', str(config),
                             '--quiet'], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: parse_workers(proc.pid) or proc.poll() is not None, what='a parse worker')
        assert proc.poll() is None, proc.stderr.read().decode()
        tree = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signum)
        code = proc.wait(timeout=10)
        assert code == (-signum if signum == signal.SIGKILL else 128 + signum), proc.stderr.read().decode()
        _, alive = psutil.wait_procs(tree, timeout=10)
        assert alive == []
        assert not (tmp_path / 'work' / 'CURRENT').exists()  # nothing published
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize('key, value', [('parse_timeout_s', 0), ('parse_memory_mb', 100), ('parse_workers', 0),
                                        ('max_expanded_mb', -1)])
def test_parse_limits_out_of_range_are_config_errors_naming_the_key(tmp_path, key, value):
    from huixiangdou.config import ConfigError, load_config

    config = write_config(tmp_path / 'config.ini', feature_store={key: value})
    with pytest.raises(ConfigError, match=rf'\[feature_store\] {key} must be'):
        load_config(config)
