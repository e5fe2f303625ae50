"""Cuts parsed documents into chunks bounded by the embedding model's token count, with overlap.

Cuts prefer structure: paragraphs, then sentences (Chinese 。！？；… and English . ! ?), code at
definitions, table rows; only a unit longer than a chunk is cut at token boundaries. The units of a
section concatenate back to the section exactly, so no text is dropped. It does not embed anything.
"""
from __future__ import annotations

import logging
import re
from typing import Callable, Iterator, Protocol

from huixiangdou.primitive.chunk import Chunk, Document, Section

# A paragraph ends at a blank line.
_PARAGRAPH = re.compile(r'.*?(?:\n[ \t]*\n\s*|\Z)', re.S)
# A sentence ends at Chinese/full-width or English terminal punctuation (plus closing quotes) or a newline.
_SENTENCE = re.compile(
    r'.*?(?:[。！？；…!?;]+[”’"\'）)\]」』]*\s*|\.(?=\s)\s*|\n\s*|\Z)', re.S)
# Code is cut before top-level definitions.
_CODE_DEF = re.compile(
    r'^(?=(?:async\s+def|def|class|func|fn|pub\s+fn|pub\s+struct|function|export|public|private|'
    r'protected|static|struct|impl|interface|type|package|@\w+)\b)', re.M)
_LINE = re.compile(r'.*?(?:\n|\Z)', re.S)
_FENCE = re.compile(r'^(```|~~~)', re.M)


class TokenCounter(Protocol):
    """What the splitter needs from a tokenizer: token counts, and token offsets to cut long text."""

    def count(self, texts: list[str]) -> list[int]: ...

    def offsets(self, text: str) -> list[tuple[int, int]]: ...


def _pieces(pattern: re.Pattern, text: str) -> list[str]:
    """Non-empty consecutive matches of `pattern` that together are exactly `text`."""
    out, pos = [], 0
    for m in pattern.finditer(text):
        if m.end() <= pos:
            continue
        if m.start() > pos:
            out.append(text[pos:m.start()])
        out.append(text[pos if m.start() < pos else m.start():m.end()])
        pos = m.end()
        if pos >= len(text):
            break
    if pos < len(text):
        out.append(text[pos:])
    return [p for p in out if p]


def _cut_before(pattern: re.Pattern, text: str) -> list[str]:
    """Cut `text` at every position where `pattern` matches (zero-width starts)."""
    starts = sorted({m.start() for m in pattern.finditer(text)} | {0})
    bounds = starts + [len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]


def _markdown_blocks(text: str) -> list[str]:
    """Paragraphs, keeping each fenced code block whole so a fence is never cut in the middle."""
    blocks: list[str] = []
    pos = 0
    fences = list(_FENCE.finditer(text))
    for open_, close in zip(fences[0::2], fences[1::2]):
        blocks.extend(_pieces(_PARAGRAPH, text[pos:open_.start()]))
        end = text.find('\n', close.end())
        end = len(text) if end < 0 else end + 1
        blocks.append(text[open_.start():end])
        pos = end
    blocks.extend(_pieces(_PARAGRAPH, text[pos:]))
    return [b for b in blocks if b]


