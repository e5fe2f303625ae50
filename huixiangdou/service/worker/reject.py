"""Reject stage: the store's reject model scores the message; below the threshold the bot stays silent.

The threshold is the calibrated one unless config.ini overrides it (config.reject_throttle_override says
whether it does); it is fixed when the stage is built. The decision's evidence goes to the session's debug record (and so to --verbose and the
saved outcome).
"""
from __future__ import annotations

from huixiangdou.service.feature_store import FeatureStore
from huixiangdou.service.worker.session import ErrorCode, Session
from huixiangdou.service.worker.stage import run_cpu


class Reject:
    name = 'reject'

    def __init__(self, store: FeatureStore, threshold_override: float | None = None):
        self.store = store
        self.threshold = store.decision_threshold(threshold_override)  # StoreError if uncalibrated

    def _decide(self, query: str) -> tuple[float, dict]:
        return self.store.reject_model.decide(self.store.evidence([query])[0])

    async def run(self, session: Session) -> None:
        score, why = await run_cpu(self._decide, session.query)
        session.debug[self.name] = {'reject_score': round(score, 4), 'threshold': round(self.threshold, 4),
                                    'answer': score >= self.threshold, **why}
        if score < self.threshold:
            session.finish(ErrorCode.UNRELATED)
