"""Chooses a parser by file suffix and turns every failure into a ParseError with a human reason.

This is the boundary: no library exception escapes parse_file. It does not walk directories
(walker.py does) or cut text into chunks (the splitter does).
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from huixiangdou.primitive.chunk import Document
from huixiangdou.primitive.documents.errors import ParseError
from huixiangdou.primitive.documents.image import IMAGE_SUFFIXES
from huixiangdou.primitive.documents.office_file import OFFICE_SUFFIXES, check_expanded_size

if TYPE_CHECKING:
    from huixiangdou.primitive.image_reader import ImageReader

_CODE_SUFFIXES = (
    '.py', '.pyi', '.c', '.cc', '.cpp', '.cxx', '.h', '.hh', '.hpp', '.hxx', '.cu', '.cuh',
    '.js', '.mjs', '.cjs', '.ts', '.tsx', '.jsx', '.vue', '.go', '.rs', '.java', '.kt', '.scala',
    '.swift', '.rb', '.php', '.lua', '.r', '.m', '.sh', '.bash', '.zsh', '.ps1', '.bat',
    '.yaml', '.yml', '.toml', '.json', '.jsonl', '.ini', '.cfg', '.conf', '.sql', '.proto',
    '.cmake', '.gradle',
)

# suffix -> (module in this package, function); modules are imported on first use so that walking a
# repository does not pay for importing PyMuPDF, python-docx, openpyxl, python-pptx and bs4.
_PARSERS: dict[str, tuple[str, str]] = {
    '.md': ('markdown', 'parse_markdown'),
    '.markdown': ('markdown', 'parse_markdown'),
    '.txt': ('plain_text', 'parse_plain_text'),
    '.text': ('plain_text', 'parse_plain_text'),
    '.rst': ('plain_text', 'parse_rst'),
    '.pdf': ('pdf', 'parse_pdf'),
    '.docx': ('word', 'parse_docx'),
    '.xlsx': ('spreadsheet', 'parse_xlsx'),
    '.csv': ('spreadsheet', 'parse_csv'),
    '.tsv': ('spreadsheet', 'parse_csv'),
    '.pptx': ('slides', 'parse_pptx'),
    '.html': ('webpage', 'parse_html'),
    '.htm': ('webpage', 'parse_html'),
    # Read by OCR; skipped with the reason when OCR is off.
    **{suffix: ('image', 'parse_image') for suffix in IMAGE_SUFFIXES},
    **{suffix: ('code', 'parse_code') for suffix in _CODE_SUFFIXES},
}

SUPPORTED_SUFFIXES: frozenset[str] = frozenset(_PARSERS)
# Parsers that read text in images: they are handed parse_file's `ocr` (None when OCR is off).
_READS_IMAGES = frozenset({'image', 'pdf', 'word', 'slides'})


def _parser(suffix: str, ocr: 'ImageReader | None') -> Callable[[Path, str], Document]:
    module_name, function = _PARSERS[suffix]
    parse = getattr(importlib.import_module(f'{__package__}.{module_name}'), function)
    if module_name in _READS_IMAGES:
        return lambda path, source: parse(path, source, ocr=ocr)
    return parse


def parse_file(path: Path, source: str, ocr: 'ImageReader | None' = None,
               max_expanded_mb: float | None = None) -> Document:
    """Parse one file into a Document; `source` is its path relative to repodir, for citations.

    `ocr` reads the text in images (image files, scanned PDF pages, pictures in docx/pptx); without it
    image files are skipped with the reason and scanned pages are left out. `max_expanded_mb` refuses a
    docx/xlsx/pptx whose XML would expand past it, before a parser inflates any of it.
    Raises ParseError (only) when the file cannot be parsed; its message is the reason to report.

    >>> parse_file(Path('docs/install.md'), 'docs/install.md').sections[0].anchor  # doctest: +SKIP
    'Installation'
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _PARSERS:
        raise ParseError(f'unsupported file type {suffix or "(no extension)"}')
    try:
        if path.stat().st_size == 0:
            raise ParseError('empty file')
        if max_expanded_mb is not None and suffix in OFFICE_SUFFIXES:
            check_expanded_size(path, max_expanded_mb)
        document = _parser(suffix, ocr)(path, source)
    except ParseError:
        raise
    except PermissionError as exc:
        raise ParseError('permission denied') from exc
    except OSError as exc:
        raise ParseError(f'could not read the file: {exc.strerror or exc}') from exc
    except MemoryError as exc:
        raise ParseError('too large to parse in memory') from exc
    except Exception as exc:  # any library failure on a malformed file is a reason to skip it
        detail = str(exc)[:200]
        raise ParseError(f'could not parse this {suffix[1:].upper()} file '
                         f'({type(exc).__name__}: {detail})') from exc
    sections = [s for s in document.sections if s.text.strip()]
    if not sections:
        raise ParseError('no text')
    return Document(source=source, sections=sections)
