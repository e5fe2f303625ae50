"""Parses image files (png, jpg, webp, bmp, gif's first frame) into one Section: the text OCR reads in them.

The citation is the file itself (no anchor). It does not describe pictures without text: an image
whose OCR finds nothing is skipped with that reason, like a document without text.
"""
from __future__ import annotations

from pathlib import Path

from huixiangdou.primitive.chunk import Document, Section
from huixiangdou.primitive.documents.errors import ParseError
from huixiangdou.primitive.image_reader import ImageReader
from huixiangdou.primitive.ocr import ImageRejected, OCRError

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.webp', '.bmp', '.gif')
OCR_OFF = 'OCR is off ([feature_store] ocr = 0)'


def parse_image(path: Path, source: str, ocr: ImageReader | None = None) -> Document:
    if ocr is None:
        raise ParseError(OCR_OFF)
    try:
        result = ocr.read(path)
    except ImageRejected as exc:
        raise ParseError(str(exc)) from exc
    except OCRError as exc:  # not the image's fault: skipped this time, read again by the next build
        raise ParseError(f'OCR failed: {exc}') from exc
    if not result.text.strip():
        raise ParseError('no text in the image')
    return Document(source=source, sections=[Section(text=result.text, anchor='', kind='text')])
