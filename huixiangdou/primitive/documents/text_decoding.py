"""Turns the bytes of a text file into str: UTF-8 (with or without BOM), UTF-16 with BOM, then GB18030.

Rejects binary data and undecodable bytes with ParseError and normalises newlines to "\n"; it does not
guess other legacy encodings (Big5, Shift-JIS, Latin-1), which would silently produce mojibake.
"""
from __future__ import annotations

import codecs
from pathlib import Path

from huixiangdou.primitive.documents.errors import ParseError

# C0 control bytes that never appear in real text (tab, LF, FF, CR and ESC are allowed; ESC shows
# up in coloured logs). bytes.translate deletes the others, so the length difference counts them
# without a Python-level loop.
_CONTROL_BYTES = bytes(b for b in range(32) if b not in (9, 10, 12, 13, 27)) + b'\x7f'
_SAMPLE_SIZE = 64 * 1024
_MAX_CONTROL_RATIO = 0.05


def looks_binary(data: bytes) -> bool:
    """True for data with NUL bytes or more than 5% control bytes in its first 64 KiB."""
    if b'\x00' in data:
        return True
    sample = data[:_SAMPLE_SIZE]
    controls = len(sample) - len(sample.translate(None, _CONTROL_BYTES))
    return controls >= 4 and controls > _MAX_CONTROL_RATIO * len(sample)


def normalise_newlines(text: str) -> str:
    if '\r' in text:
        text = text.replace('\r\n', '\n').replace('\r', '\n')
    return text


def decode_text(data: bytes, preferred: str | None = None) -> str:
    """Decode `data`; a `preferred` encoding (an HTML meta charset) is tried after UTF-8.

    Valid UTF-8 wins over a declared charset because mis-declared pages are common and UTF-8
    almost never decodes by accident.

    >>> decode_text('中文'.encode('gbk'))
    '中文'
    """
    if not data:
        raise ParseError('empty file')
    # UTF-16 text is full of NUL bytes, so its BOM must be honoured before the binary check.
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            text = data.decode('utf-16')
        except UnicodeDecodeError:
            raise ParseError('not valid UTF-16 text despite its byte-order mark') from None
        if '\x00' in text:
            raise ParseError('binary data in a text file')
        return normalise_newlines(text)
    if looks_binary(data):
        raise ParseError('binary data in a text file')
    encodings = ['utf-8-sig', 'gb18030']
    if preferred:
        try:
            name = codecs.lookup(preferred).name
        except LookupError:
            name = ''
        # GBK and GB2312 are subsets of GB18030, so decode them with the superset.
        if name in ('gbk', 'gb2312'):
            name = 'gb18030'
        if name and name not in ('utf-8', 'gb18030'):
            encodings.insert(1, name)
    for encoding in encodings:
        try:
            return normalise_newlines(data.decode(encoding))
        except UnicodeDecodeError:
            continue
    try:
        data.decode('utf-8')
    except UnicodeDecodeError as exc:
        where = exc.start
    raise ParseError(f'not valid UTF-8 or GB18030 text (bad byte at offset {where}); '
                     'save the file as UTF-8')


def read_text(path: Path, preferred: str | None = None) -> str:
    return decode_text(path.read_bytes(), preferred)
