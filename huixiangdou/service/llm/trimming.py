"""Fit a conversation into a backend's input limit (characters): drop the oldest history first,
then shorten the system prompt, then cut the middle of the last message, keeping its tail (the question).

It does not count model tokens; limits are in characters, like [llm.server] *_max_text_length.
"""
from __future__ import annotations

from huixiangdou.service.llm.backend import ChatMessage

ELLIPSIS = '\n...\n'


def conversation_length(messages: list[ChatMessage]) -> int:
    return sum(len(m.content) for m in messages)


def cut_middle(text: str, budget: int, head_share: float = 0.25) -> str:
    """Keep the start and (mostly) the end of `text` within `budget` characters.

    Prompts usually end with the question and carry retrieved context in the middle, so the tail
    gets the larger share.
    """
    if len(text) <= budget:
        return text
    if budget <= len(ELLIPSIS) + 1:
        return text[-budget:] if budget > 0 else ''
    room = budget - len(ELLIPSIS)
    head = int(room * head_share)
    tail = room - head
    return text[:head] + ELLIPSIS + text[len(text) - tail:]


def trim_messages(messages: list[ChatMessage], max_chars: int) -> list[ChatMessage]:
    """Return messages whose contents total at most `max_chars` characters (the input is not changed)."""
    if max_chars <= 0 or conversation_length(messages) <= max_chars:
        return list(messages)
    system = [m for m in messages[:-1] if m.role == 'system']
    history = [m for m in messages[:-1] if m.role != 'system']
    last = messages[-1]
    # Oldest history turns go first, a whole user/assistant pair at a time where possible.
    while history and conversation_length(system + history + [last]) > max_chars:
        history = history[2:] if len(history) >= 2 and history[0].role == 'user' else history[1:]
    total = conversation_length(system + [last])
    if total > max_chars and system:
        # The system prompt may shrink to whatever the question leaves, but not below nothing.
        room = max(0, max_chars - len(last.content))
        share = room // len(system)
        system = [ChatMessage(m.role, cut_middle(m.content, share, head_share=0.75)) for m in system]
        system = [m for m in system if m.content]
    room = max_chars - conversation_length(system + history)
    last = ChatMessage(last.role, cut_middle(last.content, room))
    return system + history + [last]
