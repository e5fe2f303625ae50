"""The feature store with its dense side in Milvus (milvus-lite in tmp_path): built, updated by file,
searched, and deciding like the FAISS store on the sample."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from huixiangdou.config import FeatureStoreConfig
from huixiangdou.primitive.dense_index import FaissIndex
from huixiangdou.primitive.milvus_index import FileRows, MilvusIndex, MilvusIndexError, connect
from huixiangdou.service.feature_store.builder import FeatureStoreBuilder
from huixiangdou.service.feature_store.store import FeatureStore, StoreError
from tests.conftest import REPO_ROOT, free_port
from tests.service.feature_store.test_builder import DOCS, make_repo


def wait_for_port(port: int, proc: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f'milvus-lite server exited with {proc.returncode}')
        with socket.socket() as s:
            if s.connect_ex(('127.0.0.1', port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f'milvus-lite server did not listen on {port}')


@pytest.fixture
def milvus_server(tmp_path):
    """A Milvus gRPC server on a free port (milvus-lite's `server` command: the protocol a Milvus
    cluster speaks), stopped after the test."""
    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).parent / 'milvus-lite'), 'server', '--data-dir',
                             str(tmp_path / 'milvus-data'), '--host', '127.0.0.1', '--port', str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc)
        yield f'http://127.0.0.1:{port}'
    finally:
        proc.terminate()
        proc.wait(30)


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def milvus_config(uri: Path | str, **extra) -> FeatureStoreConfig:
    return FeatureStoreConfig(vector_store='milvus', milvus_uri=str(uri), **extra)


def test_milvus_index_finds_what_faiss_finds(tmp_path):
    vectors, queries = unit_vectors(500, 32, 0), unit_vectors(20, 32, 1)
    index = MilvusIndex(connect(str(tmp_path / 'm.db')), 'unit', 32, uri=str(tmp_path / 'm.db'))
    index.add(vectors[:300])
    index.add(vectors[300:])
    exact = FaissIndex(32)
    exact.add(vectors)
    assert len(index) == 500 and index.rows_in_collection() == 500
    scores, ids = index.search(queries, 10)
    f_scores, f_ids = exact.search(queries, 10)
    assert (ids == f_ids).all()
    np.testing.assert_allclose(scores, f_scores, atol=1e-5)
    # Asking for more than there is pads like FAISS does.
    small = MilvusIndex(index.client, 'small', 32)
    small.add(vectors[:3])
    assert (small.search(queries[:1], 5)[1][0, 3:] == -1).all()


def test_milvus_index_refuses_another_dimension(tmp_path):
    client = connect(str(tmp_path / 'm.db'))
    MilvusIndex(client, 'kb', 16).add(unit_vectors(4, 16, 0))
    with pytest.raises(MilvusIndexError, match='16-dim vectors.*milvus_collection'):
        MilvusIndex(client, 'kb', 32)


def test_a_server_collection_above_exact_search_max_chunks_goes_approximate(milvus_server):
    vectors, queries = unit_vectors(2000, 32, 0), unit_vectors(50, 32, 1)
    index = MilvusIndex(connect(milvus_server), 'big', 32, uri=milvus_server, exact_max_rows=500)
    index.sync([FileRows(f'doc{i}.md', 'sha', i * 100, 100) for i in range(20)], [None] * 2000, vectors)
    assert index.client.describe_index('big', 'vector')['index_type'] == 'HNSW'
    exact = FaissIndex(32)
    exact.add(vectors)
    found, truth = index.search(queries, 10)[1], exact.search(queries, 10)[1]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found.tolist(), truth.tolist())])
    assert recall >= 0.95
    assert index.recall_at_10 is not None and index.recall_at_10 >= 0.95  # measured at build, for the report


def test_bad_milvus_uri_names_it_and_says_what_to_do(tmp_path, embedder):
    not_a_folder = tmp_path / 'milvus.db'
    not_a_folder.write_text('not milvus')
    builder = FeatureStoreBuilder(milvus_config(not_a_folder, chunk_size=128, chunk_overlap=16), embedder,
                                  progress=False)
    with pytest.raises(StoreError, match=r"milvus\.db.*milvus_uri"):
        builder.build(make_repo(tmp_path / 'repo'), tmp_path / 'work')
    assert not (tmp_path / 'work' / 'CURRENT').exists()  # nothing half-published


def test_incremental_builds_upsert_and_delete_by_file(tmp_path, embedder):
    uri = tmp_path / 'milvus.db'
    builder = FeatureStoreBuilder(milvus_config(uri, chunk_size=128, chunk_overlap=16), embedder, progress=False)
    repo, work = make_repo(tmp_path / 'repo'), tmp_path / 'work'
    first = builder.build(repo, work)
    store = FeatureStore.load(work, embedder)
    assert isinstance(store.dense, MilvusIndex) and not (store.folder / FaissIndex.FILE).exists()
    assert store.dense.rows_in_collection() == first.chunks == len(store.chunks)
    assert store.search('飞书的加密密钥填在哪里', k=1)[0].chunk.source == 'zh/飞书.md'
    install = store.manifest.files['install.md']
    install_ids = _ids_of(store.dense, FileRows('install.md', install.sha256, install.first, install.count))
    del store

    (repo / 'notes.txt').write_text('Rebuild with --rebuild. GBK files are decoded too.\n', encoding='utf-8')
    (repo / 'new.md').write_text('# FAQ\n\nCUDA out of memory: use a smaller local model.\n', encoding='utf-8')
    (repo / 'zh/飞书.md').unlink()
    second = builder.build(repo, work)
    assert sorted(second.indexed) == ['new.md', 'notes.txt'] and second.deleted == ['zh/飞书.md']
    store = FeatureStore.load(work, embedder)
    per_file = {s: store.dense.rows_in_collection([FileRows(s, r.sha256, r.first, r.count).key])
                for s, r in store.manifest.files.items()}
    assert per_file == {s: r.count for s, r in store.manifest.files.items()}
    assert store.dense.rows_in_collection() == second.chunks == len(store.chunks)  # old rows gone
    # The unchanged file kept its rows in Milvus (same ids), even though its row numbers may move.
    again = store.manifest.files['install.md']
    assert _ids_of(store.dense, FileRows('install.md', again.sha256, again.first, again.count)) == install_ids
    assert store.search('CUDA out of memory', k=1)[0].chunk.source == 'new.md'
    assert all(h.chunk.source != 'zh/飞书.md' for h in store.search('飞书的加密密钥填在哪里', k=5))
    # The texts are in Milvus too: a process without the chunk file can read what it cites.
    hit = store.search('CUDA out of memory', k=1)[0]
    assert store.dense.fetch([hit.row]) == [{'id': store.dense.fetch([hit.row])[0]['id'], 'source': 'new.md',
                                             'anchor': hit.chunk.anchor, 'text': hit.chunk.text}]


def _ids_of(index: MilvusIndex, rows: FileRows) -> list[str]:
    found = index.client.query(index.collection, filter=f'file_key == "{rows.key}"', output_fields=['id'])
    return sorted(e['id'] for e in found)


def test_a_store_whose_collection_lost_rows_or_was_dropped_says_build_again(tmp_path, embedder):
    uri = tmp_path / 'milvus.db'
    builder = FeatureStoreBuilder(milvus_config(uri, chunk_size=128, chunk_overlap=16), embedder, progress=False)
    builder.build(make_repo(tmp_path / 'repo', {'a.md': DOCS['install.md']}), tmp_path / 'work')
    store = FeatureStore.load(tmp_path / 'work', embedder)
    client = store.dense.client
    client.delete('huixiangdou', filter='position == 0')  # rows lost behind the store's back
    with pytest.raises(StoreError, match=r"holds \d+ of this store's \d+ rows.*feature_store"):
        FeatureStore.load(tmp_path / 'work', embedder)
    client.drop_collection('huixiangdou')
    client.close()
    with pytest.raises(StoreError, match=r"no collection 'huixiangdou'.*feature_store"):
        FeatureStore.load(tmp_path / 'work', embedder)
    assert not connect(str(uri)).has_collection('huixiangdou')  # loading did not create an empty one


def test_sample_in_milvus_decides_and_ranks_like_faiss(tmp_path, sample_store, sample_feature_store, embedder):
    # The FAISS sample workdir, built again into Milvus: every file is unchanged, so the same vectors
    # and the same calibrated reject model are reused and only the dense index differs.
    work = tmp_path / 'work'
    shutil.copytree(sample_store[0], work)
    report = FeatureStoreBuilder(milvus_config(tmp_path / 'milvus.db'), embedder,
                                 progress=False).build(REPO_ROOT / 'repodir', work)
    assert report.new_chunks == 0
    milvus = FeatureStore.load(work, embedder)
    assert isinstance(milvus.dense, MilvusIndex)
    faiss_store = sample_feature_store
    good = json.loads((REPO_ROOT / 'resource/good_questions.json').read_text(encoding='utf-8'))[:30]
    bad = json.loads((REPO_ROOT / 'resource/bad_questions.json').read_text(encoding='utf-8'))[:30]
    questions = good + bad
    m_features, f_features = milvus.featurize(questions), faiss_store.featurize(questions)
    m_scores = milvus.reject_model.score([f.evidence for f in m_features])
    f_scores = faiss_store.reject_model.score([f.evidence for f in f_features])
    np.testing.assert_allclose(m_scores, f_scores, rtol=0, atol=1e-6)
    threshold = faiss_store.decision_threshold()
    assert milvus.decision_threshold() == threshold
    assert ((m_scores >= threshold) == (f_scores >= threshold)).all()
    for m, f in zip(m_features[:len(good)], f_features[:len(good)]):
        assert [h.chunk.reference for h in milvus.search(m, k=3)] == \
               [h.chunk.reference for h in faiss_store.search(f, k=3)]
