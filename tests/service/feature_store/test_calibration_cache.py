"""Recalibration reuses what did not change (calibration_cache.py): a new example costs its own evidence,
a changed document reuses the message model's fits; either way the result is the one computing everything
afresh gives. A damaged cache only costs time."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from huixiangdou.config import FeatureStoreConfig
from huixiangdou.service.feature_store.builder import FeatureStoreBuilder
from huixiangdou.service.feature_store.calibration_cache import CALIBRATION_CACHE
from huixiangdou.service.feature_store.store import FeatureStore
from tests.conftest import REPO_ROOT

NEW_EXAMPLE = '改了 chunk_size 之后要不要重建特征库？'


@pytest.fixture
def setup(tmp_path, sample_store, embedder):
    """A copy of the calibrated sample store with its own repodir and example files, and a builder for it."""
    work = tmp_path / 'work'
    shutil.copytree(sample_store[0], work)
    repo = tmp_path / 'repo'
    shutil.copytree(REPO_ROOT / 'repodir', repo)
    good, bad = tmp_path / 'good.json', tmp_path / 'bad.json'
    shutil.copy(REPO_ROOT / 'resource/good_questions.json', good)
    shutil.copy(REPO_ROOT / 'resource/bad_questions.json', bad)
    builder = FeatureStoreBuilder(FeatureStoreConfig(), embedder, progress=False)
    return builder, repo, work, good, bad


def from_scratch(builder, repo, work, good, bad, tmp_path):
    """The same build with nothing to reuse: a copy of the workdir without its calibration cache, and
    the embedding cache off for the examples."""
    fresh = tmp_path / 'fresh'
    shutil.copytree(work, fresh)
    (fresh / CALIBRATION_CACHE).unlink(missing_ok=True)
    cold = FeatureStoreBuilder(FeatureStoreConfig(embedding_cache='off'), builder.embedder, progress=False)
    return cold.build(repo, fresh, good=good, bad=bad)


def same_calibration(a, b):
    assert a.calibration['cross_validated'] == b.calibration['cross_validated']
    assert np.allclose(a.calibration['scores']['good'], b.calibration['scores']['good'], atol=1e-4)
    assert np.allclose(a.calibration['scores']['bad'], b.calibration['scores']['bad'], atol=1e-4)
    assert a.calibration['retrieval_dense_weight'] == b.calibration['retrieval_dense_weight']


def test_a_new_example_costs_only_its_own_evidence(setup, tmp_path):
    builder, repo, work, good, bad = setup
    first = builder.build(repo, work, good=good, bad=bad)   # the copy's first run fills the cache
    assert first.calibration_cache['evidence_computed'] + first.calibration_cache['evidence_reused'] > 0
    questions = json.loads(good.read_text(encoding='utf-8'))
    good.write_text(json.dumps(questions + [NEW_EXAMPLE], ensure_ascii=False), encoding='utf-8')
    report = builder.build(repo, work, good=good, bad=bad)
    n = len(questions) + len(json.loads(bad.read_text(encoding='utf-8')))
    assert report.calibration_cache == {'evidence_reused': n, 'evidence_computed': 1, 'message_fits': 'fitted'}
    assert report.calibration['good_questions'] == len(questions) + 1
    same_calibration(report, from_scratch(builder, repo, work, good, bad, tmp_path))


def test_a_changed_document_reuses_the_message_model(setup, tmp_path, embedder):
    builder, repo, work, good, bad = setup
    builder.build(repo, work, good=good, bad=bad)
    (repo / 'zh' / 'zorblax.md').write_text('# Zorblax 网关\n\nZorblax 网关默认监听 7411 端口，在 config.ini 的 '
                                            '[zorblax] 段用 port 修改。\n', encoding='utf-8')
    report = builder.build(repo, work, good=good, bad=bad)
    assert report.indexed == ['zh/zorblax.md']
    # The store changed, so every example's evidence is new; the examples did not, so the fits are reused.
    assert report.calibration_cache['evidence_reused'] == 0
    assert report.calibration_cache['message_fits'] == 'reused'
    same_calibration(report, from_scratch(builder, repo, work, good, bad, tmp_path))
    # The reused model answers with the new document.
    store = FeatureStore.load(work, embedder)
    assert store.reject_model.kind == 'classifier'
    assert store.search('Zorblax 网关默认端口', k=1)[0].chunk.source == 'zh/zorblax.md'


def test_a_damaged_cache_is_moved_aside_and_rebuilt(setup):
    builder, repo, work, good, bad = setup
    before = builder.build(repo, work, good=good, bad=bad)
    (work / CALIBRATION_CACHE).write_bytes(b'this is not a database' * 100)
    for leftover in work.glob(f'{CALIBRATION_CACHE}-*'):
        leftover.unlink()
    report = builder.build(repo, work, good=good, bad=bad)
    assert report.calibration_cache['message_fits'] == 'fitted'
    assert report.calibration['cross_validated'] == before.calibration['cross_validated']
    assert list(work.glob(f'{CALIBRATION_CACHE}.damaged-*'))
