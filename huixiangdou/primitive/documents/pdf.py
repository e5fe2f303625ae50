"""Parses PDF files (PyMuPDF): the text layer of each page with anchor "page N", tables as rows.

Tables found by page.find_tables() become Sections of kind "table" ("cell | cell" rows) and their text
is left out of the page text. A scanned page (an image, no text layer) is rendered and read by OCR
when one is given. It does not OCR pictures on pages that have text, or open password-protected files.
"""
from __future__ import annotations

import math
from pathlib import Path

import pymupdf
from loguru import logger

from huixiangdou.primitive.chunk import Document, Section
from huixiangdou.primitive.documents.errors import ParseError
from huixiangdou.primitive.image_reader import ImageReader
from huixiangdou.primitive.ocr import OCRError

# find_tables() looks for ruling lines, so pages drawing fewer vector paths than a one-cell table are
# not searched. With pymupdf_layout installed it would also run an ONNX layout model on every page
# (~0.3 s a page on 2 cores against ~7 ms without), so that gate is turned off (use_layout=False).
_MIN_DRAWINGS_FOR_TABLES = 4
# A page is scanned when its text layer is (near) empty — a page number or a scanner's stamp at most —
# and images cover a good part of it; a blank page or one with only a logo is not worth an OCR pass.
_SCANNED_MAX_CHARS = 20
_SCANNED_MIN_IMAGE_AREA = 0.25
# 150 DPI puts 10-12 pt print at 20-25 px a line, what PP-OCR reads well; more costs time, not accuracy.
_OCR_DPI = 150
_OCR_MAX_PIXELS = 16_000_000  # a poster-sized page is rendered at a lower DPI instead


def parse_pdf(path: Path, source: str, ocr: ImageReader | None = None) -> Document:
    try:
        document = pymupdf.open(path, filetype='pdf')
    except (pymupdf.FileDataError, RuntimeError, ValueError) as exc:
        raise ParseError('not a readable PDF (damaged or truncated)') from exc
    with document:
        if document.is_repaired and not _has_eof_marker(path):
            # MuPDF rebuilds a cut-off file and returns whatever pages survive; indexing that
            # silently would leave answers missing the rest, so the user is told instead.
            raise ParseError('PDF is truncated (no end-of-file marker); download or export it again')
        if document.needs_pass:
            raise ParseError('PDF is password-protected; remove the password and put it back')
        sections, unread = [], []
        for page in document:
            page_sections = _page_sections(page, source)
            if _is_scanned(page, page_sections):
                read = _ocr_page(page, source, ocr) if ocr is not None else []
                if read:
                    page_sections = read
                else:
                    unread.append(page.number + 1)
            sections.extend(page_sections)
    if unread:
        why = 'OCR found no text in them' if ocr is not None else 'OCR is off ([feature_store] ocr = 0)'
        logger.warning('{}: scanned page(s) {} left out: {}', source, ', '.join(map(str, unread)), why)
    if not any(s.text.strip() for s in sections):
        if ocr is None:
            raise ParseError('no text in the PDF (scanned pages are read by OCR only with '
                             '[feature_store] ocr = 1)')
        raise ParseError('no text in the PDF, and OCR found none in its pages')
    return Document(source=source, sections=sections)


def _is_scanned(page, sections: list[Section]) -> bool:
    chars = sum(len(''.join(s.text.split())) for s in sections)
    if chars > _SCANNED_MAX_CHARS:
        return False
    area = abs(page.rect)
    if not area:
        return False
    covered = sum(abs(pymupdf.Rect(info['bbox']) & page.rect) for info in page.get_image_info())
    return covered / area >= _SCANNED_MIN_IMAGE_AREA


def _ocr_page(page, source: str, ocr: ImageReader) -> list[Section]:
    """The page rendered and read by OCR, as one Section with the page's anchor ([] when nothing is read)."""
    from PIL import Image

    zoom = _OCR_DPI / 72
    pixels = abs(page.rect) * zoom * zoom
    limit = min(_OCR_MAX_PIXELS, ocr.max_pixels)
    if pixels > limit:
        zoom *= math.sqrt(limit / pixels)
    pixmap = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), colorspace=pymupdf.csRGB, alpha=False)
    image = Image.frombytes('RGB', (pixmap.width, pixmap.height), pixmap.samples)
    try:
        text = ocr.read_decoded(image).text.strip()
    except OCRError as exc:
        logger.warning('{} page {}: OCR failed: {}', source, page.number + 1, exc)
        return []
    return [Section(text=text, anchor=f'page {page.number + 1}', kind='text')] if text else []


def _has_eof_marker(path: Path) -> bool:
    with open(path, 'rb') as f:
        f.seek(0, 2)
        f.seek(max(0, f.tell() - 2048))
        return b'%%EOF' in f.read()


def _page_sections(page, source: str) -> list[Section]:
    anchor = f'page {page.number + 1}'
    tables = []
    if len(page.get_cdrawings()) >= _MIN_DRAWINGS_FOR_TABLES:
        try:
            tables = list(page.find_tables(use_layout=False).tables)
        except Exception as exc:  # tables are a bonus; the page text is still read below
            logger.debug(f'table detection failed in {source} {anchor}: {exc!r}')
    if not tables:
        text = page.get_text('text').strip()
        return [Section(text=text, anchor=anchor, kind='text')] if text else []
    boxes = [pymupdf.Rect(t.bbox) for t in tables]
    kept = []
    for x0, y0, x1, y1, text, _, block_type in page.get_text('blocks'):
        centre = pymupdf.Point((x0 + x1) / 2, (y0 + y1) / 2)
        if block_type == 0 and not any(centre in box for box in boxes):
            kept.append(text.strip())
    sections = []
    text = '\n'.join(t for t in kept if t)
    if text:
        sections.append(Section(text=text, anchor=anchor, kind='text'))
    for table in tables:
        rows = _table_rows(table.extract())
        if rows:
            sections.append(Section(text='\n'.join(rows), anchor=anchor, kind='table'))
    return sections


def _table_rows(cells: list[list]) -> list[str]:
    """"cell | cell" lines; columns empty in every row (split ruling lines make them) are dropped."""
    grid = [[' '.join((cell or '').split()) for cell in row] for row in cells]
    width = max((len(row) for row in grid), default=0)
    used = [i for i in range(width) if any(i < len(row) and row[i] for row in grid)]
    lines = []
    for row in grid:
        values = [row[i] if i < len(row) else '' for i in used]
        if any(values):
            lines.append(' | '.join(values))
    return lines
