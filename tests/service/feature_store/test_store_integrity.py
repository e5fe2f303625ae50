"""A damaged store is refused at load with one message that says to rebuild, never served: checksums
recorded at build, the manifest checked by type, --verify, older stores without checksums, reloads."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
from loguru import logger

from huixiangdou.config import FeatureStoreConfig
from huixiangdou.service.feature_store.__main__ import main as feature_store_main
from huixiangdou.service.feature_store.builder import FeatureStoreBuilder
from huixiangdou.service.feature_store.checksums import CHECKSUMS_FILE, record_checksums
from huixiangdou.service.feature_store.store import FeatureStore, StoreDamagedError, StoreError
from huixiangdou.service.feature_store.store_files import current_folder, verify_store
from tests.conftest import REPO_ROOT, write_config
from tests.service.feature_store.test_builder import DOCS, make_repo

QUESTION = '飞书群应用的加密密钥 encrypt_key 在哪里配置？'


@pytest.fixture
def work(tmp_path, sample_store):
    """A copy of the sample store, to damage."""
    copy = tmp_path / 'work'
    shutil.copytree(sample_store[0], copy)
    return copy


def overwrite_vector_data(folder, seed: int = 0) -> None:
    """Random values over every vector in vectors.npy, its header left as it was (shape and dtype intact)."""
    path = folder / 'vectors.npy'
    with open(path, 'r+b') as f:
        np.lib.format.read_magic(f)
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        f.write(np.random.default_rng(seed).standard_normal(shape).astype(dtype).tobytes())


def as_built_before_checksums(folder) -> None:
    """Rewrite a version folder as builds wrote it before checksums were recorded."""
    (folder / CHECKSUMS_FILE).unlink()
    manifest = json.loads((folder / 'manifest.json').read_text(encoding='utf-8'))
    del manifest['checksums']
    (folder / 'manifest.json').write_text(json.dumps(manifest), encoding='utf-8')


def edit_manifest(folder, **fields) -> None:
    manifest = json.loads((folder / 'manifest.json').read_text(encoding='utf-8'))
    manifest.update(fields)
    (folder / 'manifest.json').write_text(json.dumps(manifest), encoding='utf-8')


def test_random_values_over_the_vectors_are_refused_with_the_rebuild_message(work, embedder,
                                                                            sample_feature_store):
    overwrite_vector_data(current_folder(work))
    with pytest.raises(StoreDamagedError, match=r'vectors\.npy does not match the checksum') as caught:
        FeatureStore.load(work, embedder)
    assert '--rebuild' in str(caught.value) and isinstance(caught.value, StoreError)
    # The damage is real and silent without the checksums: the header is intact, so it loads and cites
    # other chunks than the good store does.
    unchecked = FeatureStore.load(work, embedder, verify=False)
    assert ([r.row for r in unchecked.search(QUESTION, k=5)]
            != [r.row for r in sample_feature_store.search(QUESTION, k=5)])


def test_a_damaged_page_of_the_chunk_table_is_refused_at_load(work, embedder):
    path = current_folder(work) / 'chunks.sqlite'
    with sqlite3.connect(path) as db:
        (page_size,) = db.execute('PRAGMA page_size').fetchone()
        (pages,) = db.execute('PRAGMA page_count').fetchone()
    db.close()
    assert pages > 2
    page = int(np.random.default_rng(1).integers(1, pages))  # any page but the header: the table opens
    with open(path, 'r+b') as f:
        f.seek(page * page_size)
        f.write(np.random.default_rng(2).bytes(page_size))
    with pytest.raises(StoreDamagedError, match=r'chunks\.sqlite does not match .*--rebuild'):
        FeatureStore.load(work, embedder)


@pytest.mark.parametrize('field, value, message', [
    ('reject_threshold', 'high', "field reject_threshold must be a number, got 'high'"),
    ('dimension', '384', "field dimension must be an integer, got '384'"),
    ('dimension', 0, 'field dimension must be at least 1'),
    ('files', {'a.md': 'x'}, "field files['a.md'] must be an object"),
])
def test_a_manifest_field_of_the_wrong_type_is_named(work, embedder, field, value, message):
    # Checksums recorded over the bad field (a hand-edited store): the check by type still names it.
    edit_manifest(current_folder(work), **{field: value})
    record_checksums(current_folder(work))
    with pytest.raises(StoreDamagedError) as caught:
        FeatureStore.load(work, embedder)
    text = str(caught.value)
    assert message in text and 'manifest.json' in text and '--rebuild' in text
    assert 'this config asks for' not in text


def test_a_manifest_edited_after_the_build_is_refused(work, embedder):
    # Well-typed but not what the build wrote: only the checksum can tell.
    edit_manifest(current_folder(work), reject_threshold=0.01)
    with pytest.raises(StoreDamagedError, match=r'manifest\.json (is \d+ bytes|does not match)'):
        FeatureStore.load(work, embedder)


@pytest.mark.parametrize('damage, reason', [
    (lambda f: (f / 'dense.faiss').write_bytes((f / 'dense.faiss').read_bytes()[:-100]), 'dense.faiss is'),
    (lambda f: (f / 'reject_model.npz').unlink(), 'reject_model.npz is missing'),
    (lambda f: (f / 'bm25' / 'extra.json').write_text('{}'), 'bm25/extra.json was not written by the build'),
    (lambda f: (f / CHECKSUMS_FILE).write_text('{"algo'), 'checksums.json is unreadable'),
    (lambda f: (f / CHECKSUMS_FILE).unlink(), 'checksums.json is missing'),
])
def test_missing_truncated_or_stray_files_are_refused(work, embedder, damage, reason):
    damage(current_folder(work))
    with pytest.raises(StoreDamagedError, match='--rebuild') as caught:
        FeatureStore.load(work, embedder)
    assert reason in str(caught.value)


def test_a_store_built_before_checksums_loads_with_a_warning(work, embedder):
    as_built_before_checksums(current_folder(work))
    warnings = []
    sink = logger.add(lambda m: warnings.append(str(m)), level='WARNING')
    try:
        store = FeatureStore.load(work, embedder)
    finally:
        logger.remove(sink)
    assert store.search(QUESTION, k=1)
    assert any('before checksums were recorded' in w and '--verify cannot check it' in w and '--rebuild' in w
               for w in warnings)


def test_verify_exit_codes(work, tmp_path, capsys):
    config = write_config(tmp_path / 'config.ini', feature_store={'embedding_model_path': ''})
    args = ['--config', str(config), '--work-dir', str(work), '--verify']
    assert feature_store_main(args) == 0
    assert 'every file matches' in capsys.readouterr().out

    folder = current_folder(work)
    shutil.copytree(folder, tmp_path / 'good')
    overwrite_vector_data(folder)
    assert feature_store_main(args) == 1
    err = capsys.readouterr().err
    assert 'vectors.npy does not match the checksum' in err and '--rebuild' in err

    shutil.rmtree(folder)
    shutil.copytree(tmp_path / 'good', folder)
    as_built_before_checksums(folder)
    assert feature_store_main(args) == 1
    assert 'cannot check it (it still loads)' in capsys.readouterr().err


def test_verify_from_the_command_line_fails_a_damaged_store(work, tmp_path):
    config = write_config(tmp_path / 'config.ini', feature_store={'embedding_model_path': ''})
    command = [sys.executable, '-m', 'huixiangdou.service.feature_store', '--config', str(config),
               '--work-dir', str(work), '--verify']
    good = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert good.returncode == 0, good.stderr
    path = current_folder(work) / 'chunks.sqlite'
    with open(path, 'r+b') as f:
        f.seek(4096)
        f.write(b'\0' * 4096)
    bad = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1
    assert 'chunks.sqlite does not match the checksum' in bad.stderr and 'Traceback' not in bad.stderr


def test_a_loaded_store_keeps_serving_when_the_next_version_is_damaged(work, embedder):
    serving = FeatureStore.load(work, embedder)
    before = [(r.row, r.chunk) for r in serving.search(QUESTION, k=3)]
    # A new version is published (an unchanged rebuild), and its vectors are damaged on disk.
    builder = FeatureStoreBuilder(FeatureStoreConfig(), embedder, progress=False)
    builder.build(REPO_ROOT / 'repodir', work)
    assert current_folder(work) != serving.folder
    overwrite_vector_data(current_folder(work))
    with pytest.raises(StoreDamagedError):
        FeatureStore.load(work, embedder)  # what a reload meets: refused, so the caller keeps `serving`
    assert [(r.row, r.chunk) for r in serving.search(QUESTION, k=3)] == before
    assert serving.reject_score(QUESTION).score >= serving.calibrated_threshold


def test_a_build_does_not_reuse_rows_of_a_damaged_version(tmp_path, embedder):
    repo, work = make_repo(tmp_path / 'repo'), tmp_path / 'work'
    builder = FeatureStoreBuilder(FeatureStoreConfig(chunk_size=128, chunk_overlap=16), embedder, progress=False)
    builder.build(repo, work)
    good = np.array(FeatureStore.load(work, embedder).vectors)
    overwrite_vector_data(current_folder(work))
    report = builder.build(repo, work)  # incremental: would copy the damaged rows of unchanged files
    assert report.reused == [] and sorted(report.indexed) == sorted(DOCS)
    np.testing.assert_allclose(FeatureStore.load(work, embedder).vectors, good, atol=1e-5)


def _pointer_bytes(work, other_copy) -> dict[str, bytes]:
    name = current_folder(work).name
    return {'binary garbage': b'\xff\xfe\x00garbage',
            'a relative path out of the workdir': f'../{other_copy.name}/{name}\n'.encode(),
            'an absolute path': f'{other_copy / name}\n'.encode()}


@pytest.mark.parametrize('what', ['binary garbage', 'a relative path out of the workdir', 'an absolute path'])
def test_a_current_pointer_that_names_no_version_of_this_workdir_is_refused(work, tmp_path, embedder, what):
    # A good store elsewhere: a CURRENT leading to it must not load it as this workdir's store.
    other = tmp_path / 'other'
    shutil.copytree(work, other)
    (work / 'CURRENT').write_bytes(_pointer_bytes(work, other)[what])
    for load in (lambda: FeatureStore.load(work, embedder), lambda: verify_store(work)):
        with pytest.raises(StoreDamagedError, match='CURRENT does not name a version folder.*--rebuild'):
            load()


def test_a_build_over_a_garbage_current_publishes_a_new_version(tmp_path, embedder):
    repo, work = make_repo(tmp_path / 'repo'), tmp_path / 'work'
    builder = FeatureStoreBuilder(FeatureStoreConfig(chunk_size=128, chunk_overlap=16), embedder, progress=False)
    builder.build(repo, work)
    (work / 'CURRENT').write_bytes(b'\xff\xfe\x00garbage')
    builder.build(repo, work)
    assert FeatureStore.load(work, embedder).search(QUESTION, k=1)


@pytest.mark.parametrize('old, new', [('"format_version": 2', '"format_version": 3'),
                                      ('all-MiniLM-L6-v2', 'all-MiniLM-L7-v2'),
                                      ('"dimension": 384', '"dimension": 385')])
def test_one_changed_byte_of_the_manifest_is_damage_not_another_format_or_model(work, embedder, old, new):
    path = current_folder(work) / 'manifest.json'
    text = path.read_text(encoding='utf-8')
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding='utf-8')
    for load in (lambda: FeatureStore.load(work, embedder), lambda: verify_store(work)):
        with pytest.raises(StoreDamagedError, match=r'manifest\.json does not match the checksum'):
            load()


@pytest.mark.parametrize('damage, reason', [
    (lambda f: os.mkfifo(f / 'stray'), 'stray was not written by the build'),
    (lambda f: ((f / 'vectors.npy').unlink(), os.mkfifo(f / 'vectors.npy')), 'vectors.npy is not a regular file'),
    (lambda f: ((f / 'vectors.npy').unlink(), os.symlink('vectors.npy', f / 'vectors.npy')),
     'vectors.npy is unreadable'),
])
def test_a_fifo_or_a_looping_link_in_a_version_is_damage(work, embedder, damage, reason):
    damage(current_folder(work))
    for load in (lambda: FeatureStore.load(work, embedder), lambda: verify_store(work)):
        with pytest.raises(StoreDamagedError, match='--rebuild') as caught:
            load()
        assert reason in str(caught.value)
