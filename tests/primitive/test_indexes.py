"""Dense (FAISS) and sparse (BM25) indexes, and the tokenizer they rely on."""
from __future__ import annotations

import numpy as np
import pytest

from huixiangdou.primitive.dense_index import FaissIndex
from huixiangdou.primitive.sparse_index import SparseIndex
from huixiangdou.primitive.tokenizer import is_chinese, tokenize


def test_tokenizer_segments_chinese_and_splits_identifiers():
    tokens = tokenize('怎么用 feature_store 重建索引？getTenantAccessToken 报错')
    assert '重建' in tokens and '索引' in tokens and '报错' in tokens
    assert {'feature_store', 'feature', 'store'} <= set(tokens)
    assert {'tenant', 'access', 'token'} <= set(tokens)
    assert '？' not in tokens and '怎么' not in tokens  # punctuation and stopwords dropped


def test_language_detection():
    assert is_chinese('请问飞书机器人怎么配置 webhook?')
    assert not is_chinese('How do I configure the Lark webhook?')
    # A Chinese user's own words decide, however long the English error they paste: a run of letters, digits
    # and punctuation counts once, as one word, against each ideograph.
    assert is_chinese('编 mmdeploy sdk 报 Your installed Caffe2 version uses cuDNN but I cannot find the cuDNN libraries')
    assert is_chinese("服务器连不上 huggingface，urllib3.exceptions.MaxRetryError: "
                      "HTTPSConnectionPool(host='cdn-lfs.huggingface.co', port=443) 有镜像吗")
    assert not is_chinese("RuntimeError: CUDA error: out of memory (tried to allocate 2.00 GiB) at step 3")
    assert not is_chinese('')


def test_faiss_round_trip_and_cosine(tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = FaissIndex(8)
    index.add(vectors)
    index.save(tmp_path)
    loaded = FaissIndex.load(tmp_path)
    scores, ids = loaded.search(vectors[7:8], k=3)
    assert len(loaded) == 50 and ids[0, 0] == 7 and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match='shape'):
        index.add(np.zeros((2, 4), dtype=np.float32))


def test_empty_faiss_index_returns_no_ids():
    scores, ids = FaissIndex(4).search(np.ones((1, 4), dtype=np.float32), k=2)
    assert (ids == -1).all()


def test_bm25_ranks_chinese_documents_and_round_trips(tmp_path):
    docs = ['安装 茴香豆 需要 先 创建 虚拟环境', '飞书 机器人 的 加密 密钥 在 开放平台 设置',
            '重建 索引 使用 rebuild 参数', '端口 8888 被 占用 时 修改 配置']
    index = SparseIndex([tokenize(d) for d in docs])
    _, ids = index.search(tokenize('飞书机器人加密密钥在哪里设置'), k=2)
    assert ids[0] == 1
    index.save(tmp_path)
    again = SparseIndex.load(tmp_path)
    assert again.search(tokenize('rebuild 索引'), k=1)[1][0] == 2


def test_coverage_weighs_rare_and_unseen_terms():
    index = SparseIndex([['lark', 'webhook', 'secret'], ['lark', 'group'], ['lark', 'install']])
    assert index.coverage(['webhook', 'secret'], 0) == pytest.approx(1.0)
    # 'lark' is everywhere (low IDF), 'pizza' never seen (max IDF): coverage stays low.
    assert index.coverage(['lark', 'pizza'], 0) < 0.3
    assert index.coverage([], 0) == 0.0
    assert index.coverage(['webhook'], 0) == pytest.approx(0.5)  # one word is weak evidence


def test_bm25_with_no_match_returns_nothing():
    index = SparseIndex([['a', 'b'], ['c']])
    scores, ids = index.search(['zzz'], k=2)
    assert len(ids) == 0
