"""Intention stage (optional, LLM): is the message a question, and on what topic.

Greetings, thanks and "who are you" become NOT_A_QUESTION. Off by default: a 135M model cannot judge this.
"""
from __future__ import annotations

import json
import re

from loguru import logger

from huixiangdou.service.llm_client import LLMClientError
from huixiangdou.service.worker.prompts import prompt
from huixiangdou.service.worker.session import ErrorCode, Session

_JSON = re.compile(r'\{.*?\}', re.S)


def parse_intention(text: str) -> dict:
    """The first JSON object in the model's answer; {} when there is none."""
    match = _JSON.search(text)
    if not match:
        return {}
    try:
        value = json.loads(match.group())
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


class Intention:
    name = 'intention'

    def __init__(self, llm):
        self.llm = llm

    async def run(self, session: Session) -> None:
        try:
            reply = await self.llm.generate(prompt(session.language, 'intention', query=session.text))
        except LLMClientError as exc:
            # The judgement is an optional filter: without it the question still gets an answer.
            logger.warning('intention stage skipped: {}', exc)
            session.debug[self.name] = {'error': str(exc)}
            return
        verdict = parse_intention(reply.text)
        session.debug[self.name] = {'raw': reply.text[:200], 'verdict': verdict}
        if verdict.get('kind') in ('greeting', 'identity') or verdict.get('is_question') is False:
            session.finish(ErrorCode.NOT_A_QUESTION)
