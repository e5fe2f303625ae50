"""Parses saved HTML pages (BeautifulSoup + lxml) into one Section per heading, anchors from h1-h6.

Drops scripts, styles, navigation, page headers and footers; keeps <pre> blocks verbatim and renders
table rows "cell | cell". It does not fetch anything or run JavaScript.
"""
from __future__ import annotations

import re
from pathlib import Path

from bs4 import BeautifulSoup

from huixiangdou.primitive.chunk import Document
from huixiangdou.primitive.documents.outline import Outline
from huixiangdou.primitive.documents.text_decoding import decode_text

_DROPPED = ['script', 'style', 'nav', 'noscript', 'template', 'svg', 'iframe', 'head']
_HEADING_LEVEL = {f'h{n}': n for n in range(1, 7)}
_CELLS = frozenset({'td', 'th'})
# Blocks that end a paragraph, and those that only end a line.
_BLOCKS = frozenset({'p', 'div', 'table', 'ul', 'ol', 'dl', 'blockquote', 'section', 'article',
                     'main', 'aside', 'figure', 'address', 'details', 'form', 'header', 'footer',
                     'hr'})
_LINES = frozenset({'li', 'tr', 'dt', 'dd', 'figcaption', 'caption', 'summary', 'br'})
_CHARSET = re.compile(rb'<meta[^>]+charset\s*=\s*["\']?\s*([A-Za-z0-9_.:-]+)', re.I)
# Markers put into the text in place of headings, <pre> blocks and table cell ends. NUL cannot be in
# the page (decode_text rejects it); a stray STX in a page would only add a cell separator.
_MARK = '\x00'
_CELL = '\x02'


def parse_html(path: Path, source: str) -> Document:
    data = path.read_bytes()
    match = _CHARSET.search(data[:4096])
    text = decode_text(data, match.group(1).decode('ascii') if match else None)
    return Document(source=source, sections=split_html(text))


def split_html(text: str) -> list:
    soup = BeautifulSoup(text, 'lxml')
    for tag in soup.find_all(_DROPPED + ['header', 'footer']):
        if tag.decomposed:
            continue
        # Site banners and footers go; an <article>'s own header (often its <h1>) stays.
        if tag.name in ('header', 'footer') and tag.find_parent(['article', 'main']) is not None:
            continue
        tag.decompose()
    root = soup.body or soup
    blocks: list[str] = []  # <pre> text and heading titles, referenced by index from markers
    # One pass in document order. Tags are changed in place (.string, append) rather than with
    # replace_with, which scans the parent's children and goes quadratic on long flat pages.
    for tag in root.find_all(True):
        name = tag.name
        if name in _HEADING_LEVEL:
            blocks.append(' '.join(tag.get_text(' ').split()))
            tag.string = f'\n{_MARK}H{_HEADING_LEVEL[name]}:{len(blocks) - 1}\n'
        elif name == 'pre':
            blocks.append(tag.get_text().strip('\n'))
            tag.string = f'\n{_MARK}P{len(blocks) - 1}\n'
        elif name in _CELLS:
            tag.append(_CELL)
        elif name in _BLOCKS:
            tag.append('\n\n')
        elif name in _LINES:
            tag.append('\n')

    outline = Outline('text')
    blank = True
    for line in root.get_text().split('\n'):
        if line.startswith(_MARK):
            if line[1] == 'H':
                level, index = line[2:].split(':')
                title = blocks[int(index)]
                if title:
                    outline.heading(int(level), title, title)
                    blank = True  # no blank line between a heading and its first paragraph
            else:
                outline.add(blocks[int(line[2:])])
                blank = False
            continue
        line = ' '.join(line.split())
        if _CELL in line:
            cells = [c.strip() for c in line.split(_CELL)]
            while cells and not cells[-1]:
                cells.pop()
            line = ' | '.join(cells)
        if line:
            outline.add(line)
            blank = False
        elif not blank:
            outline.add('')
            blank = True
    return outline.finish()
