"""Reads the text in pictures embedded in Word and PowerPoint files, for the section they sit in.

A picture that cannot be read (a vector format, corrupt, over the limits) or whose OCR fails is logged
and left out; the document's own text is indexed all the same. It does not OCR image files (image.py).
"""
from __future__ import annotations

import io

from loguru import logger

from huixiangdou.primitive.image_reader import ImageReader
from huixiangdou.primitive.ocr import ImageRejected, OCRError

# Icons, bullets and rules are smaller than any line of readable text: not worth an OCR pass.
_MIN_SIDE = 24


def picture_text(ocr: ImageReader | None, blob: bytes, where: str) -> str:
    """The OCR text of one embedded picture, '' when there is none; `where` names it in the log."""
    if ocr is None or not blob:
        return ''
    if _too_small(blob):
        return ''
    try:
        return ocr.read(blob).text.strip()
    except ImageRejected as exc:
        logger.warning('picture in {} skipped: {}', where, exc)
    except OCRError as exc:
        logger.warning('picture in {} not read: {}', where, exc)
    return ''


def _too_small(blob: bytes) -> bool:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(blob)) as image:  # the header only
            return min(image.size) < _MIN_SIDE
    except Exception:  # not decodable here: ocr.read rejects it with the reason
        return False
