"""Parses source code and config files as one Section of kind "code" (the splitter cuts at definitions).

It does not parse the language; only the text is decoded and newlines normalised.
"""
from __future__ import annotations

from pathlib import Path

from huixiangdou.primitive.chunk import Document, Section
from huixiangdou.primitive.documents.text_decoding import read_text


def parse_code(path: Path, source: str) -> Document:
    return Document(source=source, sections=[Section(text=read_text(path).strip('\n'), kind='code')])
