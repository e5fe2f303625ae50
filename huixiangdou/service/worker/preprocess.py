"""Preprocess stage: detect the language, drop what is no question.

It does not judge the topic (that is the reject stage) and never edits the text: mentions were removed
by the frontend from the platform's own mention data, so an `@` left in the text is the user's
(`git@github.com`, `@torch.compile`, an e-mail address). Nor does it look for quotes: a quoted message
arrives as `Session.quote`, so 「」, > and colons in the query are the user's own words.
A screenshot's text (`Session.image_text`, read before this stage) counts as part of the question: a
picture alone can be one, and "怎么办" under a screenshot of an error is not too short.
"""
from __future__ import annotations

import re

from huixiangdou.primitive.tokenizer import is_chinese
from huixiangdou.service.worker.session import ErrorCode, Session

_URL = re.compile(r'https?://\S+')
# Placeholders chat apps send for media, e.g. [图片] [Image] [动画表情] [捂脸].
_PLACEHOLDER = re.compile(r'\[[^\[\]\s]{1,8}\]')
_EMOJI = re.compile('[\U0001F000-\U0001FAFF\u2600-\u27BF\uFE0F\u200d]')
_WORDY = re.compile(r'[\w\u4e00-\u9fff]')


def is_not_a_question(text: str) -> bool:
    """Only media placeholders, links and emoji: nothing to answer."""
    rest = _EMOJI.sub('', _PLACEHOLDER.sub('', _URL.sub('', text)))
    return not _WORDY.search(rest)


class Preprocess:
    name = 'preprocess'

    def __init__(self, min_query_length: int = 4, language: str = 'auto'):
        if min_query_length < 1:
            raise ValueError(f'min_query_length must be >= 1, got {min_query_length}')
        self.min_query_length = min_query_length
        self.language = language

    async def run(self, session: Session) -> None:
        # The user's language is that of their own words; a screenshot (often an English log) only
        # decides it for a picture sent alone.
        session.language = self.language if self.language != 'auto' else (
            'zh' if is_chinese(session.query or session.text) else 'en')
        session.debug[self.name] = {'language': session.language}
        if is_not_a_question(session.text):
            session.finish(ErrorCode.NOT_A_QUESTION)
        elif len(session.text) < self.min_query_length:
            session.finish(ErrorCode.QUESTION_TOO_SHORT)
