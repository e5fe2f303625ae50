"""Parses PowerPoint .pptx files (python-pptx): one Section per slide, anchor "slide N".

A slide's text is its title, then text boxes, tables and pictures (read by OCR when given one) in
reading order (top to bottom, left to right), then speaker notes; it does not read charts or SmartArt.
"""
from __future__ import annotations

from pathlib import Path

import pptx
from pptx.enum.shapes import MSO_SHAPE_TYPE
from pptx.shapes.picture import Picture

from huixiangdou.primitive.chunk import Document, Section
from huixiangdou.primitive.documents.office_file import check_office_file
from huixiangdou.primitive.documents.pictures import picture_text
from huixiangdou.primitive.image_reader import ImageReader


def parse_pptx(path: Path, source: str, ocr: ImageReader | None = None) -> Document:
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
            lines.extend(_shape_lines(shape, ocr, f'{source} slide {number}'))
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


def _shape_lines(shape, ocr: ImageReader | None, where: str) -> list[str]:
    if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
        return [line for child in _reading_order(shape.shapes) for line in _shape_lines(child, ocr, where)]
    if isinstance(shape, Picture):  # also a picture placeholder filled with a picture
        if ocr is None:
            return []
        try:
            blob = shape.image.blob
        except (KeyError, ValueError, AttributeError):  # a linked picture: its file is not in the pptx
            return []
        text = picture_text(ocr, blob, where)
        return [line.strip() for line in text.splitlines() if line.strip()]
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
