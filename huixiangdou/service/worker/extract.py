"""Extractive answers: the one to three sentences of the retrieved passages that best answer the
question, quoted word for word, each followed by the number of the passage it comes from.

It does not call an LLM nor rewrite anything; it only splits, scores and picks.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from huixiangdou.primitive.tokenizer import tokenize
from huixiangdou.service.worker.session import Passage

# A sentence ends after 。！？； (Chinese, no space needed) or after . ! ? followed by a space
# (so "config.ini" and "v1.2" stay whole).
_SENTENCE = re.compile(r'(?<=[。！？；])|(?<=[.!?])\s+')
_FENCE = re.compile(r'^\s*(```|~~~)')
_HEADING = re.compile(r'^\s{0,3}#{1,6}\s')
_BULLET = re.compile(r'^\s*(?:[-*+]\s+|\d{1,2}[.)]\s+)')
_TABLE_RULE = re.compile(r'^\s*\|?[\s:|\-]+\|?\s*$')
_CELLS = re.compile(r'\S \| \S.* \| \S')   # two or more " | " cell separators
_WORDY = re.compile(r'[\w\u3400-\u9fff]')

MIN_CHARS = 6
SHORT_CHARS = 40     # a quote shorter than this (CJK counted twice) brings the sentence before it along
INTRO_LINES = 6      # at most this many code lines or list items join the sentence that introduces them
MAX_CHARS = 300     # a longer "sentence" (a run-on table row, minified code) is cut at a word boundary


@dataclass
class Sentence:
    """A quotable piece of a passage: a sentence of prose, a table row or one line of code."""
    text: str
    passage: int          # index into the passages (0-based)
    position: int         # order inside the passage
    code: bool = False
    score: float = 0.0


@dataclass
class ExtractedAnswer:
    text: str
    references: list[str] = field(default_factory=list)
    sentences: list[Sentence] = field(default_factory=list)


def split_sentences(text: str) -> list[tuple[str, bool]]:
    """(sentence, is_code) pieces of a passage: prose split at sentence ends, code and table rows by line.

    Hard-wrapped lines of one paragraph or list item are joined first; headings, table rules and table
    header rows are dropped, list bullets stripped. A sentence ending in a colon is joined with the
    code lines or list items it introduces ("Rebuild with: `... --rebuild`"), since neither answers alone.
    """
    pieces: list[tuple[str, str]] = []   # (text, kind): prose | item | code | row
    paragraph: list[str] = []
    kind = 'prose'

    def flush() -> None:
        if paragraph:
            joined = paragraph[0]
            for line in paragraph[1:]:
                joined += ('' if _is_cjk(joined[-1]) and _is_cjk(line[0]) else ' ') + line
            pieces.extend((s.strip(), kind) for s in _SENTENCE.split(joined) if s and s.strip())
            paragraph.clear()

    in_code = False
    for raw in text.splitlines():
        if _FENCE.match(raw):
            flush()
            in_code = not in_code
            continue
        line = raw.strip()
        if in_code:
            if line:
                pieces.append((line, 'code'))
            continue
        if not line or _HEADING.match(line) or _TABLE_RULE.match(line) or line.startswith('|'):
            flush()
            if _TABLE_RULE.match(line) and line and pieces and pieces[-1][1] == 'row':
                pieces.pop()   # the header row above a rule names columns; it answers nothing
            elif line.startswith('|'):
                pieces.append((line, 'row'))
            continue
        if _CELLS.search(line):
            # A spreadsheet or CSV row as the parsers write it ("预设: kimi | 默认模型: …"): one row each.
            flush()
            pieces.append((line, 'row'))
            continue
        if _BULLET.match(line):
            flush()
            kind = 'item'
            line = _BULLET.sub('', line)
        elif not paragraph:
            kind = 'prose'
        paragraph.append(line)
    flush()
    merged: list[list[str]] = []
    joined = 0   # code lines or items joined to the sentence that introduced them
    for piece, kind in pieces:
        last = merged[-1] if merged else None
        opens = last is not None and last[1] == 'prose' and last[0].endswith((':', '：'))
        goes_on = last is not None and last[1] == 'intro' and joined < INTRO_LINES
        if kind in ('code', 'item') and (opens or goes_on):
            addition = f'`{piece}`' if kind == 'code' else piece
            last[0] = f'{last[0]} {addition}' if opens or last[0].endswith((';', '；')) else f'{last[0]}; {addition}'
            last[1] = 'intro'
            joined += 1
        else:
            merged.append([piece, kind])
            joined = 0
    return [(_shorten(s), kind == 'code') for s, kind in merged if len(s) >= MIN_CHARS and _WORDY.search(s)]


def _is_cjk(ch: str) -> bool:
    return '\u3000' <= ch <= '\u9fff' or '\uff00' <= ch <= '\uffef'


def _shorten(text: str) -> str:
    if len(text) <= MAX_CHARS:
        return text
    cut = text[:MAX_CHARS]
    space = cut.rfind(' ')
    return (cut[:space] if space > MAX_CHARS // 2 else cut).rstrip() + '…'


def _char_grams(text: str, n: int = 3) -> set[str]:
    text = re.sub(r'\s+', ' ', text.lower())
    return {text[i:i + n] for i in range(max(1, len(text) - n + 1))}


def near_duplicate(a: str, b: str, threshold: float = 0.6) -> bool:
    ga, gb = _char_grams(a), _char_grams(b)
    return len(ga & gb) / max(1, min(len(ga), len(gb))) >= threshold


class Extract:
    """Pick the sentences of the passages that answer the question, without an LLM.

    `embedder` (optional) is the feature store's: sentences are scored by cosine to the question as
    well as by shared words; without it, by shared words alone.

    Usage:
        extract = Extract(store.embedder)
        answer = extract.answer('怎么重建索引？', session.passages)
        answer.text        # '> python -m huixiangdou.service.feature_store --rebuild [1]'
        answer.references  # ['zh/特征库.md#特征库']
    """

    def __init__(self, embedder=None, max_sentences: int = 3, lexical_weight: float = 0.6,
                 top_passage_bonus: float = 0.15, keep_ratio: float = 0.6):
        if not 1 <= max_sentences <= 5:
            raise ValueError(f'max_sentences must be 1 to 5, got {max_sentences}')
        if not 0.0 <= lexical_weight <= 1.0:
            raise ValueError(f'lexical_weight must be in [0, 1], got {lexical_weight}')
        if not 0.0 < keep_ratio <= 1.0:
            raise ValueError(f'keep_ratio must be in (0, 1], got {keep_ratio}')
        self.embedder = embedder
        self.max_sentences = max_sentences
        self.lexical_weight = lexical_weight if embedder is not None else 1.0
        self.top_passage_bonus = top_passage_bonus
        self.keep_ratio = keep_ratio

    def candidates(self, passages: list[Passage]) -> list[Sentence]:
        return [Sentence(text, i, j, code) for i, p in enumerate(passages)
                for j, (text, code) in enumerate(split_sentences(p.text))]

    def score(self, query: str, sentences: list[Sentence], n_passages: int) -> None:
        """Set each sentence's score: shared words (idf-weighted), cosine, and a bonus for higher passages."""
        words = [set(tokenize(s.text)) for s in sentences]
        asked = set(tokenize(query))
        df = {w: sum(1 for ws in words if w in ws) for w in asked}
        idf = {w: math.log(1 + len(sentences) / df[w]) for w in asked if df[w]}
        total = sum(idf.values()) or 1.0
        lexical = [sum(idf.get(w, 0.0) for w in asked & ws) / total for ws in words]
        dense = [0.0] * len(sentences)
        if self.embedder is not None and sentences:
            encode_query = getattr(self.embedder, 'encode_queries', None) or self.embedder.encode
            q = np.asarray(encode_query([query]))[0]
            vectors = np.asarray(self.embedder.encode([s.text for s in sentences]))
            dense = [float(v) for v in vectors @ q]
        for s, lex, cos in zip(sentences, lexical, dense):
            rank_bonus = self.top_passage_bonus * (1 - s.passage / max(1, n_passages))
            s.score = self.lexical_weight * lex + (1 - self.lexical_weight) * cos + rank_bonus

    @staticmethod
    def _with_lead_in(s: Sentence, sentences: list[Sentence], chosen: list[Sentence]) -> Sentence:
        """A short sentence ("Check with `python3 --version`.") quoted with the prose sentence before it,
        which usually holds what it refers to."""
        # A Chinese character says about as much as two Latin letters.
        if len(s.text) + sum(map(_is_cjk, s.text)) >= SHORT_CHARS or s.code:
            return s
        before = [c for c in sentences if c.passage == s.passage and c.position == s.position - 1
                  and not c.code and c not in chosen]
        if not before:
            return s
        return Sentence(f'{before[0].text} {s.text}', s.passage, s.position, False, s.score)

    def answer(self, query: str, passages: list[Passage]) -> ExtractedAnswer:
        sentences = self.candidates(passages)
        if not sentences:
            return ExtractedAnswer('')
        self.score(query, sentences, len(passages))
        ranked = sorted(sentences, key=lambda s: s.score, reverse=True)
        chosen = [ranked[0]]
        for s in ranked[1:]:
            if len(chosen) >= self.max_sentences or s.score < ranked[0].score * self.keep_ratio:
                break
            if not any(near_duplicate(s.text, c.text) for c in chosen):
                chosen.append(s)
        chosen = [self._with_lead_in(s, sentences, chosen) for s in chosen]
        # Read in document order: passage by passage, sentence by sentence.
        chosen.sort(key=lambda s: (s.passage, s.position))
        lines, references = [], []
        for s in chosen:
            quoted = f'`{s.text}`' if s.code else s.text
            lines.append(f'> {quoted} [{s.passage + 1}]')
            reference = passages[s.passage].reference
            if reference not in references:
                references.append(reference)
        return ExtractedAnswer('\n'.join(lines), references, chosen)
