"""Building the store from a repodir with images: their text is searchable, and never OCR'd twice."""
from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

from huixiangdou.config import FeatureStoreConfig, OCRConfig
from huixiangdou.service.feature_store.builder import OCR_CACHE, FeatureStoreBuilder
from huixiangdou.service.feature_store.store import FeatureStore
from tests.ocr_images import render_bomb, render_text

SCREENSHOT = ['Error: the LLM server refused the connection on port 8888',
              'Fix: start huixiangdou.service.llm_server_hybrid first']


def _builder(embedder, ocr: int = 1) -> FeatureStoreBuilder:
    return FeatureStoreBuilder(FeatureStoreConfig(chunk_size=128, chunk_overlap=16, ocr=ocr), embedder,
                               progress=False, ocr=OCRConfig())


def _repo(root: Path) -> Path:
    import docx

    (root / 'shots').mkdir(parents=True)
    (root / 'install.md').write_text('# Install\n\nCreate a virtualenv and run bash install.sh.\n', encoding='utf-8')
    (root / 'shots' / 'llm_error.png').write_bytes(render_text(SCREENSHOT, size=(1000, 140), font_size=26))
    (root / 'shots' / 'bomb.png').write_bytes(render_bomb())
    guide = docx.Document()
    guide.add_heading('飞书', level=1)
    guide.add_paragraph('回调配置截图：')
    guide.add_picture(io.BytesIO(render_text(['encrypt_key 填写加密密钥'], size=(600, 90), font_size=26)))
    guide.save(root / 'lark.docx')
    return root


@pytest.fixture(scope='module')
def built(tmp_path_factory, embedder):
    """One repodir built once; the tests below rebuild it in copies of its workdir."""
    root = tmp_path_factory.mktemp('ocr_build')
    repo, work = _repo(root / 'repo'), root / 'work'
    return repo, work, _builder(embedder).build(repo, work)


def test_image_text_is_indexed_and_found(built, embedder):
    repo, work, report = built
    assert sorted(report.indexed) == ['install.md', 'lark.docx', 'shots/llm_error.png']
    assert report.ocr['engine'] == 'rapidocr' and report.ocr['images'] == 2
    hit = FeatureStore.load(work, embedder).search('the LLM server refused the connection on port 8888', k=1)[0]
    assert hit.chunk.reference == 'shots/llm_error.png'
    lark = FeatureStore.load(work, embedder).search('encrypt_key 加密密钥', k=1)[0]
    assert lark.chunk.reference == 'lark.docx#飞书' and '加密密钥' in lark.chunk.text


def test_bomb_in_repodir_is_skipped_with_the_reason(built):
    reasons = {s['source']: s['reason'] for s in built[2].skipped}
    assert 'decompression bomb' in reasons['shots/bomb.png']


def test_unchanged_images_are_not_read_again(built, embedder, tmp_path):
    repo, work, _ = built
    work_copy = tmp_path / 'work'
    shutil.copytree(work, work_copy)
    incremental = _builder(embedder).build(repo, work_copy)
    assert set(incremental.reused) == {'install.md', 'lark.docx', 'shots/llm_error.png'}
    assert incremental.ocr['images'] == 0 and incremental.ocr['cached'] == 0
    # A full rebuild, and a changed docx whose picture is the same, take the text from the cache.
    rebuilt = _builder(embedder).build(repo, work_copy, rebuild=True)
    assert 'shots/llm_error.png' in rebuilt.indexed and (rebuilt.ocr['images'], rebuilt.ocr['cached']) == (0, 2)
    import docx
    guide = docx.Document(repo / 'lark.docx')
    guide.add_paragraph('新增一段说明。')
    changed_repo = tmp_path / 'repo'
    shutil.copytree(repo, changed_repo)
    guide.save(changed_repo / 'lark.docx')
    changed = _builder(embedder).build(changed_repo, work_copy)
    assert changed.indexed == ['lark.docx'] and (changed.ocr['images'], changed.ocr['cached']) == (0, 1)


def test_ocr_off_skips_images_with_the_reason_and_on_again_reads_them(built, embedder, tmp_path):
    repo, work = built[0], tmp_path / 'work'
    report = _builder(embedder, ocr=0).build(repo, work)
    reasons = {s['source']: s['reason'] for s in report.skipped}
    assert reasons['shots/llm_error.png'] == 'OCR is off ([feature_store] ocr = 0)'
    assert 'lark.docx' in report.indexed and report.ocr == {}
    assert not (work / OCR_CACHE).exists()
    assert '加密密钥' not in ''.join(c.text for c in FeatureStore.load(work, embedder).chunks)
    # Switched on: the unchanged docx is read again for its picture; files without images are reused.
    report = _builder(embedder).build(repo, work)
    assert sorted(report.indexed) == ['lark.docx', 'shots/llm_error.png'] and report.reused == ['install.md']
    assert '加密密钥' in ''.join(c.text for c in FeatureStore.load(work, embedder).chunks)
