"""The data that flows through the worker pipeline: the error codes and the session object.

Each stage reads and updates one Session; frontends read `code`, `reply` and `references`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from huixiangdou.primitive.json_input import clean_text

if TYPE_CHECKING:  # the feature store pulls in FAISS and numpy; frontends import Session without them
    from huixiangdou.service.feature_store.query_features import QueryFeatures


class ErrorCode(Enum):
    SUCCESS = 0
    NOT_A_QUESTION = 1
    QUESTION_TOO_SHORT = 2
    UNRELATED = 3
    NO_SEARCH_RESULT = 4
    BAD_ANSWER = 5
    SECURITY = 6
    LLM_ERROR = 7
    NOT_WORK_TIME = 8
    INTERNAL_ERROR = 9

    def __str__(self) -> str:
        return f'ErrorCode.{self.name}'

    @property
    def should_reply(self) -> bool:
        """Only a successful answer is sent to the group; everything else stays silent."""
        return self is ErrorCode.SUCCESS


@dataclass
class Passage:
    """A piece of context for the answer: a chunk of the knowledge base or a web page."""
    text: str
    reference: str
    score: float = 0.0   # the ranking score: retrieval's fused score, or the reranker's
    cosine: float = 0.0  # similarity to the query in the store's embedding space (0 for web pages)
    # The next chunk of the same file, when retrieval has it: a sentence that ends its chunk ("执行下述命令：")
    # is quoted with the command block the next chunk starts with. Never cited or sent to an LLM by itself.
    following: str = ''


@dataclass
class Session:
    """One question on its way through the pipeline.

    `text` is the message as every stage reads it (reject, retrieve, rerank, web search, intention, check,
    the answer's question): the typed words, then the screenshot's text, plain. No label joins them: the
    reject model learned from plain messages, and an error reads the same typed or photographed
    (docs/worker.md, "Screenshots"). It is set from `query` and `image_text`, and only the image_text
    stage (`add_image_text`) and the follow-up stage (`follow_up`) change it. `query` (what the user typed, as the frontend passed it, mentions
    already removed there) and `image_text` stay for the saved outcome, the user's language and the
    prompt, which shows the screenshot's text under a label of its own.
    `history` holds earlier (user, assistant) turns of the same conversation; `group_id` and
    `group_name` identify the chat; `debug` collects what each stage saw, keyed by stage name.
    `context` is set only for a follow-up (followup.py): the quoted message it asks about, judged and
    answered with it; `text` then ends with it.
    `features` is what the store computed about `text` (embedding, BM25, reject evidence): the reject
    stage computes it once and retrieval reuses it.
    `references` are numbered as the reply cites them: `[n]` in `reply` is `references[n - 1]`, and each
    reference is cited (citation.py).
    """
    query: str
    history: list[tuple[str, str]] = field(default_factory=list)
    # The message this one quotes or replies to, as the platform carried it (never markup in `query`).
    quote: str = ''
    # The quote is the bot's own answer, and the question it answered (when the frontend knows; the
    # follow-up stage also finds the bot's answers in `history`).
    quote_from_bot: bool = False
    quoted_question: str = ''
    group_id: str = ''
    group_name: str = ''
    # The platform's id of the message, for log lines that must name it ('' when there is none).
    message_id: str = ''
    # What the group is about (per-group config); the answer prompt mentions it.
    group_introduction: str = ''
    code: ErrorCode | None = None
    reply: str = ''
    references: list[str] = field(default_factory=list)
    language: str = 'en'
    passages: list[Passage] = field(default_factory=list)
    # Names in the question that no document uses ("Slack", "钉钉"): the answer says the documents do not
    # mention them before it quotes the closest passages (retrieve.py sets it).
    unmentioned: list[str] = field(default_factory=list)
    features: QueryFeatures | None = field(default=None, repr=False)
    # Raw image bytes, at most a few per message: kept out of repr (logs) and out of the saved outcome.
    images: list[bytes] = field(default_factory=list, repr=False)
    image_text: str = ''
    debug: dict[str, object] = field(default_factory=dict)
    # What a follow-up ("这个怎么解决？" under a quoted error) is judged and answered with: set by the
    # follow-up stage only (`follow_up`), '' for every other message.
    context: str = field(init=False, default='')
    text: str = field(init=False, default='')

    def __post_init__(self):
        # The worker's edge: text from any frontend must encode as UTF-8 in logs, prompts and saved outcomes.
        self.query, self.quote = clean_text(self.query), clean_text(self.quote)
        self.quoted_question = clean_text(self.quoted_question)
        self.history = [(clean_text(user), clean_text(bot)) for user, bot in self.history]
        self.group_id, self.group_name = clean_text(self.group_id), clean_text(self.group_name)
        self.image_text = clean_text(self.image_text)
        self.text = self._joined()

    def add_image_text(self, image_text: str) -> None:
        """What the message's images read; the one change `text` sees after the session is made."""
        self.image_text = clean_text(image_text)
        self.text = self._joined()

    def follow_up(self, context: str) -> None:
        """The message follows up on `context` (its quote, or the question of the bot answer it quotes):
        `text` becomes the typed words, the screenshot's text, then the context."""
        self.context = clean_text(context)
        self.text = self._joined()

    def _joined(self) -> str:
        # The context last: an embedding model that cuts a long text keeps the user's own words.
        return '\n'.join(part for part in (self.query, self.image_text, self.context) if part)

    @property
    def done(self) -> bool:
        return self.code is not None

    def finish(self, code: ErrorCode, reply: str = '') -> 'Session':
        self.code = code
        if reply:
            self.reply = reply
        return self
