"""The one interface every LLM backend implements, the dataclasses passed to and from it, and the
errors a backend raises (each carrying the HTTP status the server answers with).

It does not pick a backend (router.py does) nor speak HTTP to clients (llm_server_hybrid.py does).
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import AsyncIterator

ROLES = ('system', 'user', 'assistant')


@dataclass
class ChatMessage:
    role: str
    content: str


@dataclass
class Generation:
    """A finished answer and which backend / model produced it."""
    text: str
    backend: str
    model: str


class LLMError(Exception):
    """Base of the errors a backend or the router raises; `status` is the HTTP code to answer with."""
    status = 503
    code = 'backend_error'


class BadRequest(LLMError):
    status = 400
    code = 'bad_request'


class BackendBusy(LLMError):
    """The backend's queue is full; the caller should retry later or use another backend."""
    status = 503
    code = 'backend_busy'


class BackendUnavailable(LLMError):
    """The backend is disabled, failed to load, or its upstream refused the request for good."""
    status = 503
    code = 'backend_unavailable'


class RateLimited(LLMError):
    """Upstream (or our own rpm / tpm budget) kept refusing until the request ran out of time."""
    status = 503
    code = 'rate_limited'

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class UpstreamTimeout(LLMError):
    status = 504
    code = 'upstream_timeout'


class LLMBackend(abc.ABC):
    """A chat model that answers a list of messages.

    Subclasses validate settings in __init__, load heavy things in warm_up(), and answer with
    generate() or stream(). `max_text_length` is the longest input, in characters, they accept;
    the router trims longer conversations before calling them.
    """

    name: str = ''
    model: str = ''
    max_text_length: int = 0

    def warm_up(self) -> None:
        """Load models / open clients. Blocking; call it once before serving."""

    @abc.abstractmethod
    async def generate(self, messages: list[ChatMessage], max_new_tokens: int | None = None) -> str:
        """Answer the conversation; raise an LLMError subclass on failure."""

    @abc.abstractmethod
    def stream(self, messages: list[ChatMessage], max_new_tokens: int | None = None) -> AsyncIterator[str]:
        """Yield pieces of the answer as they are produced."""

    async def close(self) -> None:
        """Release connections and threads."""
