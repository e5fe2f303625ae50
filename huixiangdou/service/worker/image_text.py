"""Image-text stage: reads the pictures that came with a message (OCR) into `Session.image_text`, so an
error sent as a screenshot is judged, searched and answered like one typed out.

It never changes `query` and never stops the pipeline: an image it cannot read (corrupt, too large, a
decompression bomb, a timeout, an engine failure) is skipped with a log line, and the message's text
goes on as if it had come alone.
"""
from __future__ import annotations

import asyncio
import re
import time

from loguru import logger

from huixiangdou.primitive.ocr import ImageRejected, OCREngine, OCRError, read_image_async
from huixiangdou.service.worker.session import Session

# Lines that name what went wrong. A traceback's own header says nothing about which error it is.
_ERROR_LINE = re.compile(r'error|exception|errno|fatal|failed|denied|not found|refused|报错|错误|失败|异常|无法|找不到',
                         re.IGNORECASE)
_TRACEBACK_HEADER = re.compile(r'traceback \(most recent call last\)', re.IGNORECASE)
# A screenshot question rarely needs more than one image; a burst of photos is read no further.
MAX_IMAGES = 3
# Retrieval and the prompt need the error, not a whole page of a photographed manual.
MAX_CHARS = 1500


def error_lines(image_text: str) -> str:
    """The lines of a screenshot's text that name an error, or all of it when none does.

    For picking sentences to quote: a terminal screenshot also shows the command that was run, and a
    document sentence repeating that command is not the answer to the error under it.
    """
    lines = [line for line in image_text.splitlines()
             if _ERROR_LINE.search(line) and not _TRACEBACK_HEADER.search(line)]
    return '\n'.join(lines) if lines else image_text


class ImageText:
    """Read `session.images` with the configured OCR engine, within [ocr] timeout for the whole message.

    Usage:
        stage = ImageText(make_ocr(config.ocr), config.ocr)
        await stage.run(session)   # session.image_text, session.debug['image_text']
    """

    name = 'image_text'

    def __init__(self, engine: OCREngine, config, max_images: int = MAX_IMAGES, max_chars: int = MAX_CHARS):
        if max_images < 1:
            raise ValueError(f'max_images must be >= 1, got {max_images}')
        if max_chars < 50:
            raise ValueError(f'max_chars must be >= 50, got {max_chars}')
        self.engine = engine
        self.config = config   # an OCRConfig: timeout, max_image_mb, max_pixels
        self.max_images = max_images
        self.max_chars = max_chars

    async def run(self, session: Session) -> None:
        if not session.images:
            return
        images = session.images[:self.max_images]
        debug: dict[str, object] = {'images': len(session.images), 'read': [], 'skipped': []}
        if len(session.images) > len(images):
            debug['skipped'].append(f'{len(session.images) - len(images)} image(s) over the limit of {self.max_images}')
        texts: list[str] = []
        # One budget for the message, so three slow images cost what one may, not three times that.
        deadline = time.monotonic() + self.config.timeout
        for number, data in enumerate(images, 1):
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise asyncio.TimeoutError
                result = await asyncio.wait_for(read_image_async(self.engine, data, self.config), left)
            except ImageRejected as exc:
                reason = f'image {number} rejected: {exc}'
            except OCRError as exc:
                reason = f'image {number} not read: {exc}'
            except asyncio.TimeoutError:
                reason = f'image {number} not read within [ocr] timeout = {self.config.timeout} s'
            else:
                debug['read'].append({'chars': len(result.text), 'seconds': round(result.seconds, 3),
                                      'size': f'{result.width}x{result.height}'})
                if result.text.strip():
                    texts.append(result.text.strip())
                continue
            debug['skipped'].append(reason)
            logger.warning('group={} message={}: {}; the text of the message is answered without it',
                           session.group_id, session.message_id, reason)
        text = '\n'.join(texts)
        if len(text) > self.max_chars:
            text = text[:self.max_chars].rstrip() + '…'
            debug['cut'] = True
        session.add_image_text(text)
        debug['chars'] = len(text)
        session.debug[self.name] = debug
