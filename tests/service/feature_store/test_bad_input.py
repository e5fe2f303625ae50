"""Bad files are skipped with a reason in the summary and in workdir/report.json; the build goes on."""
from __future__ import annotations

import json
import os

import pymupdf as fitz
import pytest

from huixiangdou.config import FeatureStoreConfig
from huixiangdou.service.feature_store.__main__ import main as cli
from huixiangdou.service.feature_store.builder import FeatureStoreBuilder
from tests.conftest import write_config


def make_bad_repo(repo):
    repo.mkdir()
    (repo / 'good.md').write_text('# 正常文档\n\n茴香豆的配置文件是 config.ini。\n', encoding='utf-8')
    (repo / 'gbk.txt').write_bytes('飞书机器人需要加密密钥，GBK 编码的中文也能读。'.encode('gbk'))
    (repo / 'zero.md').write_bytes(b'')
    (repo / 'binary.md').write_bytes(bytes(range(256)) * 8)
    doc = fitz.open()
    doc.new_page().insert_text((72, 72), 'release notes')
    pdf = doc.tobytes()
    (repo / 'truncated.pdf').write_bytes(pdf[:len(pdf) // 3])
    doc.save(str(repo / 'locked.pdf'), encryption=fitz.PDF_ENCRYPT_AES_256, owner_pw='o', user_pw='u')
    (repo / 'fake.docx').write_text('this is not a zip archive', encoding='utf-8')
    (repo / 'latin.txt').write_bytes(b'\xff\xfe\xfa\x80\x81 broken \xc3\x28 \xa0\xa1' * 3 + b'\x80')
    (repo / 'huge.txt').write_text('x' * (2 * 1024 * 1024), encoding='utf-8')
    os.symlink('loop_b', repo / 'loop_a')
    os.symlink('loop_a', repo / 'loop_b')
    (repo / 'secret.md').write_text('no access', encoding='utf-8')
    os.chmod(repo / 'secret.md', 0)


def test_every_bad_file_is_skipped_and_reported(tmp_path, embedder):
    repo, work = tmp_path / 'repo', tmp_path / 'work'
    make_bad_repo(repo)
    builder = FeatureStoreBuilder(FeatureStoreConfig(max_file_size_mb=1), embedder, progress=False)
    report = builder.build(repo, work)
    skipped = {s['source']: s['reason'] for s in report.skipped}
    assert sorted(report.indexed) == ['gbk.txt', 'good.md'] + (['secret.md'] if os.geteuid() == 0 else [])
    for name in ('zero.md', 'binary.md', 'truncated.pdf', 'locked.pdf', 'fake.docx', 'latin.txt',
                 'huge.txt', 'loop_a', 'loop_b'):
        assert name in skipped, name
        assert skipped[name].strip(), name
    assert 'password' in skipped['locked.pdf'].lower()
    if os.geteuid() != 0:
        assert 'secret.md' in skipped
    on_disk = json.loads((work / 'report.json').read_text(encoding='utf-8'))
    assert {s['source'] for s in on_disk['skipped']} == set(skipped)


def test_cli_reports_skips_and_exits_zero(tmp_path, capsys):
    repo, work = tmp_path / 'repo', tmp_path / 'work'
    make_bad_repo(repo)
    config = write_config(tmp_path / 'config.ini', feature_store={
        'repo_dir': str(repo), 'work_dir': str(work), 'max_file_size_mb': 1,
        'good_questions': 'missing.json', 'bad_questions': 'missing.json'})
    assert cli(['--config', str(config), '--quiet']) == 0
    out = capsys.readouterr().out
    assert 'skipped locked.pdf' in out and 'files indexed: ' in out


@pytest.mark.parametrize('setup,message', [
    ('missing', 'repo'),
    ('empty', 'no supported documents'),
])
def test_cli_fails_clearly_on_missing_or_empty_repo(tmp_path, capsys, setup, message):
    repo = tmp_path / 'repo'
    if setup == 'empty':
        repo.mkdir()
    config = write_config(tmp_path / 'config.ini', feature_store={'repo_dir': str(repo),
                                                                  'work_dir': str(tmp_path / 'w')})
    assert cli(['--config', str(config), '--quiet']) == 1
    err = capsys.readouterr().err
    assert 'error:' in err and message in err


def test_cli_fails_clearly_on_config_error(tmp_path, capsys):
    config = write_config(tmp_path / 'config.ini', feature_store={'chunk_sise': 100})
    assert cli(['--config', str(config)]) == 1
    err = capsys.readouterr().err
    assert 'chunk_sise' in err and str(config) in err


def test_upstream_flag_spellings_build_a_store(tmp_path):
    """Scripts written for upstream HuixiangDou pass --config_path, --repo_dir, --work_dir and the question files."""
    repo, work = tmp_path / 'repo', tmp_path / 'work'
    repo.mkdir()
    (repo / 'guide.md').write_text('# 部署\n\n茴香豆的大模型服务默认监听 8888 端口。\n', encoding='utf-8')
    good, bad = tmp_path / 'good.json', tmp_path / 'bad.json'
    good.write_text(json.dumps(['大模型服务监听哪个端口？']), encoding='utf-8')
    bad.write_text(json.dumps(['今天中午吃什么？']), encoding='utf-8')
    config = write_config(tmp_path / 'config.ini', feature_store={'embedding_model_path': ''})
    assert cli(['--config_path', str(config), '--repo_dir', str(repo), '--work_dir', str(work),
                '--good_questions', str(good), '--bad_questions', str(bad), '--quiet']) == 0
    report = json.loads((work / 'report.json').read_text(encoding='utf-8'))
    assert report['indexed'] == ['guide.md']
    assert report['examples'] == {'accepted': ['大模型服务监听哪个端口？'], 'rejected': ['今天中午吃什么？']}


def test_a_file_name_that_is_not_utf8_does_not_fail_the_build(tmp_path, embedder):
    repo = tmp_path / 'repo'
    repo.mkdir()
    (repo / 'good.md').write_text('# 部署\n\n茴香豆的配置文件是 config.ini，修改后重启服务即可生效。\n', encoding='utf-8')
    (repo / os.fsdecode(b'odd\xff name.md')).write_text('deploy notes for the odd file\n', encoding='utf-8')
    report = FeatureStoreBuilder(FeatureStoreConfig(), embedder, progress=False).build(repo, tmp_path / 'work')
    assert report.indexed == ['good.md']
    assert {'source': 'odd\\xff name.md', 'reason': 'its name is not valid UTF-8: rename it to index it'} \
        in report.skipped
