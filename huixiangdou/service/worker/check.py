"""Check stage (optional, LLM): relevance and safety of the answer before it is sent.

A low relevance score gives BAD_ANSWER, an unsafe answer SECURITY; neither is sent to the group.
"""
from __future__ import annotations

import re

from loguru import logger

from huixiangdou.service.llm_client import LLMClientError
from huixiangdou.service.worker.prompts import prompt
from huixiangdou.service.worker.session import ErrorCode, Session

_NUMBER = re.compile(r'\d+')


class Check:
    name = 'check'

    def __init__(self, llm, min_relevance: int = 5):
        self.llm = llm
        self.min_relevance = min_relevance

    async def run(self, session: Session) -> None:
        try:
            relevance = await self.llm.generate(
                prompt(session.language, 'relevance', query=session.text, reply=session.reply))
            security = await self.llm.generate(prompt(session.language, 'security', reply=session.reply))
        except LLMClientError as exc:
            # Without a verdict the answer is not sent: an unchecked answer is worse than silence.
            logger.warning('check stage failed: {}', exc)
            session.finish(ErrorCode.LLM_ERROR)
            return
        numbers = _NUMBER.findall(relevance.text)
        score = min(int(numbers[0]), 10) if numbers else 0
        unsafe = security.text.strip().lower().startswith(('yes', '是'))
        session.debug[self.name] = {'relevance': score, 'unsafe': unsafe}
        if unsafe:
            session.finish(ErrorCode.SECURITY)
        elif score < self.min_relevance:
            session.finish(ErrorCode.BAD_ANSWER)