class TextSplitter:
    """Split Documents into Chunks of at most `chunk_size` model tokens, `chunk_overlap` tokens shared.

    Usage:
        >>> from huixiangdou.primitive.splitter import TextSplitter, CharCounter
        >>> from huixiangdou.primitive.chunk import Document, Section
        >>> splitter = TextSplitter(CharCounter(), chunk_size=12, chunk_overlap=6)
        >>> doc = Document('a.md', [Section('第一句话。第二句话！第三句话。')])
        >>> [c.text for c in splitter.split(doc)]
        ['第一句话。第二句话！', '第二句话！第三句话。']
    """

    def __init__(self, counter: TokenCounter, chunk_size: int = 256, chunk_overlap: int = 32,
                 min_chunk_chars: int = 0):
        if min_chunk_chars < 0:
            raise ValueError(f'min_chunk_chars must be >= 0, got {min_chunk_chars}')
        if chunk_size < 8:
            raise ValueError(f'chunk_size must be >= 8 tokens, got {chunk_size}')
        if not 0 <= chunk_overlap < chunk_size:
            raise ValueError(f'chunk_overlap must be in [0, chunk_size), got {chunk_overlap}')
        self.counter = counter
        self.chunk_size = chunk_size
        self.chunk_overlap = chunk_overlap
        # Fragments shorter than this (a heading with one line under it, a lone link) join a neighbour
        # in the same file: on their own they match chatter better than real passages do.
        self.min_chunk_chars = min_chunk_chars

    def split(self, document: Document) -> list[Chunk]:
        chunks: list[Chunk] = []
        for section in document.sections:
            if not section.text.strip():
                continue
            budget = self.chunk_size
            if section.anchor:
                # The anchor is embedded with the chunk (see embedding_text), so it shares the budget.
                budget -= self.counter.count([section.anchor + '\n'])[0]
            budget = max(budget, 8)
            for text in self._split_section(section, budget):
                chunks.append(Chunk(text=text, source=document.source, anchor=section.anchor))
        if self.min_chunk_chars:
            chunks = self._merge_fragments(chunks)
        return chunks

    def _merge_fragments(self, chunks: list[Chunk]) -> list[Chunk]:
        """Join each chunk shorter than `min_chunk_chars` to its next (else previous) neighbour when the
        joined text, anchor included, still fits the chunk size."""
        out = list(chunks)
        i = 0
        while i < len(out):
            if len(out[i].text) >= self.min_chunk_chars or len(out) == 1:
                i += 1
                continue
            merged = None
            for j in (i + 1, i - 1):
                if 0 <= j < len(out):
                    first, second = (out[i], out[j]) if j > i else (out[j], out[i])
                    candidate = _joined(first, second)
                    if self.counter.count([embedding_text(candidate)])[0] <= self.chunk_size:
                        merged = (min(i, j), candidate)
                        break
            if merged is None:
                i += 1
                continue
            at, chunk = merged
            out[at:at + 2] = [chunk]
            i = at  # the joined chunk may still be short
        return out

    # -- units ---------------------------------------------------------------------------------
    def _units(self, section: Section) -> list[str]:
        text = section.text
        if section.kind == 'code':
            return _cut_before(_CODE_DEF, text)
        if section.kind == 'table':
            return _pieces(_LINE, text)
        if section.kind == 'markdown':
            return _markdown_blocks(text)
        return _pieces(_PARAGRAPH, text)

    def _refine(self, unit: str, budget: int, count: int, kind: str) -> list[str]:
        """Break a unit longer than the budget: sentences (lines for code), token windows last.

        Prose is always cut into sentences when chunks overlap, so the overlap can carry the last
        sentences of a paragraph rather than nothing (a whole paragraph rarely fits the overlap).
        """
        prose = kind in ('text', 'markdown') and not _FENCE.match(unit)
        if count <= budget and not (prose and self.chunk_overlap > 0):
            return [unit]
        if count <= budget:
            return _pieces(_SENTENCE, unit)
        for pattern in ((_LINE,) if kind in ('code', 'table') else (_SENTENCE, _LINE)):
            parts = _pieces(pattern, unit)
            if len(parts) > 1:
                counts = self.counter.count(parts)
                out: list[str] = []
                for part, n in zip(parts, counts):
                    out.extend(self._refine(part, budget, n, kind))
                return out
        return self._token_windows(unit, budget)

    def _token_windows(self, text: str, budget: int) -> list[str]:
        """Windows of `budget` tokens, each starting `chunk_overlap` tokens before the last one ended."""
        offsets = [o for o in self.counter.offsets(text) if o[1] > o[0]]
        if len(offsets) <= budget:
            return [text]
        step = max(budget - self.chunk_overlap, 1)
        windows = []
        for start in range(0, len(offsets), step):
            end = min(start + budget, len(offsets))
            a = 0 if start == 0 else offsets[start][0]
            b = len(text) if end == len(offsets) else offsets[end][0]
            windows.append(text[a:b])
            if end == len(offsets):
                break
        return [w for w in windows if w]

    # -- packing -------------------------------------------------------------------------------
    def _split_section(self, section: Section, budget: int) -> Iterator[str]:
        units = self._units(section)
        counts = self.counter.count(units)
        fine: list[str] = []
        for unit, n in zip(units, counts):
            fine.extend(self._refine(unit, budget, n, section.kind))
        fine_counts = self.counter.count(fine)
        for text in self._pack(fine, fine_counts, budget):
            # Sums of unit counts approximate the joined count; re-check and cut any chunk that grew.
            if self.counter.count([text])[0] > budget:
                for piece in self._token_windows(text, budget):
                    if piece.strip():
                        yield piece.strip()
            else:
                yield text

    def _pack(self, units: list[str], counts: list[int], budget: int) -> Iterator[str]:
        current: list[int] = []  # indexes into units
        size = 0
        for i, n in enumerate(counts):
            if current and size + n > budget:
                text = ''.join(units[j] for j in current).strip()
                if text:
                    yield text
                # Carry trailing units into the next chunk as overlap, within the overlap budget.
                carry: list[int] = []
                carried = 0
                for j in reversed(current):
                    if carried + counts[j] > self.chunk_overlap or carried + counts[j] + n > budget:
                        break
                    carry.insert(0, j)
                    carried += counts[j]
                current, size = carry, carried
            current.append(i)
            size += n
        if current:
            text = ''.join(units[j] for j in current).strip()
            if text:
                yield text


def _joined(first: Chunk, second: Chunk) -> Chunk:
    """`first` then `second` as one chunk, cited where most of its text comes from (a section's first
    chunk starts with its heading line, so the shorter part keeps its heading in the text)."""
    anchor = first.anchor if len(first.text) >= len(second.text) else second.anchor
    return Chunk(f'{first.text}\n\n{second.text}', first.source, anchor)


def embedding_text(chunk: Chunk) -> str:
    """The text the embedding model sees: the anchor (heading, page) gives the chunk its context."""
    return f'{chunk.anchor}\n{chunk.text}' if chunk.anchor else chunk.text


class CharCounter:
    """Counts characters as tokens: for tests and for remote models without a local tokenizer."""

    def count(self, texts: list[str]) -> list[int]:
        return [len(t) for t in texts]

    def offsets(self, text: str) -> list[tuple[int, int]]:
        return [(i, i + 1) for i in range(len(text))]


class HFTokenCounter:
    """Counts tokens with a Hugging Face fast tokenizer (the embedding model's own)."""

    def __init__(self, tokenizer: Callable):
        self.tokenizer = tokenizer
        # Counting long sections is the point here; the "longer than the model's maximum" warning
        # that transformers prints for them is noise in the build output.
        logging.getLogger('transformers.tokenization_utils_base').setLevel(logging.ERROR)

    def count(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        ids = self.tokenizer(texts, add_special_tokens=False, return_attention_mask=False,
                             return_token_type_ids=False)['input_ids']
        return [len(x) for x in ids]

    def offsets(self, text: str) -> list[tuple[int, int]]:
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True,
                             return_attention_mask=False, return_token_type_ids=False)
        return [tuple(o) for o in enc['offset_mapping']]
