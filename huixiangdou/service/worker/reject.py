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

from huixiangdou.service.feature_store import FeatureStore
from huixiangdou.service.worker.session import ErrorCode, Session
from huixiangdou.service.worker.stage import query_features, run_cpu


class Reject:
    name = 'reject'

    def __init__(self, store: FeatureStore, reject_throttle: float | None = None):
        self.store = store
        self.threshold = store.decision_threshold(reject_throttle)  # StoreError if uncalibrated

    async def run(self, session: Session) -> None:
        features = await query_features(self.store, session)
        score, why = await run_cpu(self.store.reject_model.decide, features.evidence)
        session.debug[self.name] = {'reject_score': round(score, 4), 'threshold': round(self.threshold, 4),
                                    'answer': score >= self.threshold, **why}
        if score < self.threshold:
            session.finish(ErrorCode.UNRELATED)
