"""Collects a document's lines under its current heading path and emits one Section per heading.

Shared by the markdown, reStructuredText, Word and HTML parsers; it does not recognise headings
itself — each parser tells it where headings are and at which level.
"""
from __future__ import annotations

from huixiangdou.primitive.chunk import Section

_MAX_TITLE = 100


class Outline:
    """Builds Sections whose anchor is the heading path, e.g. "Install/Linux".

    A heading with no body of its own (directly followed by a sub-heading or a table) is carried
    into the next Section, so no Section is a bare title and no heading text is lost.

    >>> o = Outline('text')
    >>> o.heading(1, 'Install', 'Install'); o.heading(2, 'Linux', 'Linux'); o.add('pip install x')
    >>> [(s.anchor, s.text) for s in o.finish()]
    [('Install/Linux', 'Install\\nLinux\\npip install x')]
    """

    def __init__(self, kind: str):
        self._kind = kind
        self._sections: list[Section] = []
        self._path: list[tuple[int, str]] = []
        self._lines: list[str] = []
        self._body_lines = 0  # non-blank body lines since the last flush

    @property
    def anchor(self) -> str:
        return '/'.join(title for _, title in self._path)

    def heading(self, level: int, title: str, line: str | None = None) -> None:
        """Start a section under heading `title`; `line` is the heading as it appears in the text."""
        if self._body_lines:
            self._flush()
        title = ' '.join(title.split())[:_MAX_TITLE]
        while self._path and self._path[-1][0] >= level:
            self._path.pop()
        if title:
            self._path.append((level, title))
        if line:
            self._lines.append(line)

    def add(self, line: str) -> None:
        """Append a body line (may hold several lines, e.g. a code block)."""
        self._lines.append(line)
        if line.strip():
            self._body_lines += 1

    def add_block(self, text: str, kind: str) -> None:
        """Append a Section of its own kind (a table) under the current heading."""
        if self._body_lines:
            self._flush()
        pending = '\n'.join(line for line in self._lines if line.strip())
        self._lines.clear()
        if pending:
            text = f'{pending}\n{text}'
        if text.strip():
            self._sections.append(Section(text=text, anchor=self.anchor, kind=kind))

    def finish(self) -> list[Section]:
        self._flush()
        return self._sections

    def _flush(self) -> None:
        text = '\n'.join(self._lines).strip('\n')
        if text.strip():
            self._sections.append(Section(text=text, anchor=self.anchor, kind=self._kind))
        self._lines.clear()
        self._body_lines = 0
