"""Generate stage: a prompt with numbered context passages; the answer cites them as [n].

References are the passages the answer cites, or, when it cites none, the passages it was given.
Context is trimmed to the configured length so the prompt fits the model.
"""
from __future__ import annotations

import re
from typing import AsyncIterator

from loguru import logger

from huixiangdou.service.llm_client import LLMClientError
from huixiangdou.service.worker.prompts import prompt
from huixiangdou.service.worker.session import ErrorCode, Passage, Session

_CITE = re.compile(r'\[(\d{1,2})\]')


def fit_context(passages: list[Passage], max_chars: int) -> list[Passage]:
    """Keep passages in order until `max_chars` is spent; the last one kept may be cut short."""
    kept, left = [], max_chars
    for p in passages:
        if left <= 50:
            break
        text = p.text if len(p.text) <= left else p.text[:left].rstrip() + '…'
        kept.append(Passage(text, p.reference, p.score, p.cosine))
        left -= len(text)
    return kept


def format_context(passages: list[Passage]) -> str:
    return '\n'.join(f'[{i}] ({p.reference}) {p.text}' for i, p in enumerate(passages, 1))


def cited_references(reply: str, passages: list[Passage], limit: int = 3) -> list[str]:
    cited = [int(n) for n in _CITE.findall(reply) if 1 <= int(n) <= len(passages)]
    chosen = [passages[n - 1] for n in cited] if cited else passages[:limit]
    refs: list[str] = []
    for p in chosen:
        if p.reference not in refs:
            refs.append(p.reference)
    return refs


class Generate:
    name = 'generate'

    def __init__(self, llm, context_max_length: int = 2000):
        self.llm = llm
        self.context_max_length = context_max_length

    def build_prompt(self, session: Session) -> str:
        session.passages = fit_context(session.passages, self.context_max_length)
        intro = ''
        if session.group_introduction:
            intro = (f'本群主题：{session.group_introduction}\n' if session.language == 'zh'
                     else f'This group is about: {session.group_introduction}\n')
        return prompt(session.language, 'generate', context=format_context(session.passages),
                      query=session.query, intro=intro)

    def _finish(self, session: Session, text: str) -> None:
        session.reply = text.strip()
        session.references = cited_references(session.reply, session.passages)
        if not session.reply:
            session.finish(ErrorCode.BAD_ANSWER)

    async def run(self, session: Session) -> None:
        try:
            reply = await self.llm.generate(self.build_prompt(session), history=session.history)
        except LLMClientError as exc:
            logger.warning('LLM failed for group={}: {}', session.group_id, exc)
            session.debug[self.name] = {'error': str(exc)}
            session.finish(ErrorCode.LLM_ERROR)
            return
        session.debug[self.name] = {'backend': reply.backend, 'model': reply.model}
        self._finish(session, reply.text)

    async def stream(self, session: Session) -> AsyncIterator[str]:
        """Yield answer pieces as they come; the session holds the whole reply at the end."""
        pieces: list[str] = []
        try:
            async for piece in self.llm.stream(self.build_prompt(session), history=session.history):
                pieces.append(piece)
                yield piece
        except LLMClientError as exc:
            session.debug[self.name] = {'error': str(exc)}
            session.finish(ErrorCode.LLM_ERROR)
            return
        self._finish(session, ''.join(pieces))
