"""Parses saved HTML pages (BeautifulSoup + lxml) into one Section per heading, anchors from h1-h6.

Drops scripts, styles, navigation, page headers and footers; keeps <pre> blocks verbatim and renders
table rows "cell | cell". It does not fetch anything or run JavaScript.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from bs4 import BeautifulSoup
from bs4.element import PageElement, Tag

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
    root = soup.body or soup
    blocks: list[str] = []  # <pre> text and heading titles, referenced by index from markers
    text = ''.join(_page_text(root, blocks, root.interesting_string_types))

    outline = Outline('text')
    blank = True
    for line in text.split('\n'):
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


def _page_text(root: Tag, blocks: list[str], kept: tuple) -> Iterator[str]:
    """The page's text in document order, with a marker for each heading and <pre> block (their text goes
    to `blocks`) and a newline or cell separator after each block, line and cell.

    One iterative walk that reads each node once and changes nothing: editing the tree (append, replace)
    or recursing made a page nested thousands of tags deep cost seconds to minutes, or a RecursionError.
    """
    # Entries: a node to visit with whether it sits inside an <article>/<main>, or a str to emit.
    stack: list[tuple[PageElement, bool] | str] = [(root, False)]
    while stack:
        entry = stack.pop()
        if isinstance(entry, str):
            yield entry
            continue
        node, in_article = entry
        if not isinstance(node, Tag):
            if type(node) in kept:
                yield str(node)
            continue
        name = node.name
        if name in _DROPPED or (name in ('header', 'footer') and not in_article):
            continue  # site banners and footers go; an <article>'s own header (often its <h1>) stays
        if name in _HEADING_LEVEL:
            blocks.append(' '.join(' '.join(_strings(node, kept)).split()))
            yield f'\n{_MARK}H{_HEADING_LEVEL[name]}:{len(blocks) - 1}\n'
            continue
        if name == 'pre':
            blocks.append(''.join(_strings(node, kept)).strip('\n'))
            yield f'\n{_MARK}P{len(blocks) - 1}\n'
            continue
        end = _CELL if name in _CELLS else '\n\n' if name in _BLOCKS else '\n' if name in _LINES else ''
        if end:
            stack.append(end)
        inside = in_article or name in ('article', 'main')
        stack.extend((child, inside) for child in reversed(node.contents))


def _strings(tag: Tag, kept: tuple) -> Iterator[str]:
    """The text under `tag` (a heading or <pre>) without dropped elements, iteratively."""
    stack: list[PageElement] = [tag]
    while stack:
        node = stack.pop()
        if isinstance(node, Tag):
            if node is tag or node.name not in _DROPPED:
                stack.extend(reversed(node.contents))
        elif type(node) in kept:
            yield str(node)
