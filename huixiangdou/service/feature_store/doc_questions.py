"""The documents' own questions: FAQ entries and question-like headings ("如何…", "为什么…吗？", "How do I…?")
harvested from a store's chunks, on-topic messages written by the maintainers.

It only finds them; the reject model learns from them (message_model.py, with a weight below the group's own
examples) and the calibration decides whether to (store_calibration.py).
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from huixiangdou.primitive.chunk import Chunk

MAX_QUESTIONS = 2000        # a huge knowledge base keeps an evenly spread sample of its questions
MIN_CHARS, MAX_CHARS = 4, 150

_HEADING = re.compile(r'^ {0,3}#{1,6}[ \t]+(.+?)[ \t#]*$', re.M)
# "Q: …", "Q3：…", "问：…" lines (bold or not), as FAQ pages without headings write them.
_Q_LINE = re.compile(r'^[ \t>*_-]*(?:\*\*|__)?[ \t]*(?:Q\d*|问|问题)[ \t]*[:：.][ \t]*(.+?)[ \t*_]*$', re.M)
# A top-level list item of an FAQ page: its entries are often the error a user pastes ("- 'No module named x'").
_FAQ_ITEM = re.compile(r'^(?:[-*+]|\d{1,2}[.)])[ \t]+(.+)$', re.M)
_FAQ_FILE = re.compile(r'(?:^|[/_.\- ])(?:faqs?|q&a|qa)(?:[/_.\- ]|$)|常见问题|问答', re.I)
_ZH_QUESTION = re.compile(r'如何|怎么|怎样|为什么|为何|能否|可否|是否|能不能|可不可以|有没有|什么|哪些|哪个|哪里|多少|吗[?？]?$|呢[?？]?$')
# English: "How to …" and "Why …" ask without a question mark; other openers ("What", "Is") need one.
_EN_QUESTION = re.compile(r'^(?:how|why)\b', re.I)
_EN_ASKING = re.compile(r'^(?:can|could|what|which|when|where|who|is|are|do|does|did|should|will|would|may)\b', re.I)
_ERROR_LIKE = re.compile(r'\w(?:Error|Exception)\b|\berror\b|not found|cannot|can\'t|failed|No module named', re.I)
# Prefixes that number or label an entry rather than ask: "Q5:", "1.", "3)", "问题一：".
_LABEL = re.compile(r'^(?:Q\d*|问题?[一二三四五六七八九十\d]*|\d+[.)、])[ \t]*[:：.]?[ \t]*', re.I)
_LINK = re.compile(r'!?\[([^\]]*)\]\([^)]*\)')
_MARKUP = re.compile(r'\\(?=[!-/:-@\[-`{-~])|`|\*\*|<[^>]+>')  # escapes, code spans, bold, HTML


@dataclass
class DocQuestion:
    """One harvested question and where it was found (for explaining and for tests)."""
    text: str
    source: str


def clean(title: str) -> str:
    """A heading or list item as a user would type it: no Markdown, links reduced to their text, no label."""
    text = _MARKUP.sub('', _LINK.sub(r'\1', title))
    text = _LABEL.sub('', ' '.join(text.split()))
    if len(text) > 1 and text[0] in '"\'“' and text[-1] in '"\'”':
        text = text[1:-1]
    return text.strip()


def is_question(text: str) -> bool:
    """Asked as a question: a question mark at the end, a Chinese question word, or an English question opener."""
    if text.endswith(('?', '？')):
        return bool(_ZH_QUESTION.search(text) or _EN_QUESTION.match(text) or _EN_ASKING.match(text)
                    or not text.isascii())
    return bool(_ZH_QUESTION.search(text) or _EN_QUESTION.match(text))


def _leaf_anchors(chunks: list[Chunk]) -> set[str]:
    """A file's anchors that no other anchor extends: entries, not the categories that group them."""
    anchors = {c.anchor for c in chunks if c.anchor}
    parents = {a.rsplit('/', 1)[0] for a in anchors if '/' in a}
    return anchors - parents


def harvest_questions(chunks: Iterable[Chunk], limit: int = MAX_QUESTIONS) -> list[DocQuestion]:
    """The documents' questions, each text once, in document order: question-like headings anywhere, and on
    FAQ pages every entry heading, "Q:" line and top-level list item that asks or quotes an error.

    Usage:
        harvest_questions(store.chunks)   # → [DocQuestion('如何使用本地已下好的 Huggingface 模型?', 'opencompass/…/faq.md'), …]
    """
    by_source: dict[str, list[Chunk]] = defaultdict(list)
    for chunk in chunks:
        by_source[chunk.source].append(chunk)
    found: dict[str, DocQuestion] = {}

    def keep(raw: str, source: str, any_entry: bool) -> None:
        text = clean(raw)
        if MIN_CHARS <= len(text) <= MAX_CHARS and text.lower() not in found and (
                is_question(text) or (any_entry and _ERROR_LIKE.search(text))):
            found[text.lower()] = DocQuestion(text, source)

    for source, file_chunks in by_source.items():
        faq_file = bool(_FAQ_FILE.search(source))
        leaves = _leaf_anchors(file_chunks)
        for chunk in file_chunks:
            faq = faq_file or bool(_FAQ_FILE.search(chunk.anchor))   # an FAQ page, or a README's "FAQ" section
            headings = _HEADING.findall(chunk.text)
            for i, title in enumerate(headings):
                # On an FAQ page an entry's heading (the last one of a section with no subsections) is its
                # question, asked or not ("No module named '_turbomind'"); the ones above it are categories.
                keep(title, source, faq and chunk.anchor in leaves and i == len(headings) - 1)
            if faq:
                for m in _Q_LINE.finditer(chunk.text):
                    keep(m.group(1), source, True)
                for m in _FAQ_ITEM.finditer(chunk.text):
                    keep(m.group(1), source, True)
    questions = list(found.values())
    if len(questions) > limit:
        questions = [questions[int(i)] for i in np.linspace(0, len(questions) - 1, limit)]
    return questions
