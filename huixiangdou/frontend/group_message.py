"""The data frontends hand to the dispatcher (GroupMessage) and get back from it (Outcome).

Platform-neutral: Lark and WeChat parsers build GroupMessage; nothing here talks to a platform.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from huixiangdou.service.worker.session import Session


class Responder(Protocol):
    """What answers: the worker (`huixiangdou.service.worker.pipeline.Worker`) or a test double."""

    async def run(self, session: Session) -> Session: ...


@dataclass
class GroupMessage:
    """One message from a group chat, already stripped of @mentions: its text, and the images it carried.

    `platform_ids` keeps whatever the platform needs to reply or recall later (wkteam's
    newMsgId, Lark's root id); the dispatcher never looks inside it. `quote` is the text of the message
    this one quotes or replies to, as a field of its own: never folded into `text` as markup.
    `images` are downloaded image bytes (at most message_images.MAX_IMAGES); `text` may be '' when the
    message is a picture alone.
    """
    group_id: str
    text: str
    sender_id: str = ''
    message_id: str = ''
    group_name: str = ''
    group_introduction: str = ''
    quote: str = ''
    platform_ids: dict[str, str] = field(default_factory=dict)
    images: list[bytes] = field(default_factory=list, repr=False)
    # Ids of earlier messages from the same sender that the merge policy folded into this one.
    merged_message_ids: list[str] = field(default_factory=list)


class OutcomeStatus(Enum):
    ANSWERED = 'answered'          # the worker answered and the rate limit allowed a reply
    SILENT = 'silent'              # the worker chose not to answer (chatter, unrelated, error code)
    MERGED = 'merged'              # folded into a later message from the same sender
    RATE_LIMITED = 'rate_limited'  # the group used up its replies for this minute
    QUEUE_FULL = 'queue_full'      # the group's queue was full; the message was dropped
    # Our Worker catches its own errors, but the Responder protocol lets any responder raise.
    FAILED = 'failed'              # the responder raised; logged, nothing sent
    CANCELLED = 'cancelled'        # the frontend gave up waiting: dropped from the queue or the worker stopped


@dataclass
class Outcome:
    """What became of one GroupMessage; `session` is set when the worker ran."""
    message: GroupMessage
    status: OutcomeStatus
    session: Session | None = None

    @property
    def reply(self) -> str:
        return self.session.reply if self.session and self.status is OutcomeStatus.ANSWERED else ''

    @property
    def references(self) -> list[str]:
        return list(self.session.references) if self.session and self.status is OutcomeStatus.ANSWERED else []
