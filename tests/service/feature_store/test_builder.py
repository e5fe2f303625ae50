"""Building, saving, loading and incrementally updating the feature store with the real model."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from huixiangdou.config import FeatureStoreConfig
from huixiangdou.primitive.e5_embedder import E5Embedder
from huixiangdou.service.feature_store.builder import BuildError, FeatureStoreBuilder
from huixiangdou.service.feature_store.store import CURRENT, FeatureStore, StoreError

DOCS = {
    'install.md': '# Install\n\nCreate a virtualenv and run bash install.sh. Torch is pinned to 2.13.0.\n\n'
                  '# Ports\n\nThe LLM server listens on port 8888; change local_llm_bind_port if it is taken.\n',
    'zh/飞书.md': '# 飞书群机器人\n\n在开放平台创建应用，填写 app_id、app_secret 和加密密钥 encrypt_key。\n'
                 '事件回调地址需要公网可达，收到 url_verification 时原样返回 challenge。\n',
    'notes.txt': 'Rebuild the index with --rebuild when you change the embedding model.\n',
}


def make_repo(root: Path, docs: dict[str, str] = DOCS) -> Path:
    for name, text in docs.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding='utf-8')
    return root


@pytest.fixture
def builder(embedder):
    return FeatureStoreBuilder(FeatureStoreConfig(chunk_size=128, chunk_overlap=16), embedder, progress=False)


def test_build_save_load_and_search(tmp_path, builder, embedder):
    repo, work = make_repo(tmp_path / 'repo'), tmp_path / 'work'
    report = builder.build(repo, work)
    assert sorted(report.indexed) == sorted(DOCS) and report.chunks >= 3
    store = FeatureStore.load(work, embedder)
    assert len(store.chunks) == report.chunks
    hits = store.search('飞书的加密密钥填在哪里', k=2)
    assert hits[0].chunk.source == 'zh/飞书.md' and hits[0].chunk.anchor == '飞书群机器人'
    assert store.search('which port does the LLM server use', k=1)[0].chunk.reference == 'install.md#Ports'
    manifest = json.loads((store.folder / 'manifest.json').read_text())
    assert manifest['embedding_model'] == embedder.model_id and manifest['dimension'] == 384
    assert set(manifest['files']) == set(DOCS)


def test_incremental_rebuild_touches_only_changed_files(tmp_path, builder):
    repo, work = make_repo(tmp_path / 'repo'), tmp_path / 'work'
    first = builder.build(repo, work)
    (repo / 'notes.txt').write_text('Rebuild with --rebuild. Also: GBK files are decoded.\n', encoding='utf-8')
    (repo / 'new.md').write_text('# FAQ\n\nCUDA out of memory: use a smaller local model.\n', encoding='utf-8')
    (repo / 'install.md').unlink()
    second = builder.build(repo, work)
    assert sorted(second.indexed) == ['new.md', 'notes.txt']
    assert second.reused == ['zh/飞书.md'] and second.deleted == ['install.md']
    assert second.new_chunks == 2
    third = builder.build(repo, work, rebuild=True)
    assert len(third.indexed) == 3 and third.reused == [] and third.chunks == second.chunks
    assert first.chunks != second.chunks or first.indexed != second.indexed


def test_store_built_with_another_model_says_rebuild(tmp_path, builder):
    repo, work = make_repo(tmp_path / 'repo'), tmp_path / 'work'
    builder.build(repo, work)
    with pytest.raises(StoreError, match='--rebuild') as err:
        FeatureStore.load(work, E5Embedder())
    assert 'all-MiniLM-L6-v2' in str(err.value)


def test_missing_store_says_how_to_build(tmp_path, embedder):
    with pytest.raises(StoreError, match='python -m huixiangdou.service.feature_store'):
        FeatureStore.load(tmp_path, embedder)


def test_empty_repo_is_an_error(tmp_path, builder):
    (tmp_path / 'repo').mkdir()
    with pytest.raises(BuildError, match='no supported documents'):
        builder.build(tmp_path / 'repo', tmp_path / 'work')


def test_leftover_partial_write_does_not_break_loading_and_is_cleaned_at_the_next_build(tmp_path, builder,
                                                                                        embedder):
    repo, work = make_repo(tmp_path / 'repo'), tmp_path / 'work'
    builder.build(repo, work)
    before = (work / CURRENT).read_text()
    # What a crash in the middle of saving leaves behind: a half-written version folder (any age: only a
    # build holding the workdir lock writes one, so when we hold the lock it is debris).
    partial = work / '.store-20990101T000000-dead00.partial'
    partial.mkdir()
    (partial / 'chunks.jsonl').write_text('{"text": "half', encoding='utf-8')
    assert len(FeatureStore.load(work, embedder).chunks) > 0
    builder.build(repo, work, rebuild=True)
    assert not partial.exists() and (work / CURRENT).read_text() != before


def test_leftover_pointer_and_report_files_are_removed_by_the_next_build(tmp_path, builder, embedder):
    repo, work = make_repo(tmp_path / 'repo'), tmp_path / 'work'
    builder.build(repo, work)
    # What a crash between writing and renaming CURRENT (or report.json) leaves behind.
    leftovers = [work / f'.{CURRENT}.{"ab" * 16}.tmp', work / f'.report.json.{"cd" * 16}.tmp']
    for path in leftovers:
        path.write_text('store-20990101T000000-dead00\n', encoding='utf-8')
    assert len(FeatureStore.load(work, embedder).chunks) > 0
    builder.build(repo, work)
    assert not any(path.exists() for path in leftovers)
    assert sorted(p.name for p in work.iterdir() if p.name.startswith('.') and p.name != '.build.lock') == []


def test_a_build_waits_for_the_running_one_and_keeps_its_files(tmp_path, builder, embedder):
    """A build started while another holds the workdir waits, then starts from what that one published."""
    repo, work = make_repo(tmp_path / 'repo'), tmp_path / 'work'
    builder.build(repo, work)
    done = threading.Event()
    # Another process's build holds the lock (a real second process, as with two CLI runs).
    holder = subprocess.Popen([sys.executable, '-c', (
        'import sys, time; from huixiangdou.service.feature_store.store import workdir_lock\n'
        'with workdir_lock(sys.argv[1]):\n    print("held", flush=True); time.sleep(float(sys.argv[2]))'),
        str(work), '3'], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == 'held'
    (repo / 'late.md').write_text('# Late\n\nThe late file explains the retry budget of the server.\n',
                                  encoding='utf-8')

    def incremental():
        builder.build(repo, work)
        done.set()

    thread = threading.Thread(target=incremental)
    thread.start()
    assert not done.wait(1.0), 'the build must wait while another process holds the workdir'
    holder.wait()
    thread.join(120)
    assert done.is_set()
    store = FeatureStore.load(work, embedder)
    assert 'late.md' in store.manifest.files and 'install.md' in store.manifest.files


def test_concurrent_saves_always_leave_current_naming_a_loadable_store(tmp_path, builder, embedder):
    repo, work = make_repo(tmp_path / 'repo'), tmp_path / 'work'
    builder.build(repo, work)
    store = FeatureStore.load(work, embedder)
    errors = []

    def save():
        try:
            store.save(work)
        except Exception as exc:  # collected: the assertion below names it
            errors.append(exc)

    for _ in range(10):
        threads = [threading.Thread(target=save) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert (work / (work / CURRENT).read_text().strip() / 'manifest.json').is_file()
    assert not errors
    assert len(FeatureStore.load(work, embedder).chunks) == len(store.chunks)
    # Pruning keeps the published version and the one it replaced, nothing older.
    assert len(list(work.glob('store-*'))) == 2


def test_killed_build_leaves_previous_store_loadable(tmp_path, builder, embedder):
    repo, work = make_repo(tmp_path / 'repo'), tmp_path / 'work'
    builder.build(repo, work)
    before = (work / CURRENT).read_text()
    # A bigger corpus so the second build is still embedding when it is killed.
    for i in range(60):
        (repo / f'bulk{i}.md').write_text(f'# Part {i}\n\n' + 'Some text about huixiangdou. ' * 400,
                                          encoding='utf-8')
    proc = subprocess.Popen([sys.executable, '-m', 'huixiangdou.service.feature_store', '--config',
                             str(Path(__file__).resolve().parents[3] / 'config.ini'), '--repo-dir', str(repo),
                             '--work-dir', str(work), '--rebuild'],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    seen = ''
    while time.time() < deadline and 'embed' not in seen:
        piece = proc.stderr.read(64)
        if not piece:  # the build ended before embedding: nothing to kill, the test cannot show anything
            break
        seen += piece
    assert 'embed' in seen, f'the build never reached embedding: {seen[-2000:]}'
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (work / CURRENT).read_text() == before
    assert len(FeatureStore.load(work, embedder).chunks) > 0


def test_rebuild_without_question_files_keeps_the_calibration(tmp_path, builder, embedder):
    repo, work = make_repo(tmp_path / 'repo'), tmp_path / 'work'
    (tmp_path / 'good.txt').write_text('which port does the LLM server use\nhow to rebuild the index\n')
    (tmp_path / 'bad.txt').write_text('lunch today?\nnice weather\n')
    builder.build(repo, work, good=tmp_path / 'good.txt', bad=tmp_path / 'bad.txt')
    calibrated = FeatureStore.read_manifest(work).reject_threshold
    assert calibrated is not None
    (repo / 'notes.txt').write_text('Changed notes about --rebuild.\n', encoding='utf-8')
    builder.build(repo, work)
    assert FeatureStore.read_manifest(work).reject_threshold == calibrated


def test_store_without_examples_uses_the_conservative_rule(tmp_path, builder, embedder):
    from huixiangdou.service.worker.reject import Reject
    repo, work = make_repo(tmp_path / 'repo'), tmp_path / 'work'
    report = builder.build(repo, work)
    assert report.calibration['model'] == 'rule'
    store = FeatureStore.load(work, embedder)
    reject = Reject(store)
    assert store.reject_score('nice weather today, lunch?').score < reject.threshold  # never "answer all"
    assert Reject(store, reject_throttle=0.3).threshold == 0.3


def test_manifest_of_another_format_says_rebuild(tmp_path, builder, embedder):
    repo, work = make_repo(tmp_path / 'repo'), tmp_path / 'work'
    builder.build(repo, work)
    manifest = FeatureStore.current_folder(work) / 'manifest.json'
    data = json.loads(manifest.read_text())
    data.update(format_version=99, new_field=1)
    manifest.write_text(json.dumps(data))
    with pytest.raises(StoreError, match='--rebuild'):
        FeatureStore.load(work, embedder)


def test_the_entity_graph_is_stored_with_each_version_and_unchanged_files_reuse_their_entities(tmp_path, builder,
                                                                                               embedder):
    import sqlite3

    from huixiangdou.primitive.entity_graph import FILE, EntityGraph

    repo, work = make_repo(tmp_path / 'repo'), tmp_path / 'work'
    first = builder.build(repo, work)
    store = FeatureStore.load(work, embedder)
    assert (store.folder / FILE).is_file() and first.graph['rows_reused'] == 0
    assert first.graph['entities'] == len(store.graph) > 0
    assert [m.name for m in store.graph.match('url_verification 收不到怎么办')] == ['url_verification']

    (repo / 'notes.txt').write_text('Rebuild with --rebuild; pip install faiss-cpu if faiss_index fails.\n')
    second = builder.build(repo, work)
    store = FeatureStore.load(work, embedder)
    unchanged = sum(r.count for name, r in store.manifest.files.items() if name != 'notes.txt')
    assert second.graph['rows_reused'] == unchanged > 0
    assert store.graph.match('faiss-cpu 装不上')[0].name == 'faiss-cpu'
    assert store.graph.match('url_verification')[0].chunks == 1   # reused rows keep their entities

    # The same graph as extracting every chunk afresh.
    fresh = EntityGraph.build(list(store.chunks))
    dump = lambda g: sorted(g._db.execute(  # noqa: E731
        'SELECT e.name, m.chunk, m.naming FROM mention m JOIN entity e ON e.id = m.entity').fetchall())
    assert dump(fresh) == dump(store.graph)

    # The graph is covered by the version's checksums: a damaged one is refused, never queried.
    store.graph.close()
    with sqlite3.connect(store.folder / FILE) as db:
        db.execute("UPDATE entity SET chunks = 99 WHERE name = 'url_verification'")
    with pytest.raises(StoreError, match='damaged|checksum'):
        FeatureStore.load(work, embedder)


def test_graph_weight_lifts_the_passages_naming_the_messages_entities(tmp_path, builder, embedder):
    docs = dict(DOCS, **{'tuning.md': '# Tuning\n\nSet `zq_window_frames` to 12 for smooth playback.\n'})
    work = tmp_path / 'work'
    builder.build(make_repo(tmp_path / 'repo', docs), work)
    store = FeatureStore.load(work, embedder)
    features = store.featurize(['zq_window_frames 设多少合适'])[0]
    assert [m.name for m in features.evidence.entities] == ['zq_window_frames']
    plain = {s.chunk.source: s.fused for s in store.search(features, k=10)}
    lifted = {s.chunk.source: s.fused for s in store.search(features, k=10, graph_weight=0.4)}
    assert lifted['tuning.md'] == pytest.approx(plain['tuning.md'] + 0.4)
    assert all(lifted[name] == pytest.approx(plain[name]) for name in plain if name != 'tuning.md')
    why = store.explain(features)
    assert why['entities'][0]['entity'] == 'zq_window_frames' and why['entities'][0]['found_in'].startswith('tuning.md')
