"""Exception types of the chat frontends, each with a message that says what to do next.

Raised by the platform clients and the frontend builders; HTTP handlers turn them into log lines.
"""
from __future__ import annotations


class FrontendError(RuntimeError):
    """A frontend cannot start or cannot reach its platform."""


class LarkApiError(FrontendError):
    """Lark answered with a non-zero `code` (or a non-JSON / HTTP error)."""

    def __init__(self, action: str, code: int | str, msg: str, retryable: bool = False):
        self.action = action
        self.code = code
        self.msg = msg
        self.retryable = retryable
        super().__init__(f'Lark {action} failed: code={code} msg={msg}')


class WkteamApiError(FrontendError):
    """wkteam answered with a code other than "1000" (or a non-JSON / HTTP error)."""

    def __init__(self, action: str, code: int | str, msg: str):
        self.action = action
        self.code = code
        self.msg = msg
        super().__init__(f'wkteam {action} failed: code={code} message={msg}')


class CallbackRejected(Exception):
    """A callback request that must be refused with `status` (400, 401, 413) and `reason`."""

    def __init__(self, status: int, reason: str):
        self.status = status
        self.reason = reason
        super().__init__(f'{status}: {reason}')


class InboxError(FrontendError):
    """The durable inbox (SQLite in the workdir) could not be read or written; the message is not acknowledged."""
