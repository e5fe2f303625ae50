"""A synthetic knowledge base for scale benchmarks: mixed Chinese/English technical chunks, their BM25
words, and an embedding per chunk, generated in seconds per 100k chunks without any model.

It generates and writes stores; measuring them is the benchmarks' job (bench_scale.py, bench_milvus.py).
Vectors are drawn around topic centres (as real embeddings cluster by subject), not uniformly: uniform
random vectors in 384 dimensions have no neighbours worth the name, which no real corpus looks like.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np

from huixiangdou.primitive.chunk import Chunk

DIMENSION = 384
MODEL_ID = 'synthetic-random-384'
TOPICS = 2000
# Spread of a chunk around its topic centre: cosines within a topic ~0.5, across topics ~0.
NOISE = 1.0

_ZH = ('安装', '配置', '模型', '推理', '量化', '训练', '数据集', '部署', '显存', '版本', '依赖', '编译',
       '接口', '服务', '日志', '报错', '权限', '集群', '节点', '缓存', '索引', '检索', '向量', '文档',
       '机器人', '群聊', '飞书', '微信', '插件', '参数', '阈值', '精度', '延迟', '吞吐', '镜像', '容器',
       '环境变量', '命令行', '脚本', '升级', '回滚', '备份', '迁移', '调度', '分布式', '并行', '算子',
       '内核', '驱动', '显卡', '内存', '磁盘', '网络', '端口', '证书', '认证', '令牌', '限流', '重试')
_EN = ('torch', 'cuda', 'docker', 'config', 'python', 'pip', 'install', 'error', 'timeout', 'faiss',
       'milvus', 'bm25', 'embedding', 'tokenizer', 'checkpoint', 'batch', 'gpu', 'cpu', 'api', 'http',
       'json', 'yaml', 'linux', 'kernel', 'driver', 'onnx', 'tensorrt', 'lmdeploy', 'vllm', 'mmpose',
       'mmdet', 'opencompass', 'llama', 'qwen', 'internlm', 'lora', 'rerank', 'chunk', 'index', 'query')
_GLUE = ('的', '在', '时', '后', '请', '使用', '需要', '可以', '如果', '出现', '设置', '修改', '检查')
RARE_WORDS = 50_000   # synthetic identifiers (function names, error codes), Zipf-distributed
# Common terms: the words above and two-word compounds of the Chinese ones ("模型量化", "集群部署").
_COMMON = (*_ZH, *_EN, *(a + b for a in _ZH for b in _ZH if a != b))[:3000]


def _rare_word(i: int) -> str:
    return f'{("cfg", "err", "op", "api", "mod")[i % 5]}_{i:05d}'


def vocabulary() -> list[str]:
    """Every word a chunk can use: common Chinese and English terms, glue, then rare identifiers."""
    return [*_COMMON, *_GLUE, *(_rare_word(i) for i in range(RARE_WORDS))]


def chunk_words(n: int, seed: int = 0, words_per_chunk: int = 40) -> list[list[str]]:
    """The words of `n` chunks (what the tokenizer would return): common terms, glue and rare ids."""
    vocab = vocabulary()
    common = len(_COMMON)
    rng = np.random.default_rng(seed)
    out: list[list[str]] = []
    step = 50_000
    for start in range(0, n, step):
        m = min(step, n - start)
        ids = rng.integers(0, common, size=(m, words_per_chunk))
        # Every fourth word a glue word, every eighth a rare identifier (Zipf: a few are frequent).
        ids[:, 1::4] = common + rng.integers(0, len(_GLUE), size=ids[:, 1::4].shape)
        rare = np.minimum(rng.zipf(1.3, size=ids[:, 3::8].shape) - 1, RARE_WORDS - 1)
        ids[:, 3::8] = common + len(_GLUE) + rare
        out.extend([[vocab[i] for i in row] for row in ids.tolist()])
    return out


def chunk_text(words: list[str]) -> str:
    """Text as a document would hold it: Chinese words run together, English ones spaced."""
    parts: list[str] = []
    for w in words:
        if parts and (w.isascii() or parts[-1].isascii()):
            parts.append(' ')
        parts.append(w)
    return ''.join(parts) + '。'


def chunks(n: int, seed: int = 0, files: int | None = None) -> tuple[list[Chunk], list[list[str]]]:
    """`n` chunks spread over `files` source files (default: 100 chunks a file) and their BM25 words."""
    words = chunk_words(n, seed)
    per_file = max(1, n // (files or max(1, n // 100)))
    out = [Chunk(text=chunk_text(w), source=f'docs/part{i // per_file:05d}.md', anchor=f'section {i % per_file}')
           for i, w in enumerate(words)]
    return out, [[w.lower() for w in ws] for ws in words]


def _centres(dimension: int, seed: int) -> np.ndarray:
    return np.random.default_rng(10_000 + seed).standard_normal((TOPICS, dimension)).astype(np.float32)


def _around(centres: np.ndarray, topics: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    v = centres[topics] + NOISE * rng.standard_normal((len(topics), centres.shape[1]), dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def vectors(n: int, dimension: int = DIMENSION, seed: int = 0) -> np.ndarray:
    """`n` L2-normalised float32 vectors, each near one of TOPICS random topic centres."""
    centres = _centres(dimension, seed)
    rng = np.random.default_rng(seed + 1)
    out = np.empty((n, dimension), dtype=np.float32)
    step = 100_000
    for start in range(0, n, step):
        m = min(step, n - start)
        out[start:start + m] = _around(centres, rng.integers(0, TOPICS, size=m), rng)
    return out


def query_vectors(n: int, dimension: int = DIMENSION, seed: int = 1, corpus_seed: int = 0) -> np.ndarray:
    """`n` query vectors drawn like the corpus of `corpus_seed`'s (same topic centres), not stored in it."""
    rng = np.random.default_rng(1_000_000 + seed)
    return _around(_centres(dimension, corpus_seed), rng.integers(0, TOPICS, size=n), rng)


