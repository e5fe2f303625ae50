"""Reject stage: the store's reject model scores the message; below the threshold the bot stays silent.

The threshold is the calibrated one unless config.ini's reject_throttle overrides it (resolved once by
config.reject_throttle_override; None = calibrated); it is fixed when the stage is built. The message's
features (embedding, BM25) are computed here once and left on the session for retrieval. The decision's
evidence goes to the session's debug record (and so to --verbose and the saved outcome).

It judges `Session.text`: the user's own words, plus the quote only when the follow-up stage made it the
context of a reply that asks about it; "谢谢，学到了" under the bot's answer is judged alone and stays silent
(docs/worker.md, "Follow-ups").
"""
from __future__ import annotations

import re

from loguru import logger

from huixiangdou.service.feature_store import FeatureStore
from huixiangdou.service.llm_client import LLMClientError
from huixiangdou.service.worker.prompts import prompt
from huixiangdou.service.worker.session import ErrorCode, Session
from huixiangdou.service.worker.stage import query_features, run_cpu


_VERDICT = re.compile(r'"on_topic"\s*:\s*(true|false)', re.I)


def parse_verdict(text: str) -> bool | None:
    """The LLM's judgement: {"on_topic": true|false} anywhere in its answer, else a leading 是/否/yes/no;
    None when it says neither."""
    match = _VERDICT.search(text)
    if match:
        return match.group(1).lower() == 'true'
    head = text.strip().lstrip('"\'*`#> ').lower()
    if head.startswith(('是', 'yes', 'true')):
        return True
    if head.startswith(('否', '不是', 'no', 'false')):
        return False
    return None


class Reject:
    """Stay silent on chatter: the store's reject model against the threshold. With `llm` and `band` > 0, a
    message whose score lies within `band` of the threshold is decided by the LLM instead (is it a question
    these documents are about?), as upstream asks its LLM; the rest never wait for it."""
    name = 'reject'

    def __init__(self, store: FeatureStore, reject_throttle: float | None = None, llm=None, band: float = 0.0):
        self.store = store
        self.threshold = store.decision_threshold(reject_throttle)  # StoreError if uncalibrated
        self.llm = llm if band > 0 else None
        self.band = band

    async def run(self, session: Session) -> None:
        features = await query_features(self.store, session)
        score, why = await run_cpu(self.store.reject_model.decide, features.evidence)
        answer = score >= self.threshold
        record = {'reject_score': round(score, 4), 'threshold': round(self.threshold, 4), 'answer': answer, **why}
        session.debug[self.name] = record
        if self.llm is not None and abs(score - self.threshold) <= self.band:
            verdict = await self._ask(session, features.evidence)
            if verdict is not None:
                record['answer'] = answer = verdict
        if not answer:
            session.finish(ErrorCode.UNRELATED)

    async def _ask(self, session: Session, evidence) -> bool | None:
        try:
            verdict, raw = await llm_judgement(self.llm, session.text, session.language, evidence)
        except LLMClientError as exc:
            # An optional second opinion: without it the reject model's decision stands.
            logger.warning('reject: LLM judgement skipped, the model decides: {}', exc)
            session.debug[self.name]['llm'] = {'error': str(exc)}
            return None
        session.debug[self.name]['llm'] = {'raw': raw[:200], 'on_topic': verdict}
        return verdict


async def llm_judgement(llm, text: str, language: str, evidence) -> tuple[bool | None, str]:
    """(the LLM's verdict on whether `text` is a question the documents answer, its raw answer); the
    closest passage (evidence.dense_best) goes into the prompt. LLMClientError when the LLM fails."""
    best = evidence.dense_best
    passage = f'{best.reference}: {best.text[:400]}' if best is not None else '-'
    reply = await llm.generate(prompt(language, 'reject_judge', query=text, passage=passage))
    return parse_verdict(reply.text), reply.text
