"""Parses Word .docx files (python-docx): paragraphs and tables in document order, headings as anchors.

Tables become Sections of kind "table" with rows rendered "cell | cell". Pictures are read by OCR (when
given one) and their text joins the section they sit in; it does not read headers, footers, footnotes,
comments or text boxes.
"""
from __future__ import annotations

import re
from pathlib import Path

import docx
from docx.oxml.ns import qn
from docx.table import Table
from docx.text.paragraph import Paragraph

from huixiangdou.primitive.chunk import Document
from huixiangdou.primitive.documents.office_file import check_office_file
from huixiangdou.primitive.documents.outline import Outline
from huixiangdou.primitive.documents.pictures import picture_text
from huixiangdou.primitive.image_reader import ImageReader

# Built-in heading style names, in English and as Chinese Word/WPS writes them ("标题 1").
_HEADING_STYLE = re.compile(r'^(?:heading|标题)\s*(\d)$', re.I)
_TITLE_STYLES = frozenset({'title', '标题'})
# A picture is a DrawingML blip (r:embed) or, in files from older Word, a VML imagedata (r:id).
_PICTURE_IDS = './/a:blip/@r:embed | .//*[local-name()="imagedata"]/@r:id'


def parse_docx(path: Path, source: str, ocr: ImageReader | None = None) -> Document:
    check_office_file(path)
    document = docx.Document(str(path))
    outline = Outline('text')
    by_style: dict[str | None, int | None] = {}
    for block in document.iter_inner_content():
        if isinstance(block, Paragraph):
            text = block.text.strip()
            pictures = _pictures_text(block._p, document, ocr, source)
            if not text:
                outline.add(pictures)
                continue
            level = _heading_level(block, by_style)
            if level is None:
                outline.add(text)
            else:
                outline.heading(level, text, text)
            if pictures:
                outline.add(pictures)
        elif isinstance(block, Table):
            rows = render_table(block)
            if rows:
                outline.add_block('\n'.join(rows), 'table')
            pictures = _pictures_text(block._tbl, document, ocr, source)
            if pictures:
                outline.add(pictures)
    return Document(source=source, sections=outline.finish())


def _pictures_text(element, document, ocr: ImageReader | None, source: str) -> str:
    """The OCR text of the pictures inside a paragraph or table, in document order."""
    if ocr is None:
        return ''
    texts = []
    for rel_id in element.xpath(_PICTURE_IDS):
        part = document.part.related_parts.get(rel_id)  # absent for a linked (not embedded) picture
        blob = getattr(part, 'blob', b'') if part is not None else b''
        text = picture_text(ocr, blob, f'{source} ({getattr(part, "partname", rel_id)})')
        if text:
            texts.append(text)
    return '\n'.join(texts)


def _outline_level(element) -> int | None:
    """Level from a paragraph's or style's own w:outlineLvl (0-8; 9 means body text)."""
    ppr = element.find(qn('w:pPr'))
    found = ppr.find(qn('w:outlineLvl')) if ppr is not None else None
    value = found.get(qn('w:val')) if found is not None else None
    if value and value.isdigit() and int(value) < 9:
        return int(value) + 1
    return None


def _style_level(style) -> int | None:
    """Heading level a paragraph style gives (0 for a title, 1-9), or None for body text."""
    for _ in range(5):  # follow a few based-on links; custom heading styles derive from built-ins
        if style is None:
            return None
        name = (style.name or '').strip()
        if name.lower() in _TITLE_STYLES:
            return 0
        match = _HEADING_STYLE.match(name)
        if match:
            return int(match.group(1))
        level = _outline_level(style.element)
        if level is not None:
            return level
        style = style.base_style
    return None


def _heading_level(paragraph: Paragraph, by_style: dict) -> int | None:
    level = _outline_level(paragraph._p)
    if level is not None:
        return level
    # paragraph.style searches the whole style sheet on every call; resolve each style id once.
    style_id = paragraph._p.style
    if style_id not in by_style:
        by_style[style_id] = _style_level(paragraph.style)
    return by_style[style_id]


def render_table(table: Table) -> list[str]:
    """One "cell | cell" line per non-empty row; a merged cell is written once."""
    lines = []
    for row in table.rows:
        try:
            cells = row.cells
        except (ValueError, IndexError):  # malformed grid spans: read the raw cells instead
            texts = [' '.join(''.join(tc.itertext()).split()) for tc in row._tr.tc_lst]
        else:
            seen, texts = set(), []
            for cell in cells:
                if id(cell._tc) in seen:
                    continue
                seen.add(id(cell._tc))
                texts.append(' '.join(cell.text.split()))
        if any(texts):
            lines.append(' | '.join(texts))
    return lines
