"""Reject stage: the feature store's reject score against the threshold; below it the bot stays silent."""
from __future__ import annotations

from huixiangdou.service.feature_store import FeatureStore, StoreError
from huixiangdou.service.worker.session import ErrorCode, Session
from huixiangdou.service.worker.stage import run_cpu


class Reject:
    name = 'reject'

    def __init__(self, store: FeatureStore, threshold_override: float = -1.0):
        self.store = store
        # -1 means: use the threshold calibrated when the store was built.
        if threshold_override == -1 and store.threshold is None:
            raise StoreError('the feature store has no calibrated reject threshold, so every message would '
                             'be answered: rebuild it with good/bad question files ([feature_store] '
                             'good_questions / bad_questions) or set [feature_store] reject_throttle')
        self.threshold = store.threshold if threshold_override == -1 else threshold_override

    async def run(self, session: Session) -> None:
        score = await run_cpu(self.store.reject_score, session.query)
        session.debug[self.name] = {'reject_score': round(score.score, 4), 'cosine': round(score.cosine, 4),
                                    'coverage': round(score.coverage, 4), 'threshold': round(self.threshold, 4),
                                    'best': score.best.reference if score.best else None}
        if score.score < self.threshold:
            session.finish(ErrorCode.UNRELATED)
