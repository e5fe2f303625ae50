"""The worker: runs a message through the stages (work time → image text → preprocess → reject → intention
→ retrieve → rerank → web search → generate → check) and returns the session, or streams it.

Stages live one per module; this module only wires them from the config and drives them: `run` and
`stream` share one loop, so both time the stages and save the outcome.
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

from loguru import logger

from huixiangdou.config import Config, OCRConfig, WorkerConfig, reject_throttle_override
from huixiangdou.primitive.ocr import make_ocr
from huixiangdou.service.worker.check import Check
from huixiangdou.service.worker.generate import Generate
from huixiangdou.service.worker.image_text import ImageText
from huixiangdou.service.worker.intention import Intention
from huixiangdou.service.worker.online_search import OnlineSearch
from huixiangdou.service.worker.preprocess import Preprocess
from huixiangdou.service.worker.reject import Reject
from huixiangdou.service.worker.rerank import Rerank
from huixiangdou.service.worker.retrieve import Retrieve
from huixiangdou.service.worker.session import ErrorCode, Session
from huixiangdou.service.worker.work_time import WorkTime


@dataclass
class WorkerEvent:
    """One step of a streamed answer: a stage finished, a piece of the answer, or the end."""
    kind: str            # 'stage' | 'token' | 'done'
    session: Session
    stage: str = ''
    text: str = ''


def has_capable_llm(config: Config) -> bool:
    """A remote model or a local model of the user's choosing; not the bundled SmolLM2-135M alone."""
    return bool(config.llm.enable_remote) or bool(config.llm.server.local_llm_path)


