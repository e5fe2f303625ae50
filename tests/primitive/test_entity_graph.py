"""Entities of technical text and the knowledge base's entity graph, on real files of this repository."""
from __future__ import annotations

import sqlite3

import pytest

from huixiangdou.primitive.chunk import Chunk
from huixiangdou.primitive.entities import entities, entity_kinds
from huixiangdou.primitive.entity_graph import FILE, EntityGraph


@pytest.mark.parametrize('text, expected', [
    ('pip install mmcv-full 报 ModuleNotFoundError，`max_batch_size` 要改吗',
     ['mmcv-full', 'modulenotfounderror', 'max_batch_size']),
    ('lmdeploy serve api_server --server-port 23333 用 Qwen2-7B-Chat', ['api_server', '--server-port', 'qwen2-7b-chat']),
    ('yolov8 训练 fp16 config.py 里 train_cfg 怎么设', ['yolov8', 'fp16', 'config.py', 'train_cfg']),
    ("from lmdeploy import pipeline\npip install -U 'xtuner[deepspeed]'", ['lmdeploy', 'xtuner']),
    ('今天中午吃什么？下班一起去吃火锅', []),
    ('版本 1.2.3 在 2024-05-01 发布, see https://example.com', []),
])
def test_entities_of_mixed_chinese_and_code(text, expected):
    assert entities(text) == expected


def test_installed_and_imported_names_are_programs():
    kinds = entity_kinds('pip install opencompass\nimport mmengine\n$ xtuner train cfg.py --deepspeed zero2')
    assert kinds['opencompass'] == kinds['mmengine'] == 'package'
    assert kinds['xtuner'] == 'command' and kinds['--deepspeed'] == 'flag'


CHUNKS = [
    Chunk('pip install lmdeploy\nlmdeploy serve api_server model --server-port 23333', 'docs/serve.md', 'serve'),
    Chunk('`--server-port` 默认 23333；`--tp` 设置张量并行', 'docs/zh/serve.md', '参数'),
    Chunk('ModuleNotFoundError: No module named mmengine → pip install mmengine', 'docs/faq.md', 'FAQ'),
    Chunk('The quick brown fox jumps over the lazy dog.', 'docs/other.md', ''),
]


def test_graph_counts_links_and_finds_passages(tmp_path):
    graph = EntityGraph.build(CHUNKS)
    assert graph.total_chunks == 4
    matches = graph.match('lmdeploy 的 --server-port 怎么改')
    assert [m.name for m in matches] == ['lmdeploy', '--server-port']   # rarest first
    port = next(m for m in matches if m.name == '--server-port')
    assert (port.chunks, port.files) == (2, 2)
    assert graph.together(matches) == 2                    # both named in the first chunk
    rows = graph.chunks_sharing(matches)
    assert rows[0][0] == 0                                  # the chunk naming both comes first
    assert {r for r, _ in rows} == {0, 1}
    assert ('api_server', 1) in graph.neighbours('--server-port')
    # A plain word counts only where the documents install, import or run it.
    assert [m.name for m in graph.match('mmengine 装不上')] == ['mmengine']
    assert graph.match('the fox is quick') == []
    assert graph.match('今天吃什么') == []
    graph.save(tmp_path)
    again = EntityGraph.open(tmp_path)
    assert len(again) == len(graph) and again.match('--tp 是什么')[0].name == '--tp'


def test_reusing_rows_of_a_previous_graph_gives_the_same_graph(tmp_path):
    first = EntityGraph.build(CHUNKS)
    calls = []

    def reuse(row):
        calls.append(row)
        return first.row_entities(row, row + 1)[0] if row < 3 else None

    second = EntityGraph.build(CHUNKS, reuse=reuse)
    assert calls == [0, 1, 2, 3]
    dump = lambda g: sorted(g._db.execute(  # noqa: E731
        'SELECT e.name, m.chunk, m.naming FROM mention m JOIN entity e ON e.id = m.entity').fetchall())
    assert dump(first) == dump(second)
    assert first.row_entities(0, 1)[0] == {'lmdeploy': True, 'api_server': False, '--server-port': False}


def test_a_folder_without_a_graph_opens_as_none_and_a_damaged_one_raises(tmp_path):
    assert EntityGraph.open(tmp_path) is None
    (tmp_path / FILE).write_bytes(b'not a database at all' * 50)
    with pytest.raises(sqlite3.Error):
        EntityGraph.open(tmp_path)


@pytest.mark.parametrize('text', ['a-' * 2500, 'a.' * 2500, '`' * 5000, 'A' * 5000 + 'a', 'x1-' * 1700,
                                  ('ab' * 20 + '-') * 120, 'pip install ' * 400, '--a' * 1700, '\x00\ufffd' * 2000])
def test_crafted_text_gives_few_bounded_entities(text):
    found = entities(text)
    assert len(found) <= 2 and all(3 <= len(name) <= 48 for name in found)
