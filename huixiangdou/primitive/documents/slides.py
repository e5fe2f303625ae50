"""Parses PowerPoint .pptx files (python-pptx): one Section per slide, anchor "slide N".

A slide's text is its title, then text boxes and tables in reading order (top to bottom, left to
right), then speaker notes; it does not read charts, SmartArt or text inside images.
"""
from __future__ import annotations

from pathlib import Path

import pptx
from pptx.enum.shapes import MSO_SHAPE_TYPE

from huixiangdou.primitive.chunk import Document, Section
from huixiangdou.primitive.documents.office_file import check_office_file


def parse_pptx(path: Path, source: str) -> Document:
    check_office_file(path)
    presentation = pptx.Presentation(str(path))
    sections = []
    for number, slide in enumerate(presentation.slides, start=1):
        lines = []
        title = slide.shapes.title
        if title is not None and title.has_text_frame:
            lines.extend(_text_lines(title))
        for shape in _reading_order(slide.shapes):
            if title is not None and shape.shape_id == title.shape_id:
                continue
            lines.extend(_shape_lines(shape))
        if slide.has_notes_slide:
            frame = slide.notes_slide.notes_text_frame
            notes = frame.text.strip() if frame is not None else ''
            if notes:
                lines.append(f'Notes: {notes}')
        if lines:
            sections.append(Section(text='\n'.join(lines), anchor=f'slide {number}', kind='text'))
    return Document(source=source, sections=sections)


def _reading_order(shapes) -> list:
    return sorted(shapes, key=lambda s: (s.top or 0, s.left or 0))


def _text_lines(shape) -> list[str]:
    return [p.strip() for p in shape.text_frame.text.splitlines() if p.strip()]


def _shape_lines(shape) -> list[str]:
    if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
        return [line for child in _reading_order(shape.shapes) for line in _shape_lines(child)]
    if getattr(shape, 'has_table', False) and shape.has_table:
        rows = []
        for row in shape.table.rows:
            cells = [' '.join(cell.text.split()) for cell in row.cells]
            if any(cells):
                rows.append(' | '.join(cells))
        return rows
    if shape.has_text_frame:
        return _text_lines(shape)
    return []
