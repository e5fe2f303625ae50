"""The embedding cache on a real SQLite file: each distinct text is encoded once, across instances."""
from __future__ import annotations

import numpy as np

from huixiangdou.primitive.embedding_cache import EmbeddingCache


class CountingEncoder:
    def __init__(self):
        self.seen: list[str] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.seen.extend(texts)
        return np.array([[len(t), sum(map(ord, t)) % 97, 1.0] for t in texts], dtype=np.float32)


def test_distinct_texts_are_encoded_once_and_come_back_in_order(tmp_path):
    enc = CountingEncoder()
    cache = EmbeddingCache(tmp_path / 'c.sqlite', 'm1', 3)
    out = cache.embed(['安装', 'pip install', '安装'], enc)
    assert enc.seen == ['安装', 'pip install']
    np.testing.assert_array_equal(out[0], out[2])
    assert out[1][0] == len('pip install')
    cache.close()

    again = EmbeddingCache(tmp_path / 'c.sqlite', 'm1', 3)
    out2 = again.embed(['pip install', '新的'], enc)
    assert enc.seen[2:] == ['新的']
    np.testing.assert_array_equal(out2[0], out[1])
    assert (again.hits, again.misses) == (1, 1)


def test_another_model_never_sees_these_vectors(tmp_path):
    enc = CountingEncoder()
    EmbeddingCache(tmp_path / 'c.sqlite', 'm1', 3).embed(['text'], enc)
    EmbeddingCache(tmp_path / 'c.sqlite', 'm2', 3).embed(['text'], enc)
    assert enc.seen == ['text', 'text']


def test_a_damaged_cache_file_is_moved_aside(tmp_path):
    path = tmp_path / 'c.sqlite'
    path.write_bytes(b'this is not a database' * 200)
    enc = CountingEncoder()
    cache = EmbeddingCache(path, 'm1', 3)
    assert cache.embed(['a'], enc).shape == (1, 3)
    assert list(tmp_path.glob('c.sqlite.damaged-*'))
