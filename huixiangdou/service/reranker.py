"""Relevance scores for (query, passage) pairs from a cross-encoder: a local sentence-transformers model
run in a worker thread, or an OpenAI/SiliconCloud-style /v1/rerank API. It does not sort or cut passages.
"""
from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
from loguru import logger

from huixiangdou.config import ConfigError
from huixiangdou.primitive.http_retry import RetryPolicy, TransientFailure, parse_retry_after, send_with_retry, \
    transient_status

HUB_ID = re.compile(r'^[\w.-]+/[\w.-]+$')


class RerankError(RuntimeError):
    """The reranker could not load or the rerank API kept failing; the message says what to change."""


class Reranker:
    """Score passages against a query; higher is more relevant, one score per passage, input order kept.

    Usage:
        reranker = Reranker('maidalun1020/bce-reranker-base_v1')      # or a folder
        reranker = Reranker('https://api.siliconflow.cn/v1/rerank', api_token='sk-...',
                             api_model='BAAI/bge-reranker-v2-m3')
        reranker.warm_up()                     # loads a local model; nothing to load for an API
        scores = await reranker.rerank('如何撤回消息?', ['回复“撤回”即可撤回答案', 'GPU 显存要求'])
    """

    def __init__(self, model_path: str, api_token: str = '', api_model: str = 'BAAI/bge-reranker-v2-m3',
                 batch_size: int = 32, max_length: int = 512, timeout: float = 30.0,
                 max_retries: int = 3, retry_base_delay: float = 0.5, retry_max_delay: float = 30.0,
                 queue_size: int = 16, device: str | None = None):
        # Settings that come from config.ini are ConfigError (a ValueError): main prints them in one line.
        if not model_path:
            raise ConfigError('Reranker needs a model_path; to run without reranking leave [feature_store] '
                             'reranker_model_path empty (or set [worker] enable_rerank = 0) and do not build one')
        for name, value, low in (('batch_size', batch_size, 1), ('max_length', max_length, 8),
                                 ('max_retries', max_retries, 0), ('queue_size', queue_size, 1)):
            if value < low:
                raise ValueError(f'{name} must be >= {low}, got {value}')
        if timeout <= 0:
            raise ValueError(f'timeout must be > 0 seconds, got {timeout}')
        self.remote = model_path.startswith(('http://', 'https://'))
        if self.remote and not model_path.rstrip('/').endswith('/rerank'):
            raise ConfigError(f'a rerank API URL must end in /rerank (e.g. https://api.siliconflow.cn/v1/rerank), '
                             f'got {model_path!r}')
        if not self.remote and not Path(model_path).expanduser().exists() and not HUB_ID.match(model_path):
            raise ConfigError(f'reranker model {model_path!r} is neither a folder nor a Hugging Face id: fix '
                             '[feature_store] reranker_model_path in config.ini')
        self.model_path = model_path.rstrip('/') if self.remote else model_path
        self.api_model = api_model
        self.batch_size = batch_size
        self.max_length = max_length
        self.timeout = timeout
        self.max_retries = max_retries
        # Each try is bounded by `timeout`, so a rerank takes at most max_retries + 1 of them plus the waits.
        self.retry = RetryPolicy.from_retries(max_retries, retry_base_delay, retry_max_delay)
        self.queue_size = queue_size
        self.device = device
        self._api_token = api_token
        self._model = None
        self._pending = 0
        # One thread: torch already uses every core per call, and one worker keeps calls in order.
        self._executor: ThreadPoolExecutor | None = None

    def warm_up(self) -> None:
        """Load the local cross-encoder (seconds); a no-op for an API."""
        if self.remote or self._model is not None:
            return
        from sentence_transformers import CrossEncoder

        local = Path(self.model_path).expanduser()
        try:
            model = CrossEncoder(str(local) if local.exists() else self.model_path, max_length=self.max_length,
                                 device=self.device)
        except Exception as exc:  # boundary: any loader failure becomes one clear error
            raise RerankError(f'could not load reranker {self.model_path!r}: {exc}. Without network a Hugging '
                              'Face id only works if it is already in the local cache; point '
                              '[feature_store] reranker_model_path at a folder.') from exc
        if model.num_labels != 1:
            raise RerankError(f'{self.model_path!r} has {model.num_labels} output labels, so it is a classifier, '
                              'not a reranker: use a cross-encoder such as maidalun1020/bce-reranker-base_v1')
        self._model = model
        logger.info('reranker {} loaded (max_length={})', self.model_path, self.max_length)

    async def rerank(self, query: str, texts: list[str]) -> list[float]:
        """One relevance score per text, in the order of `texts`."""
        if not texts:
            return []
        if self.remote:
            return await self._rerank_remote(query, texts)
        if self._pending >= self.queue_size:
            raise RerankError(f'reranker busy: {self._pending} requests already waiting; try again shortly')
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix='reranker')
        self._pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._predict, query, texts)
        finally:
            self._pending -= 1

    def _predict(self, query: str, texts: list[str]) -> list[float]:
        self.warm_up()
        scores = self._model.predict([(query, text) for text in texts], batch_size=self.batch_size,
                                     show_progress_bar=False, convert_to_numpy=True)
        return [float(s) for s in scores.reshape(-1)]

    async def _rerank_remote(self, query: str, texts: list[str]) -> list[float]:
        headers = {'Authorization': f'Bearer {self._api_token}'} if self._api_token else {}
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        scores: list[float] = []
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as http:
            # Cross-encoder scores are per pair, so batches can be scored apart and joined.
            for start in range(0, len(texts), self.batch_size):
                scores.extend(await self._score_batch(http, query, texts[start:start + self.batch_size]))
        logger.debug('reranked {} passages through {}', len(texts), self.model_path)
        return scores

    async def _score_batch(self, http: aiohttp.ClientSession, query: str, texts: list[str]) -> list[float]:
        body = {'model': self.api_model, 'query': query, 'documents': texts, 'top_n': len(texts),
                'return_documents': False}
        payload = await self._post(http, body)
        scores: list[float | None] = [None] * len(texts)
        try:
            for item in payload['results']:
                index = int(item['index'])
                if not 0 <= index < len(texts):
                    raise ValueError(f'index {index} out of range')
                scores[index] = float(item['relevance_score'])
        except (KeyError, TypeError, ValueError) as exc:
            raise RerankError(f'rerank API {self.model_path} answered in an unknown shape ({exc}): it must '
                              'return {"results": [{"index", "relevance_score"}]}') from None
        if None in scores:
            raise RerankError(f'rerank API {self.model_path} scored {len(texts) - scores.count(None)} of '
                              f'{len(texts)} passages: check that it honours top_n')
        return scores

    async def _post(self, http: aiohttp.ClientSession, body: dict) -> dict:
        try:
            return await send_with_retry(self.retry, lambda: self._post_once(http, body),
                                         service=f'rerank API {self.model_path}')
        except TransientFailure as failure:
            raise RerankError(f'rerank API {self.model_path} failed {failure.attempts} times, last with '
                              f'{failure.error}: try again later, or leave [feature_store] reranker_model_path '
                              'empty to skip reranking') from None

    async def _post_once(self, http: aiohttp.ClientSession, body: dict) -> dict:
        try:
            async with http.post(self.model_path, json=body) as resp:
                if resp.status == 200:
                    return await resp.json(content_type=None)
                detail = (await resp.text(errors='replace'))[:200]
                if self._api_token:
                    detail = detail.replace(self._api_token, '***')
                # SiliconCloud and the OpenAI-style rerank APIs document 500 as a transient server error.
                if not transient_status(resp.status, transient_500=True):
                    raise RerankError(self._refusal(resp.status, detail))
                raise TransientFailure(RerankError(f'HTTP {resp.status} {detail}'),
                                       parse_retry_after(resp.headers.get('Retry-After')))
        except TimeoutError:
            # Before ClientConnectionError, which aiohttp's timeouts also subclass.
            raise TransientFailure(RerankError(f'no answer within {self.timeout:g}s')) from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise TransientFailure(RerankError(f'{exc.__class__.__name__}: {exc}')) from None
        except ValueError as exc:  # a 200 whose body is not JSON
            raise RerankError(f'rerank API {self.model_path} answered with something not JSON: {exc}') from None

    def _refusal(self, status: int, detail: str) -> str:
        if status in (401, 403):
            return (f'rerank API {self.model_path} refused the key (HTTP {status} {detail}): set [feature_store] '
                    'api_token or the HUIXIANGDOU_API_TOKEN environment variable')
        return f'rerank API {self.model_path} refused the request (HTTP {status} {detail})'
