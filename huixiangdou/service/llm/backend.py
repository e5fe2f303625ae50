"""The one interface every LLM backend implements, the dataclasses passed to and from it, and the
errors a backend raises (each carrying the HTTP status and OpenAI error type the server answers with).

It does not pick a backend (router.py does) nor speak HTTP to clients (llm_server_hybrid.py does).
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import AsyncIterator

ROLES = ('system', 'user', 'assistant')
FINISH_REASONS = ('stop', 'length', 'content_filter')


@dataclass
class ChatMessage:
    role: str
    content: str


@dataclass(frozen=True)
class GenerationParams:
    """How to generate, as the client asked; None means the backend's default.

    temperature None or 0 means greedy decoding on the local backend; `stop` ends the answer before
    the first of its strings; `include_usage` asks a stream to end with token counts.
    """
    max_new_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    include_usage: bool = False


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class Chunk:
    """One piece of a streamed answer; the last one carries why it ended and, when known, the usage."""
    text: str = ''
    finish_reason: str | None = None
    usage: Usage | None = None


@dataclass
class Answer:
    """A whole answer from one backend."""
    text: str
    finish_reason: str = 'stop'
    usage: Usage | None = None


@dataclass
class Generation:
    """A finished answer and which backend / model produced it."""
    text: str
    backend: str
    model: str
    finish_reason: str = 'stop'
    usage: Usage | None = None


class LLMError(Exception):
    """Base of the errors a backend, the router or the server raises.

    `status` is the HTTP code to answer with, `type` and `code` the OpenAI error fields, `param` the
    request field at fault (if any); `status` and `code` may be given per instance for one-off HTTP errors.
    """
    status = 503
    type = 'server_error'
    code = 'backend_error'

    def __init__(self, message: str, param: str | None = None, *, status: int | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.param = param
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code


class BadRequest(LLMError):
    status = 400
    type = 'invalid_request_error'
    code = 'bad_request'


class Unsupported(BadRequest):
    """A request field we understand but do not implement (n > 1, tools, logprobs)."""
    code = 'unsupported_parameter'


class ModelNotFound(LLMError):
    status = 404
    type = 'invalid_request_error'
    code = 'model_not_found'


class Unauthorized(LLMError):
    status = 401
    type = 'invalid_request_error'
    code = 'invalid_api_key'


class BackendBusy(LLMError):
    """The backend's queue is full; the caller should retry later or use another backend."""
    status = 503
    code = 'backend_busy'


class BackendUnavailable(LLMError):
    """The backend is disabled, failed to load, or its upstream refused the request for good."""
    status = 503
    code = 'backend_unavailable'


class UpstreamMalformed(BackendUnavailable):
    """The upstream answered 200 with something that is not an OpenAI chat completion."""
    code = 'upstream_malformed'


class UpstreamDisconnected(BackendUnavailable):
    """The upstream closed the connection before its answer was complete."""
    code = 'upstream_disconnected'


class RateLimited(LLMError):
    """Upstream (or our own rpm / tpm budget) kept refusing until the request ran out of time."""
    status = 429
    type = 'rate_limit_error'
    code = 'rate_limited'

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class UpstreamTimeout(LLMError):
    status = 504
    type = 'timeout'
    code = 'upstream_timeout'


class LLMBackend(abc.ABC):
    """A chat model that answers a list of messages.

    Subclasses validate settings in __init__, load heavy things in warm_up(), and answer with stream()
    (and, where the wire has a cheaper whole-answer call, generate()). `max_text_length` is the longest
    input, in characters, they accept; the router trims longer conversations before calling them.
    """

    name: str = ''
    model: str = ''
    max_text_length: int = 0

    def warm_up(self) -> None:
        """Load models / open clients. Blocking; call it once before serving."""

    async def generate(self, messages: list[ChatMessage], params: GenerationParams = GenerationParams()) -> Answer:
        """Answer the conversation; raise an LLMError subclass on failure. By default: the stream, joined."""
        return await collect(self.stream(messages, params))

    @abc.abstractmethod
    def stream(self, messages: list[ChatMessage],
               params: GenerationParams = GenerationParams()) -> AsyncIterator[Chunk]:
        """Yield pieces of the answer as they are produced; the last one has finish_reason set."""

    async def close(self) -> None:
        """Release connections and threads."""


async def collect(chunks: AsyncIterator[Chunk]) -> Answer:
    """Join a stream into one Answer (finish_reason 'stop' if the stream never said)."""
    texts, finish, usage = [], None, None
    try:
        async for chunk in chunks:
            texts.append(chunk.text)
            finish = chunk.finish_reason or finish
            usage = chunk.usage or usage
    finally:
        await chunks.aclose()
    return Answer(''.join(texts), finish or 'stop', usage)
