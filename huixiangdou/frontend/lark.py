"""The `lark` frontend: answers questions and posts them to a Lark custom-bot webhook (send-only).

A custom bot cannot receive messages, so questions come from an async source (stdin by default);
for a two-way bot use `lark_group`.
"""
from __future__ import annotations

import asyncio
import sys
import threading
import time
from typing import AsyncIterator, Callable

import aiohttp
from loguru import logger

from huixiangdou.config import FrontendConfig
from huixiangdou.frontend.errors import LarkApiError
from huixiangdou.frontend.group_dispatcher import GroupDispatcher
from huixiangdou.frontend.group_message import GroupMessage, Outcome, OutcomeStatus, Responder
from huixiangdou.frontend.lark_crypto import webhook_sign
from huixiangdou.frontend.lark_post import answer_post
from huixiangdou.primitive.http_retry import RetryPolicy, TransientFailure, parse_retry_after, send_with_retry, \
    transient_status

# Custom-bot codes worth another try: 11232 = sending too frequently. Others (19021 bad signature,
# 19022 IP not allowed, 19024 keyword missing, 9499 bad request) fail the same way every time.
RETRYABLE_WEBHOOK_CODES = {11232}
WEBHOOK_GROUP_ID = 'lark_webhook'


class LarkWebhookSender:
    """Posts rich-text answers to a custom-bot webhook, signed when the bot has a secret.

    Usage:
        sender = LarkWebhookSender('https://open.feishu.cn/open-apis/bot/v2/hook/xxx', secret='...')
        await sender.warm_up()
        await sender.send('pip install huixiangdou', ['docs/install.md#Install'], question='如何安装？')
        await sender.close()
    """

    def __init__(self, webhook_url: str, secret: str = '', *, max_retries: int = 3, retry_delay: float = 1.0,
                 retry_max_delay: float = 30.0, timeout: float = 10.0, clock: Callable[[], float] = time.time):
        if not webhook_url.startswith(('http://', 'https://')):
            raise ValueError('webhook_url must be the http(s) URL of a Lark custom bot, '
                             f'got {webhook_url[:40]!r}')
        if max_retries < 0:
            raise ValueError(f'max_retries must be >= 0, got {max_retries}')
        self.webhook_url = webhook_url
        self._secret = secret
        self.max_retries = max_retries
        self.retry = RetryPolicy.from_retries(max_retries, retry_delay, retry_max_delay)
        self.timeout = timeout
        self._clock = clock
        self._http: aiohttp.ClientSession | None = None

    async def warm_up(self) -> None:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _body(self, reply: str, references: list[str], question: str, title: str) -> dict:
        body: dict = {'msg_type': 'post', 'content': {'post': answer_post(reply, references, question, title)}}
        if self._secret:
            timestamp = str(int(self._clock()))
            body['timestamp'] = timestamp
            body['sign'] = webhook_sign(timestamp, self._secret)
        return body

    async def send(self, reply: str, references: list[str] | None = None, question: str = '',
                   title: str = 'HuixiangDou') -> None:
        """Post one answer; retry rate limits and transient failures, raise LarkApiError otherwise."""
        await self.warm_up()

        async def attempt() -> None:
            # Re-signed per attempt: Lark rejects timestamps that drift from its clock.
            await self._post_once(self._body(reply, references or [], question, title))

        try:
            await send_with_retry(self.retry, attempt, service='lark webhook')
        except TransientFailure as failure:
            error = failure.error
            logger.error('lark webhook: giving up after {} attempt(s): code={} msg={}', failure.attempts,
                         error.code, error.msg)
            raise error from None
        except LarkApiError as error:
            logger.error('lark webhook: refused: code={} msg={}', error.code, error.msg)
            raise

    async def _post_once(self, body: dict) -> None:
        """One post; LarkApiError when Lark refuses it for good, TransientFailure(LarkApiError) when another
        try may pass (frequency limit, 429, 5xx, network)."""
        assert self._http is not None
        try:
            async with self._http.post(self.webhook_url, json=body) as resp:
                status = resp.status
                retry_after = parse_retry_after(resp.headers.get('Retry-After'))
                try:
                    data = await resp.json(content_type=None)
                except ValueError:
                    data = None
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            # A custom-bot post has no idempotency key: once the request may have reached Lark (a timeout,
            # a connection dropped mid-answer) another try could post the answer twice. Retry only when
            # the connection was never made.
            never_sent = isinstance(exc, aiohttp.ClientConnectorError)
            error = LarkApiError('webhook post', 'network', f'{type(exc).__name__}: {exc}', retryable=never_sent)
            if never_sent:
                raise TransientFailure(error) from None
            raise error from None
        # Lark's docs treat a 500 as "server busy, try again" like 502-504.
        transient = transient_status(status, transient_500=True)
        if not isinstance(data, dict):
            error = LarkApiError('webhook post', f'http {status}', 'response is not JSON', retryable=transient)
        else:
            # Newer webhooks answer {"code", "msg"}; older ones {"StatusCode", "StatusMessage"}.
            code = data.get('code', data.get('StatusCode', 0 if status == 200 else status))
            if code == 0 and status == 200:
                return
            error = LarkApiError('webhook post', code, str(data.get('msg', data.get('StatusMessage', ''))),
                                 retryable=code in RETRYABLE_WEBHOOK_CODES or transient)
        if error.retryable:
            raise TransientFailure(error, retry_after)
        raise error


async def stdin_questions() -> AsyncIterator[str]:
    """Lines typed on standard input.

    Read by a daemon thread rather than the default executor: a thread blocked in readline() would
    otherwise keep asyncio.run() from exiting on Ctrl-C until the user pressed Enter.
    """
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    def read() -> None:
        try:
            for line in sys.stdin:
                loop.call_soon_threadsafe(lines.put_nowait, line)
            loop.call_soon_threadsafe(lines.put_nowait, None)
        except RuntimeError:  # the loop closed while we waited for input: nothing left to feed
            pass

    threading.Thread(target=read, name='lark-stdin', daemon=True).start()
    while (line := await lines.get()) is not None:
        if line.strip():
            yield line.strip()


async def run_lark_webhook(config: FrontendConfig, responder: Responder,
                           questions: AsyncIterator[str] | None = None,
                           sender: LarkWebhookSender | None = None) -> None:
    """Answer each question from `questions` (stdin by default) and post answers to the webhook."""
    sender = sender or LarkWebhookSender(config.webhook_url, config.webhook_secret)
    await sender.warm_up()

    async def on_outcome(outcome: Outcome) -> None:
        if outcome.status is OutcomeStatus.ANSWERED:
            try:
                await sender.send(outcome.reply, outcome.references, question=outcome.message.text)
            except LarkApiError:
                pass  # already logged with the reason by send(); the next question still goes out

    dispatcher = GroupDispatcher.from_config(config, responder, on_outcome)
    logger.info('lark webhook frontend: reading questions, one per line')
    try:
        async for number, text in _numbered(questions or stdin_questions()):
            dispatcher.submit(GroupMessage(group_id=WEBHOOK_GROUP_ID, text=text, message_id=str(number)))
            # One question at a time: input (often a piped file) is faster than the LLM and would
            # otherwise overflow the queue.
            await dispatcher.wait_idle()
        await dispatcher.close()  # end of input: answer what is queued, then return
    finally:
        await dispatcher.abort()
        await sender.close()


async def _numbered(source: AsyncIterator[str]) -> AsyncIterator[tuple[int, str]]:
    number = 0
    async for item in source:
        number += 1
        yield number, item
