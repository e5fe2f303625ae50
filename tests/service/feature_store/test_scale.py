"""A big store on one machine: the approximate index and its recall, loading without reading chunk texts,
stores of the older layout, and incremental builds that read only unchanged files' rows back."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from huixiangdou.config import FeatureStoreConfig
from huixiangdou.primitive.chunk import Chunk
from huixiangdou.primitive.chunk_table import ChunkTable
from huixiangdou.primitive.dense_index import FaissIndex, recall_at
from huixiangdou.primitive.sparse_index import SparseIndex
from huixiangdou.service.feature_store import FeatureStore, Manifest
from huixiangdou.service.feature_store.builder import FeatureStoreBuilder
from huixiangdou.service.feature_store.store_files import current_folder
from tests.conftest import REPO_ROOT
from tests.service.feature_store.test_store_integrity import as_built_before_checksums

QUESTIONS = ['如何重建索引?', 'mmpose 安装报错 cuda 怎么办', '飞书机器人怎么配置', '今天中午吃什么', 'hello']


def clustered(n: int, dimension: int, seed: int, topics: int = 40) -> np.ndarray:
    """Vectors around topic centres, as embeddings of real documents cluster by subject."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(1).standard_normal((topics, dimension)).astype(np.float32)
    v = centres[rng.integers(0, topics, n)] + rng.standard_normal((n, dimension), dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture(scope='module')
def big_store_dir(tmp_path_factory):
    """A store of 6,000 chunks with an approximate dense index (exact_search_max_chunks = 1,000)."""
    n, dimension = 6000, 384
    chunks = [Chunk(f'第 {i} 段: 安装 torch 与 cuda 的说明 part{i}', f'docs/{i // 100:03d}.md', f'section {i % 100}')
              for i in range(n)]
    tokens = [['安装', 'torch', 'cuda', f'part{i}'] for i in range(n)]
    vectors = clustered(n, dimension, seed=0)
    manifest = Manifest(embedding_model='random', dimension=dimension, chunk_size=512, chunk_overlap=0)
    dense = FaissIndex.build(vectors, exact_search_max_chunks=1000)
    work_dir = tmp_path_factory.mktemp('big_store')
    FeatureStore(manifest, chunks, vectors, SparseIndex(tokens), None, dense=dense).save(work_dir)
    return work_dir, vectors


def test_above_the_exact_limit_the_index_is_approximate_with_its_recall_recorded(big_store_dir):
    work_dir, vectors = big_store_dir
    store = FeatureStore.load(work_dir, None, check_model=False)
    assert store.manifest.dense_index.startswith('IVF')
    assert store.manifest.dense_recall_at_10 >= 0.95
    report = json.loads((current_folder(work_dir) / 'manifest.json').read_text())
    assert report['dense_recall_at_10'] == store.manifest.dense_recall_at_10
    # Fresh queries (not stored vectors) find nearly what exact search finds, with the same scores.
    queries = clustered(100, vectors.shape[1], seed=7)
    exact = FaissIndex(vectors.shape[1])
    exact.add(vectors)
    exact_scores, exact_ids = exact.search(queries, 10)
    scores, ids = store.dense.search(queries, 10)
    assert recall_at(exact_ids, ids) >= 0.9
    same_best = ids[:, 0] == exact_ids[:, 0]
    assert same_best.mean() >= 0.9
    np.testing.assert_allclose(scores[same_best, 0], exact_scores[same_best, 0], rtol=1e-5)


def test_below_the_exact_limit_the_index_is_exact():
    vectors = clustered(500, 32, seed=3)
    index = FaissIndex.build(vectors, exact_search_max_chunks=500)
    assert index.describe() == 'flat' and index.recall_at_10 is None


def test_loading_a_big_store_reads_no_chunk_text_and_a_query_reads_only_its_candidates(big_store_dir, embedder):
    work_dir, _ = big_store_dir
    store = FeatureStore.load(work_dir, embedder, check_model=False)
    assert isinstance(store.chunks, ChunkTable) and len(store.chunks) == 6000
    assert store.chunks.rows_read == 0
    assert isinstance(store.vectors, np.memmap)
    features = store.featurize(['torch part42 安装'])[0]
    results = store.search(features, k=3, candidates=20)
    assert results[0].chunk.text.endswith('part42')   # BM25 finds the one chunk with the rare word
    assert 0 < store.chunks.rows_read <= 2 + 40        # evidence's two best, then at most 2 × 20 candidates


@pytest.fixture(scope='module')
def sample_copy(tmp_path_factory, sample_store):
    """The sample store and repodir copied, so they can be rewritten in the older layout and rebuilt."""
    root = tmp_path_factory.mktemp('old_layout')
    shutil.copytree(sample_store[0], root / 'work')
    shutil.copytree(REPO_ROOT / 'repodir', root / 'repo')
    return root


def _to_older_layout(folder):
    """Rewrite a version folder as stores were written before the chunk table and the BM25 arrays."""
    as_built_before_checksums(folder)  # which was before checksums too
    table = ChunkTable(folder / ChunkTable.FILE)
    with open(folder / 'chunks.jsonl', 'w', encoding='utf-8') as f:
        for c in table:
            f.write(json.dumps({'text': c.text, 'source': c.source, 'anchor': c.anchor}, ensure_ascii=False) + '\n')
    sparse = SparseIndex.load(folder)
    tokens = sparse.tokens(0, len(sparse))
    table.close()
    (folder / 'sparse_tokens.json').write_text(json.dumps(tokens, ensure_ascii=False), encoding='utf-8')
    (folder / ChunkTable.FILE).unlink()
    shutil.rmtree(folder / SparseIndex.BM25_DIR)
    for path in folder.glob('sparse_*.npy'):
        path.unlink()


def test_a_store_of_the_older_layout_loads_and_decides_the_same(sample_copy, sample_feature_store, embedder):
    work_dir = sample_copy / 'work'
    _to_older_layout(current_folder(work_dir))
    old = FeatureStore.load(work_dir, embedder)
    assert isinstance(old.chunks, list)
    before = sample_feature_store.reject_scores(QUESTIONS)
    after = old.reject_scores(QUESTIONS)
    np.testing.assert_allclose([s.score for s in after], [s.score for s in before], atol=1e-9)
    assert ([r.chunk for r in old.search(QUESTIONS[0], k=3)]
            == [r.chunk for r in sample_feature_store.search(QUESTIONS[0], k=3)])


def test_incremental_builds_reuse_unchanged_files_from_either_layout(sample_copy, sample_feature_store, embedder):
    # Runs after the older-layout test (same module copy): the first build starts from chunks.jsonl.
    work_dir, repo = sample_copy / 'work', sample_copy / 'repo'
    builder = FeatureStoreBuilder(FeatureStoreConfig(), embedder, progress=False)
    report = builder.build(repo, work_dir)
    assert report.indexed == [] and len(report.reused) == len(sample_feature_store.manifest.files)
    folder = current_folder(work_dir)
    assert (folder / ChunkTable.FILE).is_file() and not (folder / 'chunks.jsonl').exists()
    rebuilt = FeatureStore.load(work_dir, embedder)
    np.testing.assert_allclose([s.score for s in rebuilt.reject_scores(QUESTIONS)],
                               [s.score for s in sample_feature_store.reject_scores(QUESTIONS)], atol=1e-9)

    changed = sorted(repo.rglob('*.md'))[0]
    changed.write_text(changed.read_text(encoding='utf-8') + '\n\n## 新增\n群聊里的飞书机器人需要 app_id。\n',
                       encoding='utf-8')
    report = builder.build(repo, work_dir)
    source = changed.relative_to(repo).as_posix()
    assert report.indexed == [source] and source not in report.reused
    assert len(report.reused) == len(sample_feature_store.manifest.files) - 1
    updated = FeatureStore.load(work_dir, embedder)
    kept = next(s for s in report.reused)
    old_rec, new_rec = sample_feature_store.manifest.files[kept], updated.manifest.files[kept]
    assert (updated.chunks[new_rec.first:new_rec.first + new_rec.count]
            == sample_feature_store.chunks[old_rec.first:old_rec.first + old_rec.count])
    np.testing.assert_array_equal(updated.vectors[new_rec.first:new_rec.first + new_rec.count],
                                  sample_feature_store.vectors[old_rec.first:old_rec.first + old_rec.count])
    assert any('app_id' in c.text for c in updated.chunks[updated.manifest.files[source].first:]
               [:updated.manifest.files[source].count])
