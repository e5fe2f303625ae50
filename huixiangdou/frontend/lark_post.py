"""Builds Lark rich-text ("post") content for an answer: quoted question, reply, references.

Shapes only; sending is done by lark.py (webhook) and lark_open_api.py (app).
"""
from __future__ import annotations

from huixiangdou.service.worker.citation import numbered

QUOTE_LIMIT = 80


def _quote(question: str) -> str:
    question = ' '.join(question.split())
    return question if len(question) <= QUOTE_LIMIT else question[:QUOTE_LIMIT - 1] + '…'


def answer_post(reply: str, references: list[str], question: str = '', title: str = '') -> dict:
    """The locale body `{"zh_cn": {"title", "content": [[...], ...]}}` (one inner list per line)."""
    lines: list[list[dict]] = []
    if question:
        lines.append([{'tag': 'text', 'text': f'> {_quote(question)}'}])
    lines.extend([{'tag': 'text', 'text': line}] for line in reply.splitlines() or [''])
    if references:
        lines.append([{'tag': 'text', 'text': '参考资料 References:'}])
        lines.extend([{'tag': 'text', 'text': ref}] for ref in numbered(references))
    return {'zh_cn': {'title': title, 'content': lines}}
