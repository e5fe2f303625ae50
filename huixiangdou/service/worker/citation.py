"""Citation numbers as the reader sees them: an answer's [n] renumbered 1, 2, 3… in the order it first
cites each source, one number per source, and the references listed in that order, so `[n]` is always
`references[n - 1]` and every listed reference is cited.

It works on a stream (a piece at a time, holding back only a half-written `[12`) and on a whole text
alike; it does not choose passages nor judge the answer (generate.py does).
"""
from __future__ import annotations

import re

from huixiangdou.service.worker.session import Passage

# A citation as the prompt asks for it and the extractive answer writes it: [1] … [99]; not an index
# written against a name or a call (`arr[0]`, `f(x)[1]`), which is code even outside backticks.
_CITE = re.compile(r'(?<![A-Za-z0-9_)])\[(\d{1,2})\]')
# What may still grow into a citation at the end of a streamed piece: "[", "[1", "[12".
_OPEN_CITE = re.compile(r'\[\d{0,2}$')


def numbered(references: list[str]) -> list[str]:
    """References as a reply lists them: '[1] guide.md', '[2] faq.md' (the one spelling of the list)."""
    return [f'[{n}] {reference}' for n, reference in enumerate(references, 1)]


class CitationNumbering:
    """Renumber the citations of an answer written against numbered passages.

    `passages[n - 1]` is what the answer's `[n]` points at (the numbering of the prompt or of the quotes).
    The first source cited becomes [1], the next new one [2]; two passages of the same source share its
    number; a number that points at no passage is dropped; brackets inside `code` are left alone. An
    answer that cites nothing gets the numbers of the passages it was given, after its text, since those
    are its sources (at most `uncited_limit`).

    Usage:
        numbering = CitationNumbering(passages)
        for piece in pieces:
            send(numbering.feed(piece))
        send(numbering.finish())
        numbering.text, numbering.references   # '… [1] … [2]', ['faq.md', 'guide.md']
    """

    def __init__(self, passages: list[Passage], uncited_limit: int = 3, markers_at_line_end: bool = False):
        """`markers_at_line_end`: only a [n] ending a line is a citation (the extractive answer puts its
        marker after each quote; a [1] inside the quoted document text is the document's own)."""
        self.passages = passages
        self.uncited_limit = uncited_limit
        self.markers_at_line_end = markers_at_line_end
        self.references: list[str] = []
        self.text = ''          # everything emitted so far
        self._held = ''         # the end of the input that may be the start of a citation
        self._in_code = False   # inside `…` or ``` … ```: brackets there are code, not citations

    def feed(self, piece: str) -> str:
        """The renumbered text that can be sent now; a possible citation at the end waits for the next piece."""
        text = self._held + piece
        held = _OPEN_CITE.search(text)
        self._held = held.group() if held else ''
        ready = text[:held.start()] if held else text
        out = self._renumber(ready)
        self.text += out
        return out

    def finish(self) -> str:
        """The held-back end, and the sources of an answer that cited none; call once, after the last piece."""
        out = self._held
        self._held = ''
        if not self.references and self.text.strip():
            sources = self._uncited()
            if sources:
                written = self.text + out
                # On a line of its own after a code block, so the closing fence stays a fence.
                separator = '' if written[-1:].isspace() else '\n' if written.endswith('```') else ' '
                out += separator + ' '.join(f'[{n}]' for n in sources)
        self.text += out
        return out

    def _renumber(self, text: str) -> str:
        parts: list[str] = []
        last = 0
        for match in _CITE.finditer(text):
            before = text[last:match.start()]
            parts.append(before)
            self._track_code(before)
            last = match.end()
            at_line_end = match.end() == len(text) or text[match.end()] == '\n'
            if self._in_code or (self.markers_at_line_end and not at_line_end):
                parts.append(match.group())
                continue
            n = int(match.group(1))
            if not 1 <= n <= len(self.passages):
                continue  # a number that points at nothing is dropped, never shown as a dead citation
            cite = f'[{self._number_of(self.passages[n - 1].reference)}]'
            # "[1][3]" of two passages of one source reads "[1]", not "[1][1]" (on one line: a [1] that
            # starts the next paragraph is a citation of its own).
            if not (self.text + ''.join(parts)).rstrip(' ').endswith(cite):
                parts.append(cite)
        rest = text[last:]
        self._track_code(rest)
        parts.append(rest)
        return ''.join(parts)

    def _track_code(self, text: str) -> None:
        # Each backtick opens or closes code (a ``` fence is three, so it toggles too).
        if text.count('`') % 2:
            self._in_code = not self._in_code

    def _number_of(self, reference: str) -> int:
        if reference not in self.references:
            self.references.append(reference)
        return self.references.index(reference) + 1

    def _uncited(self) -> list[int]:
        numbers: list[int] = []
        for passage in self.passages:
            if len(self.references) >= self.uncited_limit and passage.reference not in self.references:
                break
            n = self._number_of(passage.reference)
            if n not in numbers:
                numbers.append(n)
        return numbers


def number_citations(text: str, passages: list[Passage], markers_at_line_end: bool = False) -> tuple[str, list[str]]:
    """A whole answer renumbered: (text, references); the same as feeding it in pieces."""
    numbering = CitationNumbering(passages, markers_at_line_end=markers_at_line_end)
    numbering.feed(text)
    numbering.finish()
    return numbering.text, numbering.references
