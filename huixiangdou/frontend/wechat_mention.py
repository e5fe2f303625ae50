"""WeChat's mention mark, shared by the WeChat frontends: a real @mention is "@name" followed by U+2005
(the four-per-em space the WeChat client inserts), and only that is removed from a message's text.

It leaves every other "@" alone (git@github.com:org/repo, @torch.compile, an e-mail address): those are
the user's words. The worker never strips mentions; each frontend does it once, from its platform's data.
"""
from __future__ import annotations

import re

# The name may hold spaces ("@John Smith\u2005"), never another "@" or a line break.
_MENTION = re.compile('@[^@\u2005\n]{1,40}\u2005[ \t]*')


def _gap(match: re.Match) -> str:
    # One space keeps the words on either side apart; none is needed after a space or at the start.
    return '' if match.start() == 0 or match.string[match.start() - 1].isspace() else ' '


def strip_mentions(text: str) -> str:
    """The text without the mentions WeChat marked (the user's own spacing elsewhere is kept)."""
    return _MENTION.sub(_gap, text).strip()
