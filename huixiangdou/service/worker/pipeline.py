"""The worker: runs a message through the stages (work time → image text → follow-up → preprocess → reject
→ intention → retrieve → rerank → web search → generate → check) and returns the session, or streams it.

Stages live one per module; this module only wires them from the config and drives them: `run` and
`stream` share one loop, so both time the stages and save the outcome. Each knowledge base gets its own
reject, retrieve, rerank and generate stages; a message goes through those of its group's knowledge base.
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Callable

from loguru import logger

from huixiangdou.config import DEFAULT_KNOWLEDGE_BASE, Config, OCRConfig, WorkerConfig, reject_throttle_override
from huixiangdou.primitive.ocr import make_ocr
from huixiangdou.service.worker.check import Check
from huixiangdou.service.worker.followup import FollowUp
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


@dataclass
class KnowledgeBase:
    """One loaded knowledge base as the worker answers from it: its store, the reject threshold config.ini
    imposes (None = the store's calibrated one) and its reranker (None without the rerank stage)."""
    store: object
    reject_throttle: float | None = None
    reranker: object = None


def has_capable_llm(config: Config) -> bool:
    """A remote model or a local model of the user's choosing; not the bundled SmolLM2-135M alone."""
    return bool(config.llm.enable_remote) or bool(config.llm.server.local_llm_path)


class Unbuilt:
    """The only stage of a knowledge base that has no store yet: silence, with the reason in the record."""
    name = 'knowledge_base'

    def __init__(self, knowledge_base: str):
        self.knowledge_base = knowledge_base

    async def run(self, session: Session) -> None:
        session.debug['reason'] = f'knowledge base "{self.knowledge_base}" has no feature store yet'
        session.finish(ErrorCode.NO_SEARCH_RESULT)


class Worker:
    """Answer group messages from the feature store with an LLM.

    Usage:
        worker = Worker.from_config(load_config('config.ini'))
        session = await worker.run(Session(query='如何重建索引？'))
        if session.code.should_reply: send(session.reply, session.references)
    """

    def __init__(self, config: WorkerConfig, store, llm, reranker=None, web_search=None,
                 reject_throttle: float | None = None, log_path: Path | None = None, capable_llm: bool = True,
                 ocr: OCRConfig | None = None, knowledge_bases: dict[str, KnowledgeBase] | None = None,
                 route: Callable[[str], str] | None = None):
        """`store`, `reranker` and `reject_throttle` are the default knowledge base's; `reject_throttle` is
        config.reject_throttle_override's answer: None uses the store's calibrated threshold.
        `knowledge_bases` are the others by name, and `route(group_id)` names the one that answers a
        group (Config.knowledge_base_for); without them every message is answered from `store`.
        `capable_llm` False (only the bundled tiny model) makes answer_mode "auto" quote.
        `ocr` ([ocr], defaults when None) reads the images of a message when `config.ocr` is 1."""
        if config.enable_web_search and web_search is None:
            raise ValueError('[worker] enable_web_search = 1 needs a web search client')
        self.config = config
        self.llm = llm
        self.web_search = web_search
        self.capable_llm = capable_llm
        self.log_path = log_path
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
        # Runs right after work time, for messages that carry images only: a text message passes the
        # very same stages as before. The engine loads its model on the first image it reads.
        self.image_text: ImageText | None = None
        if config.ocr:
            ocr = ocr or OCRConfig()
            self.image_text = ImageText(make_ocr(ocr), ocr)
        bases = {DEFAULT_KNOWLEDGE_BASE: KnowledgeBase(store, reject_throttle, reranker), **(knowledge_bases or {})}
        self.knowledge_bases = bases
        self.route = route or (lambda group_id: DEFAULT_KNOWLEDGE_BASE)
        self.pipelines = {name: self._stages(name, kb) for name, kb in bases.items()}
        # Run for messages that quote another only, right before preprocess ("同问" under a quoted question
        # is a question, not a too-short one); the store's vocabulary tells a reply's own subject.
        self.follow_ups = {name: FollowUp(getattr(getattr(kb.store, 'sparse', None), 'specificity', None))
                           for name, kb in bases.items()}
        # The default knowledge base's, as before there were several (the web console reads worker.store).
        self.store = store
        self.stages = self.pipelines[DEFAULT_KNOWLEDGE_BASE]
        # Knowledge bases configured but never built (from_config fills it): their groups get no answer.
        self.unbuilt: set[str] = set()

    def _stages(self, name: str, kb: KnowledgeBase) -> list:
        """The stages that answer from one knowledge base, in order."""
        config, llm = self.config, self.llm
        if config.enable_rerank and kb.reranker is None:
            raise ValueError(f'[worker] enable_rerank = 1 needs a reranker_model_path for knowledge base "{name}"')
        stages: list = [WorkTime(config.time), Preprocess(config.min_query_length, config.language),
                        Reject(kb.store, kb.reject_throttle, llm if self.capable_llm else None, config.reject_llm_band)]
        if config.enable_intention:
            stages.append(Intention(llm))
        # With a reranker, retrieve a wider net so it can promote what retrieval ranked lower.
        candidates = config.retrieve_top_k * 4 if config.enable_rerank else config.retrieve_top_k
        weight = None if config.retrieve_dense_weight == -1 else config.retrieve_dense_weight
        stages.append(Retrieve(kb.store, candidates, path_factor=config.retrieve_path_factor, dense_weight=weight,
                               graph_weight=config.retrieve_graph_weight))
        if config.enable_rerank:
            stages.append(Rerank(kb.reranker, config.retrieve_top_k))
        if config.enable_web_search:
            stages.append(OnlineSearch(self.web_search))
        # A capable model reads every retrieved passage, numbered as retrieved (the quotes and the check of its
        # citations use the same numbers); the bundled tiny one copies more back the more it is given.
        stages.append(Generate(llm, config.context_max_length, answer_mode=config.answer_mode,
                               embedder=getattr(kb.store, 'embedder', None), capable_llm=self.capable_llm,
                               max_passages=config.retrieve_top_k if self.capable_llm else 2))
        if config.enable_check:
            stages.append(Check(llm))
        return stages

    @property
    def generate(self) -> Generate:
        """The default knowledge base's generate stage."""
        return next(stage for stage in self.stages if isinstance(stage, Generate))

    @classmethod
    def from_config(cls, config: Config, embedder=None, knowledge_base: str | None = None) -> 'Worker':
        """Load every knowledge base's store (built beforehand) and connect to the LLM server: the one
        factory of the worker, for `main`, the frontends and the web console alike (groups, knowledge
        bases, rerank, web search, OCR and the saved outcome all come from `config`).

        Knowledge bases with the same embedding model (or reranker) share one loaded copy of it.
        `embedder`, when given, is that copy for [feature_store]'s model, already loaded (the console's
        builder holds one): the knowledge bases naming that model answer with it instead of loading their own.
        `knowledge_base`, when given, is the only one loaded, and it answers every message whatever its group
        (the web console keeps one such worker per knowledge base); `embedder` is then for its model.
        Loads files and models: call it in a thread from async code."""
        from huixiangdou.service.api_embedder import make_embedder
        from huixiangdou.service.feature_store import FeatureStore, StoreError
        from huixiangdou.service.feature_store.store_files import CURRENT
        from huixiangdou.service.llm_client import LLMClient

        known = config.knowledge_bases()
        if knowledge_base is not None:
            config.for_knowledge_base(knowledge_base)  # ConfigError naming the known ones
            known = {knowledge_base: known[knowledge_base]}
        embedders: dict[tuple[str, str], object] = {}
        if embedder is not None:
            fs = known[knowledge_base] if knowledge_base is not None else config.feature_store
            embedders[(fs.embedding_model_path, fs.embedding_api_model)] = embedder
        rerankers: dict[str, object] = {}
        bases: dict[str, KnowledgeBase] = {}
        unbuilt: set[str] = set()
        for name, fs in known.items():
            kb_config = config.for_knowledge_base(name)
            model = (fs.embedding_model_path, fs.embedding_api_model)
            if model not in embedders:
                embedders[model] = make_embedder(kb_config)
            if name != DEFAULT_KNOWLEDGE_BASE and not (config.path(fs.work_dir) / CURRENT).exists():
                # Created (in the console) but never built: its groups stay silent until it is, the others
                # are answered. A store that exists but is damaged is still refused below.
                logger.warning('knowledge base "{}" has no feature store in {} yet: its groups get no answers until '
                               'it is built (console, or python -m huixiangdou.service.feature_store --kb {})',
                               name, config.path(fs.work_dir), name)
                unbuilt.add(name)
                continue
            try:
                store = FeatureStore.load(config.path(fs.work_dir), embedders[model])
            except StoreError as exc:
                raise StoreError(f'knowledge base "{name}": {exc}') from exc
            reranker = None
            if config.worker.enable_rerank and fs.reranker_model_path:
                if fs.reranker_model_path not in rerankers:
                    rerankers[fs.reranker_model_path] = _load_reranker(kb_config)
                reranker = rerankers[fs.reranker_model_path]
            bases[name] = KnowledgeBase(store, reject_throttle_override(kb_config, store.calibrated_threshold),
                                        reranker)
        web_search = None
        if config.worker.enable_web_search:
            from huixiangdou.service.web_search import WebSearch
            web_search = WebSearch(config.web_search, save_dir=config.path(config.web_search.save_dir))
        log_path = config.path(config.worker.save_path) if config.worker.save_path else None
        if knowledge_base is not None:
            if knowledge_base in unbuilt:
                raise StoreError(f'knowledge base "{knowledge_base}" has no feature store yet: build it first')
            only = bases[knowledge_base]
            return cls(config.worker, only.store, LLMClient(config.llm), only.reranker, web_search,
                       only.reject_throttle, log_path, capable_llm=has_capable_llm(config), ocr=config.ocr,
                       knowledge_bases=bases, route=lambda group_id: knowledge_base)
        default = bases.pop(DEFAULT_KNOWLEDGE_BASE)
        if bases:
            logger.info('knowledge bases: {} (groups choose theirs with knowledge_base)',
                        ', '.join([DEFAULT_KNOWLEDGE_BASE, *bases]))
        worker = cls(config.worker, default.store, LLMClient(config.llm), default.reranker, web_search,
                     default.reject_throttle, log_path, capable_llm=has_capable_llm(config), ocr=config.ocr,
                     knowledge_bases=bases, route=config.knowledge_base_for)
        worker.unbuilt = unbuilt
        return worker

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
        try:
            for stage in self._stages_for(session):
                started = time.perf_counter()
                if isinstance(stage, Generate) and stream_answer:
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

    def _stages_for(self, session: Session) -> list:
        """The stages of the knowledge base that answers the session's group, with image reading when it
        brought images and the follow-up stage when it quotes a message; the knowledge base's name goes to the debug record and the saved outcome."""
        name = self.route(session.group_id)
        session.debug['knowledge_base'] = name
        stages = self.pipelines.get(name)
        if stages is None and name in self.unbuilt:
            return [Unbuilt(name)]
        if stages is None:  # Config.validate refuses unknown names; a hand-made route may not
            raise ValueError(f'group {session.group_id!r} routes to knowledge base "{name}", which this worker '
                             f'has not loaded; loaded: {", ".join(self.pipelines)}')
        before_preprocess = []
        if session.images and self.image_text is not None:
            before_preprocess.append(self.image_text)
        if session.quote:
            before_preprocess.append(self.follow_ups[name])
        return [stages[0], *before_preprocess, *stages[1:]]

    async def _record(self, session: Session) -> None:
        """Log the outcome and append it to save_path; a failure here never changes the answer."""
        logger.info('group={} kb={} code={} query={!r}{}', session.group_id, session.debug.get('knowledge_base'),
                    session.code, session.query[:80],
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
                  'knowledge_base': session.debug.get('knowledge_base', DEFAULT_KNOWLEDGE_BASE),
                  'query': session.query, 'code': session.code.name, 'reply': session.reply,
                  'references': session.references}
        if session.quote:
            record['quote'] = session.quote
            if 'follow_up' in session.debug:  # how the reply was read, and what it was judged with
                record['follow_up'] = session.debug['follow_up']
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


def _load_reranker(config: Config):
    """The cross-encoder of config.feature_store, warmed up (a local folder is resolved against the config)."""
    from huixiangdou.service.reranker import Reranker

    path = config.feature_store.reranker_model_path
    if not path.startswith(('http://', 'https://')) and config.path(path).exists():
        path = str(config.path(path))
    reranker = Reranker(path, api_token=config.feature_store.resolved_api_token)
    reranker.warm_up()
    return reranker
