"""Parses Markdown into one Section per heading, kind "markdown", finding headings with markdown-it-py.

Section bodies are the original source lines cut at the headings' line ranges, so code fences,
tables and HTML stay exactly as written; it does not render Markdown or strip markup from bodies.
"""
from __future__ import annotations

import re
from pathlib import Path

from markdown_it import MarkdownIt
from markdown_it.token import Token

from huixiangdou.primitive.chunk import Document
from huixiangdou.primitive.documents.outline import Outline
from huixiangdou.primitive.documents.text_decoding import normalise_newlines, read_text

# CommonMark plus GFM tables, as GitHub reads a README. Only the block structure is needed to find
# headings, so the inline pass (most of the parse time) runs on heading titles alone.
_BLOCKS = MarkdownIt('commonmark').enable('table').disable(['inline', 'text_join'])
_INLINE = MarkdownIt('commonmark').enable('strikethrough')
# Characters that can start inline markup, an entity or an escape in a heading's title.
_MARKUP = re.compile(r'[\\`*_~\[\]!<>&]')
_MAX_TITLE_SOURCE = 1000


def parse_markdown(path: Path, source: str) -> Document:
    return Document(source=source, sections=split_markdown(read_text(path)))


def _front_matter_end(lines: list[str]) -> int:
    """Index of the line closing a leading YAML front-matter block, or -1."""
    # CommonMark has no front matter: it would read "---", "title: x", "---" as a setext heading.
    if not lines or lines[0].rstrip() != '---':
        return -1
    for i in range(1, min(len(lines), 200)):
        if lines[i].rstrip() in ('---', '...'):
            return i
    return -1


def _plain_text(tokens: list[Token]) -> str:
    """The visible text of inline tokens: link text and image alt text kept, markup and HTML dropped."""
    parts = []
    for token in tokens:
        if token.type in ('text', 'text_special', 'code_inline'):
            parts.append(token.content)
        elif token.type in ('softbreak', 'hardbreak'):
            parts.append(' ')
        elif token.type == 'image' and token.children:
            parts.append(_plain_text(token.children))
    return ''.join(parts)


def _heading_title(inline: Token) -> str:
    content = inline.content
    if not _MARKUP.search(content):
        return content  # most titles: nothing to strip, and parsing them costs 20 µs each
    # Titles are cut to 100 characters later; a whole paragraph underlined by "---" is one title.
    return _plain_text(_INLINE.parseInline(content[:_MAX_TITLE_SOURCE])[0].children or [])


def split_markdown(text: str) -> list:
    """Sections of Markdown `text`, one per heading, with heading paths as anchors.

    A heading inside a list item or block quote starts a section too: GitHub shows it as a heading,
    and READMEs use "- ### Step" as one. "#" lines inside a fence or an HTML block are not headings.
    """
    lines = normalise_newlines(text).split('\n')
    outline = Outline('markdown')
    body_start = _front_matter_end(lines) + 1
    tokens = _BLOCKS.parse('\n'.join(lines[body_start:]))
    cursor = 0  # first source line not yet given to the outline
    for i, token in enumerate(tokens):
        if token.type != 'heading_open' or token.map is None:
            continue
        first, end = token.map[0] + body_start, token.map[1] + body_start
        if first > cursor:
            outline.add('\n'.join(lines[cursor:first]))
        outline.heading(int(token.tag[1]), _heading_title(tokens[i + 1]),
                        '\n'.join(lines[first:end]))
        cursor = end
    if cursor < len(lines):
        outline.add('\n'.join(lines[cursor:]))
    return outline.finish()
