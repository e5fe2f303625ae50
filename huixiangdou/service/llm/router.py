"""Choose which backend answers a conversation (local, remote or auto), trim it to that backend's
input limit, and fall back to the other backend when the first one fails.

It does not speak HTTP; llm_server_hybrid.py turns its results and errors into responses.
"""
from __future__ import annotations

from typing import AsyncIterator

from loguru import logger

from huixiangdou.service.llm.backend import (BackendUnavailable, BadRequest, ChatMessage, Chunk, Generation,
                                             GenerationParams, LLMBackend, LLMError, UpstreamTimeout)
from huixiangdou.service.llm.trimming import conversation_length, trim_messages

BACKEND_CHOICES = ('auto', 'local', 'remote')


class Router:
    """Answer with the best available backend.

    Usage:
        router = Router({'local': local_backend, 'remote': remote_backend})
        generation = await router.generate([ChatMessage('user', '如何安装?')], backend='auto')
        generation.backend   # 'local', or 'remote' if local was busy / failed / the prompt too long
    """

    def __init__(self, backends: dict[str, LLMBackend]):
        unknown = set(backends) - {'local', 'remote'}
        if unknown:
            raise ValueError(f'backends must be named local / remote, got {sorted(unknown)}')
        if not backends:
            raise ValueError('at least one backend is needed: set [llm] enable_local or enable_remote')
        self.backends = backends

    def plan(self, messages: list[ChatMessage], backend: str = 'auto') -> list[LLMBackend]:
        """Backends to try, in order."""
        if backend not in BACKEND_CHOICES:
            raise BadRequest(f'backend must be one of {", ".join(BACKEND_CHOICES)}, got {backend!r}')
        if backend != 'auto':
            if backend not in self.backends:
                raise BackendUnavailable(f'backend {backend!r} is not enabled: set [llm] enable_{backend} = 1, '
                                         'or ask for backend "auto"')
            return [self.backends[backend]]
        local, remote = self.backends.get('local'), self.backends.get('remote')
        order = [local, remote]
        # The local model's limit is small; longer prompts go where they fit instead of being cut.
        if local is not None and remote is not None and conversation_length(messages) > local.max_text_length:
            order = [remote, local]
        return [b for b in order if b is not None]

    async def generate(self, messages: list[ChatMessage], backend: str = 'auto',
                       params: GenerationParams = GenerationParams()) -> Generation:
        errors: list[LLMError] = []
        for candidate in self.plan(messages, backend):
            fitted = trim_messages(messages, candidate.max_text_length)
            try:
                answer = await candidate.generate(fitted, params)
            except LLMError as exc:
                logger.warning(f'backend={candidate.name} failed: {exc}')
                errors.append(exc)
                continue
            return Generation(text=answer.text, backend=candidate.name, model=candidate.model,
                              finish_reason=answer.finish_reason, usage=answer.usage)
        raise combine_errors(errors)

    async def stream(self, messages: list[ChatMessage], backend: str = 'auto',
                     params: GenerationParams = GenerationParams()) -> tuple[LLMBackend, AsyncIterator[Chunk]]:
        """Open a stream on the first backend that yields its first piece; fall back until then.

        Returns the backend and an iterator that starts with that first piece.
        """
        errors: list[LLMError] = []
        for candidate in self.plan(messages, backend):
            fitted = trim_messages(messages, candidate.max_text_length)
            pieces = candidate.stream(fitted, params)
            try:
                first = await anext(pieces)
            except StopAsyncIteration:
                return candidate, _empty()
            except LLMError as exc:
                await pieces.aclose()
                logger.warning(f'backend={candidate.name} failed: {exc}')
                errors.append(exc)
                continue
            return candidate, _prepend(first, pieces)
        raise combine_errors(errors)

    async def close(self) -> None:
        for backend in self.backends.values():
            await backend.close()


def combine_errors(errors: list[LLMError]) -> LLMError:
    """One error for the client: a timeout if any backend timed out last, else 503 with every reason."""
    if len(errors) == 1:
        return errors[0]
    message = '; '.join(str(e) for e in errors)
    if isinstance(errors[-1], UpstreamTimeout):
        return UpstreamTimeout(message)
    return BackendUnavailable(f'no backend could answer: {message}')


async def _empty() -> AsyncIterator[Chunk]:
    return
    yield  # pragma: no cover


async def _prepend(first: Chunk, rest: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
    try:
        yield first
        async for piece in rest:
            yield piece
    finally:
        await rest.aclose()
