"""The units of text that flow from parsers to the splitter to the indexes.

Parsers yield Sections (text with its place in the source); the splitter turns them into Chunks.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Section:
    """A stretch of a document's text with where it came from, before chunking.

    `anchor` names the place inside the file for a citation: a heading ("Installation"),
    "page 3", "sheet Prices", "slide 2"; "" when the file has no finer structure.
    `kind` tells the splitter how to cut: "text", "markdown", "code" or "table".
    """
    text: str
    anchor: str = ''
    kind: str = 'text'


@dataclass
class Document:
    """One parsed file: its path relative to repodir and its sections in order."""
    source: str
    sections: list[Section] = field(default_factory=list)

    @property
    def text(self) -> str:
        return '\n'.join(s.text for s in self.sections)


@dataclass
class Chunk:
    """A piece of a document small enough for the embedding model, with its citation."""
    text: str
    source: str
    anchor: str = ''

    @property
    def reference(self) -> str:
        """Citation string, e.g. 'docs/install.md#Installation'."""
        return f'{self.source}#{self.anchor}' if self.anchor else self.source