class SyntheticEmbedder:
    """Stands in for the embedding model where model cost is not the point: a text's vector is drawn
    around a topic chosen by the text's hash, like the corpus's vectors."""

    def __init__(self, dimension: int = DIMENSION, seed: int = 0):
        self.dimension = dimension
        self.model_id = MODEL_ID
        self.max_tokens = 512
        self._centres = _centres(dimension, seed)

    def warm_up(self) -> None:
        pass

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for i, text in enumerate(texts):
            h = int.from_bytes(hashlib.sha256(text.encode('utf-8')).digest()[:8], 'little')
            rng = np.random.default_rng(h)
            out[i] = _around(self._centres, np.array([h % TOPICS]), rng)[0]
        return out


def write_store(work_dir: Path, n: int, seed: int = 0, dimension: int = DIMENSION,
                exact_search_max_chunks: int = 200_000) -> dict:
    """Write a store of `n` synthetic chunks to `work_dir` without any model (vectors from `vectors`);
    returns the build timings in seconds: {"generate", "dense", "sparse", "save", "recall_at_10"}."""
    from huixiangdou.primitive.sparse_index import SparseIndex
    from huixiangdou.service.feature_store.store import FeatureStore, Manifest, make_dense_index
    from huixiangdou.service.feature_store.store_files import FileRecord

    t0 = time.perf_counter()
    chunk_list, tokens = chunks(n, seed)
    matrix = vectors(n, dimension, seed)
    files: dict[str, FileRecord] = {}
    for row, c in enumerate(chunk_list):
        record = files.get(c.source)
        if record is None:
            files[c.source] = FileRecord(hashlib.sha256(c.source.encode()).hexdigest(), 0, row, 1)
        else:
            record.count += 1
    manifest = Manifest(embedding_model=MODEL_ID, dimension=dimension, chunk_size=512, chunk_overlap=0,
                        files=files, built_at=time.strftime('%Y-%m-%dT%H:%M:%S%z'))
    t1 = time.perf_counter()
    dense = make_dense_index(matrix, exact_search_max_chunks)
    t2 = time.perf_counter()
    sparse = SparseIndex(tokens)
    t3 = time.perf_counter()
    store = FeatureStore(manifest, chunk_list, matrix, sparse, SyntheticEmbedder(dimension, seed), dense=dense)
    store.save(Path(work_dir))
    t4 = time.perf_counter()
    return {'generate': t1 - t0, 'dense': t2 - t1, 'sparse': t3 - t2, 'save': t4 - t3,
            'dense_index': dense.describe(), 'recall_at_10': store.manifest.dense_recall_at_10}
