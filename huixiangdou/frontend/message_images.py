"""The images of a group message, as the frontends fetch them: how many, how large, how long to wait.

One policy for every platform: each image is downloaded with a size cap and a time limit; one that fails
is logged and left out, and the message's text goes on without it. Reading the images (OCR) is the
worker's job (service/worker/image_text.py), not this module's.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Awaitable, Callable

import aiohttp
from loguru import logger

from huixiangdou.frontend.errors import FrontendError

if TYPE_CHECKING:
    from huixiangdou.config import Config

# A question comes with one screenshot, rarely two or three; more is an album, not a question.
MAX_IMAGES = 3


class ImageTooLarge(FrontendError):
    """A platform offered an image over [ocr] max_image_mb; it is not downloaded further."""


@dataclass(frozen=True)
class ImageLimits:
    """Whether a frontend fetches the images of a message, and within what.

    `enabled` follows [worker] ocr (no download when the worker would not read them); `max_bytes` is
    [ocr] max_image_mb; `seconds` bounds each download ([ocr] timeout).
    """
    enabled: bool = True
    max_images: int = MAX_IMAGES
    max_bytes: int = 20 * 1024 * 1024
    seconds: float = 20.0

    def __post_init__(self):
        if self.max_images < 1 or self.max_bytes < 1 or self.seconds <= 0:
            raise ValueError(f'image limits must be positive, got {self}')

    @classmethod
    def from_config(cls, config: 'Config') -> 'ImageLimits':
        return cls(enabled=bool(config.worker.ocr), max_bytes=int(config.ocr.max_image_mb * 1024 * 1024),
                   seconds=float(config.ocr.timeout))


async def read_limited(response: aiohttp.ClientResponse, max_bytes: int, what: str) -> bytes:
    """The body of `response`, refused (ImageTooLarge) as soon as it passes `max_bytes`: a platform's
    Content-Length is checked first, and the body is read in chunks so a lying one costs no more."""
    if response.content_length is not None and response.content_length > max_bytes:
        raise ImageTooLarge(f'{what}: {response.content_length} bytes is over [ocr] max_image_mb '
                            f'({max_bytes} bytes)')
    chunks, size = [], 0
    async for chunk in response.content.iter_chunked(65536):
        size += len(chunk)
        if size > max_bytes:
            raise ImageTooLarge(f'{what}: over [ocr] max_image_mb ({max_bytes} bytes)')
        chunks.append(chunk)
    return b''.join(chunks)


async def fetch_images(downloads: list[Callable[[], Awaitable[bytes]]], limits: ImageLimits,
                       where: str) -> list[bytes]:
    """Run the first `limits.max_images` downloads at once, each within `limits.seconds`; the bytes of those
    that succeeded, in order. A failure is logged (with `where`: platform, group and message) and skipped."""
    if not limits.enabled or not downloads:
        return []
    if len(downloads) > limits.max_images:
        logger.info('{}: {} images, only the first {} are read', where, len(downloads), limits.max_images)
    results = await asyncio.gather(*(asyncio.wait_for(download(), limits.seconds)
                                     for download in downloads[:limits.max_images]), return_exceptions=True)
    images = []
    for number, result in enumerate(results, 1):
        if isinstance(result, bytes) and result:
            images.append(result)
        elif isinstance(result, (FrontendError, asyncio.TimeoutError, aiohttp.ClientError, bytes)):
            reason = 'empty body' if isinstance(result, bytes) else (
                f'not downloaded within {limits.seconds:.0f} s' if isinstance(result, asyncio.TimeoutError)
                else str(result) or type(result).__name__)
            logger.warning('{}: image {} skipped ({}); the text of the message goes on without it',
                           where, number, reason)
        else:  # a bug of ours rather than the platform's: shown in full, and still the text goes on
            logger.opt(exception=result).error('{}: image {} failed unexpectedly', where, number)
    return images
