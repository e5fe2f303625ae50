"""Parses Markdown into one Section per heading (ATX "## x" and setext underlines), kind "markdown".

Code fences stay whole inside their section and "#" lines inside them are not headings; it does not
render Markdown or strip inline markup from the body.
"""
from __future__ import annotations

import re
from pathlib import Path

from huixiangdou.primitive.chunk import Document
from huixiangdou.primitive.documents.outline import Outline
from huixiangdou.primitive.documents.text_decoding import read_text

# Only heading titles go through this, never every line.
_LINK = re.compile(r'!?\[([^\]]*)\]\([^)]*\)')
# Lines that may matter to the parser start with one of these (after up to 3 spaces of indent).
_INTERESTING = frozenset(' #`~=-')
# A setext underline under these is a thematic break or table text, not a heading.
_NOT_PARAGRAPH = ('- ', '* ', '+ ', '|', '>', '<')


def parse_markdown(path: Path, source: str) -> Document:
    return Document(source=source, sections=split_markdown(read_text(path)))


def _heading_title(raw: str) -> str:
    raw = raw.strip()
    # A closing run of #'s is decoration ("## Title ##"), unless the whole title is #'s.
    stripped = raw.rstrip('#')
    if stripped != raw and (not stripped or stripped[-1] in ' \t'):
        raw = stripped.rstrip()
    if '[' in raw:
        raw = _LINK.sub(r'\1', raw)
    return raw.replace('`', '').replace('**', '')


def _atx_level(line: str) -> int:
    """1-6 for an ATX heading line (indent already removed), else 0."""
    n = len(line) - len(line.lstrip('#'))
    if 1 <= n <= 6 and (len(line) == n or line[n] in ' \t'):
        return n
    return 0


def _front_matter_end(lines: list[str]) -> int:
    """Index of the line closing a leading YAML front-matter block, or -1."""
    if not lines or lines[0].rstrip() != '---':
        return -1
    for i in range(1, min(len(lines), 200)):
        if lines[i].rstrip() in ('---', '...'):
            return i
    return -1


def split_markdown(text: str) -> list:
    """Sections of Markdown `text`, one per heading, with heading paths as anchors."""
    lines = text.split('\n')
    outline = Outline('markdown')
    fence = ''  # the opening fence run ("```", "~~~~") while inside a fenced block
    start = _front_matter_end(lines) + 1
    for line in lines[:start]:
        outline.add(line)
    prev_plain = False  # the previous line is a paragraph line that a setext underline may claim
    for line in lines[start:]:
        if not line or line[0] not in _INTERESTING:
            outline.add(line)
            prev_plain = not fence and bool(line.strip()) and not line.startswith(_NOT_PARAGRAPH)
            continue
        body = line.lstrip(' ')
        if len(line) - len(body) > 3:  # indented code block
            outline.add(line)
            prev_plain = False
            continue
        if fence:
            if body.startswith(fence) and not body.lstrip(fence[0]).strip():
                fence = ''
            outline.add(line)
            continue
        if body.startswith(('```', '~~~')):
            fence = body[:len(body) - len(body.lstrip(body[0]))]
            outline.add(line)
            prev_plain = False
            continue
        if body.startswith('#'):
            level = _atx_level(body)
            if level:
                outline.heading(level, _heading_title(body[level:]), line)
                prev_plain = False
                continue
        elif prev_plain and body[0] in '=-':
            underline = body.rstrip()
            char = underline[0]
            if underline == char * len(underline) and len(underline) >= (2 if char == '=' else 3):
                title_line = outline.pop_last_line()
                outline.heading(1 if char == '=' else 2, _heading_title(title_line),
                                f'{title_line}\n{line}')
                prev_plain = False
                continue
        outline.add(line)
        prev_plain = bool(body.strip()) and not body.startswith(_NOT_PARAGRAPH)
    return outline.finish()
