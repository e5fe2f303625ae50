"""Parses plain text (.txt) as one Section and reStructuredText (.rst) into one Section per title.

reST titles are found from their underline (and optional overline) adornments, with levels in order
of first appearance as docutils does; it does not interpret directives or roles.
"""
from __future__ import annotations

from pathlib import Path

from huixiangdou.primitive.chunk import Document, Section
from huixiangdou.primitive.documents.outline import Outline
from huixiangdou.primitive.documents.text_decoding import read_text

_ADORNMENT_CHARS = frozenset('=-`:\'"~^_*+#<>.')


def parse_plain_text(path: Path, source: str) -> Document:
    return Document(source=source, sections=[Section(text=read_text(path).strip('\n'), kind='text')])


def parse_rst(path: Path, source: str) -> Document:
    return Document(source=source, sections=split_rst(read_text(path)))


def _adornment(line: str) -> str:
    """The adornment character if `line` is a run of one punctuation character (3+), else ''."""
    line = line.rstrip()
    if len(line) >= 3 and line[0] in _ADORNMENT_CHARS and line == line[0] * len(line):
        return line[0]
    return ''


def split_rst(text: str) -> list[Section]:
    lines = text.split('\n')
    outline = Outline('text')
    styles: list[tuple[str, bool]] = []  # (char, has_overline) in order of first use = level
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        # Overlined title: adornment, title, same adornment.
        char = _adornment(line) if line[:1] in _ADORNMENT_CHARS else ''
        if char and i + 2 < n and lines[i + 1].strip() and _adornment(lines[i + 2]) == char:
            title, overline = lines[i + 1].strip(), True
            i += 3
        elif (line.strip() and not line[0].isspace() and i + 1 < n
              and lines[i + 1][:1] in _ADORNMENT_CHARS and _adornment(lines[i + 1])
              and not _adornment(line)):
            char, title, overline = _adornment(lines[i + 1]), line.strip(), False
            i += 2
        else:
            outline.add(line)
            i += 1
            continue
        if (char, overline) not in styles:
            styles.append((char, overline))
        outline.heading(styles.index((char, overline)) + 1, title, title)
    return outline.finish()
