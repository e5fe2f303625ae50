"""Parses .xlsx (openpyxl, read-only, cached values) and .csv/.tsv into header-aware table Sections.

Each data row becomes one line "Name: x | Price: y"; an .xlsx gives one Section per sheet with anchor
"sheet <name>". It does not evaluate formulas (cached results only) or read charts and images.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path
from typing import Iterable, Sequence

import openpyxl

from huixiangdou.primitive.chunk import Document, Section
from huixiangdou.primitive.documents.errors import ParseError
from huixiangdou.primitive.documents.office_file import check_office_file
from huixiangdou.primitive.documents.text_decoding import read_text

_SNIFF_BYTES = 8192
_DELIMITERS = ',\t;|'


def parse_xlsx(path: Path, source: str) -> Document:
    check_office_file(path)
    workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        sections = []
        for sheet in workbook.worksheets:
            # Some writers store a wrong used range; read-only mode would trust it and stop early.
            sheet.reset_dimensions()
            lines = render_rows(sheet.iter_rows(values_only=True))
            if lines:
                sections.append(Section(text='\n'.join(lines), anchor=f'sheet {sheet.title}',
                                        kind='table'))
    finally:
        workbook.close()
    return Document(source=source, sections=sections)


def parse_csv(path: Path, source: str) -> Document:
    text = read_text(path)
    if path.suffix.lower() == '.tsv':
        delimiter = '\t'
    else:
        try:
            delimiter = csv.Sniffer().sniff(text[:_SNIFF_BYTES], delimiters=_DELIMITERS).delimiter
        except csv.Error:
            delimiter = ','
    try:
        lines = render_rows(csv.reader(io.StringIO(text), delimiter=delimiter))
    except csv.Error as exc:
        raise ParseError(f'malformed CSV: {exc}') from exc
    return Document(source=source, sections=[Section(text='\n'.join(lines), kind='table')])


def format_cell(value) -> str:
    if value is None:
        return ''
    if isinstance(value, bool):
        return 'TRUE' if value else 'FALSE'
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(' ')
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    text = str(value)
    return ' '.join(text.split()) if ('\n' in text or '  ' in text) else text.strip()


def _looks_numeric(text: str) -> bool:
    try:
        float(text.replace(',', ''))
    except ValueError:
        return False
    return True


def render_rows(rows: Iterable[Sequence]) -> list[str]:
    """Lines for a table: with a header row, each data row as "Header: value | ..." pairs.

    The first non-empty row is the header when none of its cells is a number and data rows follow.

    >>> render_rows([['Name', 'Price'], ['Apple', 3.0], ['Pear', None]])
    ['Name: Apple | Price: 3', 'Name: Pear']
    """
    header: list[str] | None = None
    first: list[str] | None = None
    lines: list[str] = []
    for row in rows:
        cells = [format_cell(v) for v in row]
        if not any(cells):
            continue
        if first is None:
            first = cells
            continue
        if header is None and not lines:
            if not any(c and _looks_numeric(c) for c in first):
                header = first
            else:
                lines.append(_plain(first))
        if header is None:
            lines.append(_plain(cells))
            continue
        pairs = []
        for i, cell in enumerate(cells):
            if not cell:
                continue
            name = header[i] if i < len(header) else ''
            pairs.append(f'{name}: {cell}' if name else cell)
        lines.append(' | '.join(pairs))
    if first is not None and header is None and not lines:
        lines.append(_plain(first))
    return lines


def _plain(cells: list[str]) -> str:
    while cells and not cells[-1]:
        cells = cells[:-1]
    return ' | '.join(cells)
