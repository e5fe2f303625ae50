"""Which language a document's path says it is in, and which page is the same page in the other language
(docs/en/faq.md and docs/zh_cn/faq.md; README.md and README_zh-CN.md).

It reads paths only; it does not look at the text.
"""
from __future__ import annotations

import re

# A folder (docs/zh_cn/, docs/en/) or a suffix before the extension (README_zh-CN.md, intro-en.md).
_PATH_LANGUAGE = {
    'zh': re.compile(r'(^|/)(zh|zh[_-]cn|cn|chinese)(/|$)|[_-](zh|cn|zh[_-]cn)\.\w+$', re.I),
    'en': re.compile(r'(^|/)(en|en[_-]us|english)(/|$)|[_-]en\.\w+$', re.I),
}
_FOLDER = re.compile(r'(?<![^/])(?:zh|zh[_-]cn|cn|chinese|en|en[_-]us|english)(?=/)', re.I)
_SUFFIX = re.compile(r'[_-](?:zh|cn|zh[_-]cn|en)(\.\w+)$', re.I)


def path_language(source: str) -> str:
    """'zh', 'en' or '' (the path does not say)."""
    path = source.split('#', 1)[0]
    return next((lang for lang, pattern in _PATH_LANGUAGE.items() if pattern.search(path)), '')


def page_key(source: str) -> str:
    """The path with its language taken out: a page and its translation share it
    ('mmpose/docs/zh_cn/faq.md' and 'mmpose/docs/en/faq.md' -> 'mmpose/docs/*/faq.md';
    'README_zh-CN.md' and 'README.md' -> 'README.md')."""
    path = source.split('#', 1)[0]
    return _SUFFIX.sub(r'\1', _FOLDER.sub('*', path)).lower()


def translation_of(source: str, others: list[str], language: str) -> int:
    """Index in `others` of the same page as `source` whose path says `language`, or -1."""
    if language not in _PATH_LANGUAGE or path_language(source) == language:
        return -1
    key = page_key(source)
    return next((i for i, other in enumerate(others)
                 if path_language(other) == language and page_key(other) == key), -1)