class Worker:
    """Answer group messages from the feature store with an LLM.

    Usage:
        worker = Worker.from_config(load_config('config.ini'))
        session = await worker.run(Session(query='如何重建索引？'))
        if session.code.should_reply: send(session.reply, session.references)
    """

    def __init__(self, config: WorkerConfig, store, llm, reranker=None, web_search=None,
                 reject_throttle: float | None = None, log_path: Path | None = None, capable_llm: bool = True,
                 ocr: OCRConfig | None = None):
        """`reject_throttle` is config.reject_throttle_override's answer: None uses the store's calibrated
        threshold. `capable_llm` False (only the bundled tiny model) makes answer_mode "auto" quote.
        `ocr` ([ocr], defaults when None) reads the images of a message when `config.ocr` is 1."""
        if config.enable_rerank and reranker is None:
            raise ValueError('[worker] enable_rerank = 1 needs [feature_store] reranker_model_path')
        if config.enable_web_search and web_search is None:
            raise ValueError('[worker] enable_web_search = 1 needs a web search client')
        self.config = config
        self.store = store
        self.llm = llm
        self.log_path = log_path
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
        stages: list = [WorkTime(config.time), Preprocess(config.min_query_length, config.language),
                        Reject(store, reject_throttle)]
        # Runs right after work time, for messages that carry images only: a text message passes the
        # very same stages as before. The engine loads its model on the first image it reads.
        self.image_text: ImageText | None = None
        if config.ocr:
            ocr = ocr or OCRConfig()
            self.image_text = ImageText(make_ocr(ocr), ocr)
        if config.enable_intention:
            stages.append(Intention(llm))
        # With a reranker, retrieve a wider net so it can promote what retrieval ranked lower.
        candidates = config.retrieve_top_k * 4 if config.enable_rerank else config.retrieve_top_k
        stages.append(Retrieve(store, candidates))
        if config.enable_rerank:
            stages.append(Rerank(reranker, config.retrieve_top_k))
        if config.enable_web_search:
            stages.append(OnlineSearch(web_search))
        self.generate = Generate(llm, config.context_max_length, answer_mode=config.answer_mode,
                                 embedder=getattr(store, 'embedder', None), capable_llm=capable_llm)
        stages.append(self.generate)
        if config.enable_check:
            stages.append(Check(llm))
        self.stages = stages

    @classmethod
    def from_config(cls, config: Config) -> 'Worker':
        """Load the feature store (built beforehand) and connect to the LLM server."""
        from huixiangdou.service.api_embedder import make_embedder
        from huixiangdou.service.feature_store import FeatureStore
        from huixiangdou.service.llm_client import LLMClient

        store = FeatureStore.load(config.path(config.feature_store.work_dir), make_embedder(config))
        reranker = web_search = None
        if config.worker.enable_rerank and config.feature_store.reranker_model_path:
            from huixiangdou.service.reranker import Reranker
            path = config.feature_store.reranker_model_path
            if not path.startswith(('http://', 'https://')) and config.path(path).exists():
                path = str(config.path(path))
            reranker = Reranker(path, api_token=config.feature_store.resolved_api_token)
            reranker.warm_up()
        if config.worker.enable_web_search:
            from huixiangdou.service.web_search import WebSearch
            web_search = WebSearch(config.web_search, save_dir=config.path(config.web_search.save_dir))
        log_path = config.path(config.worker.save_path) if config.worker.save_path else None
        return cls(config.worker, store, LLMClient(config.llm), reranker, web_search,
                   reject_throttle_override(config, store.calibrated_threshold), log_path,
                   capable_llm=has_capable_llm(config), ocr=config.ocr)

    async def run(self, session: Session) -> Session:
        """Run the message through every stage and return it finished (never raises)."""
        async for _ in self._drive(session, stream_answer=False):
            pass
        return session

    async def stream(self, session: Session) -> AsyncIterator[WorkerEvent]:
        """Like run, but yields an event after each stage and each piece of the answer as it comes."""
        async for event in self._drive(session, stream_answer=True):
            yield event

    async def _drive(self, session: Session, stream_answer: bool) -> AsyncIterator[WorkerEvent]:
        """The one path of a message, for run and stream alike: the stages in order until one finishes
        the session, each timed into debug['ms']; then the outcome is logged and saved, and 'done'."""
        stages = self.stages
        if session.images and self.image_text is not None:
            stages = [stages[0], self.image_text, *stages[1:]]
        try:
            for stage in stages:
                started = time.perf_counter()
                if stage is self.generate and stream_answer:
                    # Streamed, generation's time includes the consumer's time between pieces.
                    async for piece in stage.stream(session):
                        yield WorkerEvent('token', session, stage.name, piece)
                else:
                    await stage.run(session)
                session.debug.setdefault('ms', {})[stage.name] = round((time.perf_counter() - started) * 1000, 2)
                yield WorkerEvent('stage', session, stage.name)
                if session.done:
                    break
            if not session.done:
                session.finish(ErrorCode.SUCCESS)
        except Exception:  # boundary: a frontend must get a session back, never an exception
            logger.exception('worker failed on group={} query={!r}', session.group_id, session.query[:80])
            session.finish(ErrorCode.INTERNAL_ERROR)
        await self._record(session)
        yield WorkerEvent('done', session)

    async def _record(self, session: Session) -> None:
        """Log the outcome and append it to save_path; a failure here never changes the answer."""
        logger.info('group={} code={} query={!r}{}', session.group_id, session.code, session.query[:80],
                    f' image_text={session.image_text[:80]!r}' if session.image_text else '')
        logger.debug('group={} stages: {}', session.group_id, session.debug)
        if self.log_path is None:
            return
        try:
            await asyncio.to_thread(self._append_log, session)
        except (OSError, ValueError) as exc:  # a full disk or odd text must not turn an answer into a failure
            logger.warning('could not save the outcome to {}: {}', self.log_path, exc)

    def _append_log(self, session: Session) -> None:
        """One JSON line per message: what came in, what the bot decided, what it said."""
        record = {'time': time.strftime('%Y-%m-%dT%H:%M:%S'), 'group': session.group_id,
                  'query': session.query, 'code': session.code.name, 'reply': session.reply,
                  'references': session.references}
        if session.quote:
            record['quote'] = session.quote
        if session.images:
            # What the screenshots said, never their bytes.
            record['images'] = len(session.images)
            record['image_text'] = session.image_text
        if 'reject' in session.debug:
            # Why the bot answered or stayed silent: score, threshold, nearest examples, best chunks.
            record['reject'] = session.debug['reject']
        with open(self.log_path, 'a', encoding='utf-8') as f:
            f.write(json.dumps(record, ensure_ascii=False) + '\n')

    async def close(self) -> None:
        close = getattr(self.llm, 'close', None)
        if close is not None:
            await close()
