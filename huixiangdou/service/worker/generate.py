"""Generate stage: answer from numbered context passages, cited as [n]; a degenerate answer (loop,
echo, empty, cut) is never kept: `auto` falls back to an extractive answer, `generate` stays silent.

This is where an answer and its references are finalised: citations are renumbered as the reader sees
them (citation.py), in the streamed pieces as in `session.reply`, so every consumer shows `[n]` against
`references[n - 1]`. It does not judge relevance or safety (the check stage does).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import AsyncIterator

from loguru import logger

from huixiangdou.service.llm_client import LLMClientError, StreamPiece
from huixiangdou.service.worker.citation import CitationNumbering, number_citations
from huixiangdou.service.worker.degenerate import Degeneration, detect_degeneration
from huixiangdou.service.worker.extract import Extract
from huixiangdou.service.worker.image_text import error_lines
from huixiangdou.service.worker.prompts import prompt
from huixiangdou.service.worker.session import ErrorCode, Passage, Session
from huixiangdou.service.worker.stage import run_cpu

ANSWER_MODES = ('auto', 'generate', 'extract')
# How often (in streamed pieces) a growing answer is checked for a loop or an echo, to stop early.
CHECK_EVERY = 24
# At most this much of a screenshot's text goes into the prompt (small models drown in a long log).
SCREENSHOT_CHARS = 600


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
    """Numbered passages without their paths: small models copy paths and brackets back verbatim."""
    return '\n\n'.join(f'[{i}] {p.text}' for i, p in enumerate(passages, 1))


@dataclass
class AnswerPrompt:
    """What is sent for one answer: the system message, the user message, and the passages numbered in it."""
    system: str
    user: str
    passages: list[Passage]
    query: str = ''
    instructions: str = ''   # the prompt's own wording: a phrase of it in the answer is scaffolding echoed

    @property
    def context(self) -> str:
        """What an answer may draw on: the passages and the question."""
        return '\n'.join([p.text for p in self.passages] + [self.query])


class Generate:
    """Answer the session's question from its passages.

    `answer_mode`: 'generate' (the LLM's answer, or silence when it is degenerate), 'extract' (quoted
    sentences of the passages, no LLM call) or 'auto' (generate, and quote instead of a degenerate answer;
    quote straight away when `capable_llm` is False).
    `embedder` (the feature store's) helps pick the quoted sentences; without it they are picked by words.

    Usage:
        stage = Generate(llm, 2000, answer_mode='auto', embedder=store.embedder)
        await stage.run(session)           # or: async for piece in stage.stream(session): ...
        session.reply, session.references, session.debug['generate']
    """

    name = 'generate'

    def __init__(self, llm, context_max_length: int = 2000, answer_mode: str = 'auto', embedder=None,
                 max_passages: int = 2, passage_max_length: int = 400, capable_llm: bool = True):
        if answer_mode not in ANSWER_MODES:
            raise ValueError(f'answer_mode must be one of {", ".join(ANSWER_MODES)}, got {answer_mode!r}')
        if context_max_length < 200:
            raise ValueError(f'context_max_length must be >= 200 characters, got {context_max_length}')
        if max_passages < 1:
            raise ValueError(f'max_passages must be >= 1, got {max_passages}')
        if passage_max_length < 50:
            raise ValueError(f'passage_max_length must be >= 50 characters, got {passage_max_length}')
        self.llm = llm
        self.context_max_length = context_max_length
        self.answer_mode = answer_mode
        self.max_passages = max_passages
        self.passage_max_length = passage_max_length
        self.extract = Extract(embedder)
        # False when only the bundled 135M model is configured: 'auto' then quotes without asking it (on
        # the sample QA set its answers that pass the degenerate check are still mostly wrong).
        self.capable_llm = capable_llm

    def build_prompt(self, session: Session) -> AnswerPrompt:
        # Few, short passages: a small model given more copies more of it back.
        shortened = [fit_context([p], self.passage_max_length)[0] for p in session.passages[:self.max_passages]]
        passages = fit_context(shortened, self.context_max_length)
        zh = session.language == 'zh'
        intro = ''
        if session.group_introduction:
            intro = f'本群主题：{session.group_introduction}\n' if zh else \
                f'This group is about: {session.group_introduction}\n'
        if session.quote:
            # What the user replies to tells the model what "this" in the question means.
            quote = session.quote[:300]
            intro += f'用户引用的消息：{quote}\n' if zh else f'The user replies to: {quote}\n'
        if session.unmentioned:
            intro += prompt(session.language, 'unmentioned', words=('、' if zh else ', ').join(session.unmentioned))
        question = session.query
        if session.image_text:
            intro += prompt(session.language, 'screenshot', text=session.image_text[:SCREENSHOT_CHARS])
            # A picture sent alone: the screenshot is the question.
            question = question or prompt(session.language, 'screenshot_question')
        user = prompt(session.language, 'generate', context=format_context(passages), query=question,
                      intro=intro)
        system = prompt(session.language, 'system')
        wording = prompt(session.language, 'generate', context='\n', query='\n', intro='')
        # The screenshot's text is what the user asked about: an answer may quote it without echoing.
        return AnswerPrompt(system, user, passages, session.text, instructions=f'{system}\n{wording}')

    def _llm_stream(self, request: AnswerPrompt, history) -> AsyncIterator[StreamPiece]:
        return self.llm.stream_pieces(request.user, history=history, system=request.system)

    async def run(self, session: Session) -> None:
        """The stream, drained: one path, so run and stream always end in the same state."""
        async for _ in self.stream(session):
            pass

    async def stream(self, session: Session) -> AsyncIterator[str]:
        """Yield answer pieces as they come; the session holds the final reply at the end.

        The pieces carry the renumbered citations, so together they are `session.reply` (give or take
        surrounding whitespace). In 'auto' mode a degenerate answer is replaced by an extractive one after
        the pieces were yielded: the final answer is `session.reply`, and `session.debug['generate']['fallback']`
        says so.
        """
        if self.answer_mode == 'extract' or (self.answer_mode == 'auto' and not self.capable_llm):
            debug = {'mode': 'extract'} if self.answer_mode == 'extract' else \
                {'mode': 'auto', 'fallback': 'extract', 'reason': 'no capable model'}
            await self._answer_by_extract(session, debug)
            if session.reply:
                yield session.reply
            return
        request = self.build_prompt(session)
        debug: dict[str, object] = {'mode': self.answer_mode, 'passages': len(request.passages),
                                    'prompt_chars': len(request.system) + len(request.user)}
        session.debug[self.name] = debug
        pieces: list[str] = []   # the model's own words, as the degeneration checks must see them
        numbering = CitationNumbering(request.passages)
        problem: Degeneration | None = None
        finish_reason: str | None = None
        try:
            async with contextlib.aclosing(self._llm_stream(request, session.history)) as answer:
                async for chunk in answer:
                    finish_reason = chunk.finish_reason or finish_reason
                    if not chunk.text:
                        continue
                    pieces.append(chunk.text)
                    shown = numbering.feed(chunk.text)
                    if shown:
                        yield shown
                    if len(pieces) % CHECK_EVERY == 0:
                        problem = self._early_problem(''.join(pieces), request)
                        if problem is not None:
                            debug['stopped_early'] = len(pieces)
                            break
        except LLMClientError as exc:
            logger.warning('LLM failed for group={}: {}', session.group_id, exc)
            debug['error'] = str(exc)
            session.finish(ErrorCode.LLM_ERROR)
            return
        text = ''.join(pieces).strip()
        if finish_reason:
            debug['finish_reason'] = finish_reason
        problem = problem or detect_degeneration(text, request.context, finish_reason=finish_reason,
                                                 instructions=request.instructions)
        if problem is None:
            tail = numbering.finish()
            if tail:
                yield tail
            session.reply, session.references = numbering.text.strip(), numbering.references
            return
        debug['degenerate'] = str(problem)
        logger.info('degenerate answer for group={} ({}): {!r}', session.group_id, problem, text[:120])
        if self.answer_mode == 'generate':
            session.finish(ErrorCode.BAD_ANSWER)
            return
        debug.update(fallback='extract', reason=problem.reason)
        await self._answer_by_extract(session, debug)

    @staticmethod
    def _early_problem(text: str, request: AnswerPrompt) -> Degeneration | None:
        """A loop, echo or scaffold is already final mid-answer; an open code block or a short text is not."""
        problem = detect_degeneration(text, request.context, instructions=request.instructions)
        return problem if problem is not None and problem.reason in ('loop', 'echo', 'scaffold') else None

    async def _answer_by_extract(self, session: Session, debug: dict) -> None:
        # The screenshot's error scores the sentences too: "这个报错怎么办？" alone names no error.
        # A follow-up's context ("这个怎么解决？" under a quoted error) names what is asked about.
        asked = '\n'.join(part for part in (session.query, error_lines(session.image_text), session.context) if part)
        # The reject stage embedded the question already: the quote scores sentences against that vector.
        features = session.features
        vector = features.vector if features is not None and features.text == asked else None
        answer = await run_cpu(self.extract.answer, asked, session.passages, vector, session.language,
                               session.unmentioned)
        session.debug[self.name] = debug
        debug['quoted'] = [{'passage': s.passage + 1, 'score': round(s.score, 3)} for s in answer.sentences]
        if not answer.text:
            session.finish(ErrorCode.BAD_ANSWER)
            return
        # The quotes carry the numbers of `session.passages` at their line ends; the reader sees them
        # renumbered. A [n] inside a quote is the document's own text and stays as it is.
        session.reply, session.references = number_citations(answer.text, session.passages,
                                                             markers_at_line_end=True)
