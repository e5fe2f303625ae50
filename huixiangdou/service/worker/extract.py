"""Extractive answers: the one to three sentences of the retrieved passages that best answer the
question, quoted word for word, each followed by the number of the passage it comes from.

It does not call an LLM nor rewrite anything; it only splits, scores and picks.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from huixiangdou.primitive.page_language import translation_of
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
INTRO_MAX_CHARS = 600   # a sentence with the list or commands it introduces: cut later, not mid-list
TITLE_SHARE = 0.9   # a sentence under a heading or FAQ entry scores at least this share of that title's score
# A FAQ entry's title: a list item or line that is all bold or all quoted ("- **RuntimeError: ...**",
# '- "No module named ..."'), or one that asks a question. Its answer is what follows it.
_TITLE = re.compile(r'^(?:\*\*[^*].*\*\*|"[^"].*"|“.*”)[:：]?$|[?？]$')
_IMAGE = re.compile(r'!\[[^\]]*\]\([^)]*\)')
_LINK = re.compile(r'\[[^\]]*\]\([^)]*\)')
_TAG = re.compile(r'<[^>]+>')
_DIRECTIVE = re.compile(r'^:\w[\w-]*:')     # a MyST code-block option line (":caption: 安装依赖")
# An error as a program prints it ("ImportError: libGL.so.1: cannot open …", "Traceback (most recent call …"):
# in a document it states the problem of the section, never its fix.
_ERROR_LINE = re.compile(r'^\W{0,3}(?:[\w.]*(?:Error|Exception)|Traceback|error|ERROR|fatal|FAILED)\b\s*[:：(]')
ECHO_SHARE = 0.6    # a piece whose words are mostly the question's repeats the user's error: a title, not an answer
CODE_AFTER_LINES = 3   # a quoted sentence brings this many lines of the code block right after it
# Said after the quotes when they come from a page in the other language and its translation was retrieved too.
# Said before the quotes when the question names something no document uses: they are the closest, not an answer.
UNMENTIONED_NOTE = {'zh': '文档里没有提到 {words}，最接近的内容是：', 'en': 'The documents do not mention {words}; the closest they come:'}
TRANSLATION_NOTE = {'zh': '同一页的中文版：', 'en': 'The same page in English: '}


@dataclass
class Sentence:
    """A quotable piece of a passage: a sentence of prose, a table row or one line of code."""
    text: str
    passage: int          # index into the passages (0-based)
    position: int         # order inside the passage
    code: bool = False
    score: float = 0.0
    title: int = -1       # position of the heading or FAQ title it sits under (-1: the passage's anchor)
    is_title: bool = False   # a heading or FAQ title: scored, so its answer below inherits it; not quoted
    lexical: float = 0.0     # share of the question's (idf-weighted) words it holds
    cosine: float = 0.0      # cosine to the question (0 when not embedded)


@dataclass
class ExtractedAnswer:
    text: str
    references: list[str] = field(default_factory=list)
    sentences: list[Sentence] = field(default_factory=list)


def split_sentences(text: str) -> list[tuple[str, bool]]:
    """(sentence, is_code) pieces of a passage that may be quoted (see split_pieces)."""
    return [(piece.text, piece.code) for piece in split_pieces(text) if not piece.is_title]


@dataclass
class Piece:
    text: str
    code: bool = False
    title: int = -1          # index of the heading / FAQ title piece it sits under, -1 for none
    is_title: bool = False


def _noise(line: str) -> bool:
    """A README navigation line ("[🛠️安装](…) | [👀模型库](…)"), an image or a bare HTML tag: no words
    of its own once links, images and tags are taken out."""
    if not (_IMAGE.search(line) or _LINK.search(line) or _TAG.search(line)):
        return False
    rest = _TAG.sub('', _LINK.sub('', _IMAGE.sub('', line)))
    return len(_WORDY.findall(rest)) < 2


def _title_text(line: str) -> str:
    return line.strip().strip('*"“”`').rstrip(':：').strip()


def split_pieces(text: str) -> list[Piece]:
    """The pieces of a passage: prose split at sentence ends, code and table rows by line, headings and
    FAQ titles ("- **RuntimeError: ...**") as title pieces that the pieces below them belong to.

    Hard-wrapped lines of one paragraph or list item are joined first; table rules, table header rows,
    navigation lines, images and bare HTML tags are dropped, list bullets stripped. A sentence ending in a
    colon is joined with the code lines or list items it introduces ("Rebuild with: `... --rebuild`"),
    since neither answers alone.
    """
    pieces: list[tuple[str, str]] = []   # (text, kind): prose | item | code | row | title
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
            if line and not _DIRECTIVE.match(line):
                pieces.append((line, 'code'))
            continue
        if _HEADING.match(line):
            flush()
            title = _title_text(line.lstrip('#'))
            if title:
                pieces.append((title, 'title'))
            continue
        if not line or _TABLE_RULE.match(line) or line.startswith('|') or _noise(line):
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
        bullet = _BULLET.match(line)
        content = _BULLET.sub('', line) if bullet else line
        if _TITLE.search(content) and (bullet or content.startswith(('**', '"', '“'))):
            flush()
            pieces.append((_title_text(content), 'title'))
            continue
        if bullet:
            flush()
            kind = 'item'
            line = content
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
    out: list[Piece] = []
    title = -1
    for piece, kind in merged:
        if kind == 'title':
            title = len(out)
            out.append(Piece(piece, is_title=True))
        elif piece.startswith(('"""', "'''")):
            continue   # a docstring describes the code around it; it answers no user's question
        elif len(piece) >= MIN_CHARS and _WORDY.search(piece):
            out.append(Piece(_shorten(piece, INTRO_MAX_CHARS if kind == 'intro' else MAX_CHARS), kind == 'code',
                             title))
    return out


def _is_cjk(ch: str) -> bool:
    return '\u3000' <= ch <= '\u9fff' or '\uff00' <= ch <= '\uffef'


def _shorten(text: str, limit: int = MAX_CHARS) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(' ')
    return (cut[:space] if space > limit // 2 else cut).rstrip() + '…'


def _char_grams(text: str, n: int = 3) -> set[str]:
    text = re.sub(r'\s+', ' ', text.lower())
    return {text[i:i + n] for i in range(max(1, len(text) - n + 1))}


def leading_code(text: str, seen: list[str]) -> list[str]:
    """The first lines (at most CODE_AFTER_LINES) of the code block that `text` starts with, once the
    pieces it repeats of `seen` (the chunk overlap) are skipped; [] when it starts with anything else."""
    pieces = [p for p in split_pieces(text) if not p.is_title] if text else []
    start = 0
    while start < len(pieces) and any(near_duplicate(pieces[start].text, t) for t in seen[-4:]):
        start += 1
    lines = []
    for piece in pieces[start:start + CODE_AFTER_LINES]:
        if not piece.code:
            break
        lines.append(piece.text)
    return lines


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
                 top_passage_bonus: float = 0.15, keep_ratio: float = 0.6, dense_limit: int = 16):
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
        if dense_limit < 1:
            raise ValueError(f'dense_limit must be >= 1, got {dense_limit}')
        self.dense_limit = dense_limit

    def candidates(self, passages: list[Passage]) -> list[Sentence]:
        """Every piece of every passage, titles included; a passage whose first pieces sit under no heading
        of its own gets its anchor's last heading as their title (position -1)."""
        out = []
        for i, p in enumerate(passages):
            pieces = split_pieces(p.text)
            anchor = p.reference.split('#', 1)[1].rsplit('/', 1)[-1] if '#' in p.reference else ''
            if anchor and any(x.title == -1 and not x.is_title for x in pieces):
                out.append(Sentence(anchor, i, -1, is_title=True))
            out += [Sentence(x.text, i, j, x.code, title=x.title, is_title=x.is_title) for j, x in enumerate(pieces)]
        return out

    def score(self, query: str, sentences: list[Sentence], n_passages: int, query_vector=None) -> None:
        """Set each sentence's score: shared words (idf-weighted), cosine, at least TITLE_SHARE of the score of
        the heading or FAQ title it sits under (the answer below "### 找不到 libGL.so.1" names no error), and a
        bonus for higher passages."""
        words = [set(tokenize(s.text)) for s in sentences]
        asked = set(tokenize(query))
        df = {w: sum(1 for ws in words if w in ws) for w in asked}
        idf = {w: math.log(1 + len(sentences) / df[w]) for w in asked if df[w]}
        total = sum(idf.values()) or 1.0
        lexical = [sum(idf.get(w, 0.0) for w in asked & ws) / total for ws in words]
        dense = self._dense(query, sentences, lexical, n_passages, query_vector)
        own = [self.lexical_weight * lex + (1 - self.lexical_weight) * cos for lex, cos in zip(lexical, dense)]
        titles = {(s.passage, s.position): score for s, score in zip(sentences, own) if s.is_title}
        for s, mine, lex, cos in zip(sentences, own, lexical, dense):
            s.lexical, s.cosine = lex, cos
            title = titles.get((s.passage, s.title), 0.0) if not s.is_title else 0.0
            inherited = TITLE_SHARE * title + (1 - TITLE_SHARE) * mine
            rank_bonus = self.top_passage_bonus * (1 - s.passage / max(1, n_passages))
            s.score = max(mine, inherited) + rank_bonus

    def _dense(self, query: str, sentences: list[Sentence], lexical: list[float], n_passages: int,
               query_vector=None) -> list[float]:
        """Cosine of each piece to the query; only the `dense_limit` pieces that share most words with it (or
        sit highest) are embedded, the rest get the lowest cosine seen: embedding every sentence of five
        passages costs more than the rest of the answer together."""
        if self.embedder is None or not sentences:
            return [0.0] * len(sentences)
        prior = [lex + self.top_passage_bonus * (1 - s.passage / max(1, n_passages))
                 for s, lex in zip(sentences, lexical)]
        keep = sorted(range(len(sentences)), key=lambda i: -prior[i])[:self.dense_limit]
        if query_vector is None:
            encode_query = getattr(self.embedder, 'encode_queries', None) or self.embedder.encode
            query_vector = np.asarray(encode_query([query]))[0]
        q = np.asarray(query_vector)
        vectors = np.asarray(self.embedder.encode([sentences[i].text for i in keep]))
        cosines = vectors @ q
        dense = [float(cosines.min())] * len(sentences)
        for i, cos in zip(keep, cosines):
            dense[i] = float(cos)
        return dense

    @staticmethod
    def _with_lead_in(s: Sentence, sentences: list[Sentence], chosen: list[Sentence]) -> Sentence:
        """A short sentence ("Check with `python3 --version`.") quoted with the prose sentence before it,
        which usually holds what it refers to."""
        # A Chinese character says about as much as two Latin letters.
        if len(s.text) + sum(map(_is_cjk, s.text)) >= SHORT_CHARS or s.code:
            return s
        before = [c for c in sentences if c.passage == s.passage and c.position == s.position - 1
                  and not c.code and not c.is_title and c not in chosen]
        if not before:
            return s
        return Sentence(f'{before[0].text} {s.text}', s.passage, s.position, False, s.score)

    @staticmethod
    def mark_echoes(query: str, sentences: list[Sentence]) -> None:
        """A piece that mostly repeats the question (the error the user pasted, as a FAQ entry or a log line
        in the docs states it), or any error line as a program prints it, becomes the title of the pieces
        after it in its section: they hold the fix."""
        asked = _char_grams(query)
        current: dict[tuple[int, int], int] = {}   # (passage, original title) -> echo position now in force
        for s in sentences:
            if s.is_title:
                continue
            key = (s.passage, s.title)
            grams = _char_grams(s.text)
            echo = len(s.text) >= 15 and len(grams & asked) / max(1, len(grams)) >= ECHO_SHARE
            if echo or _ERROR_LINE.match(s.text):
                s.is_title = True
                current[key] = s.position
                continue
            if key in current:
                s.title = current[key]

    @staticmethod
    def _with_code_after(s: Sentence, sentences: list[Sentence], chosen: list[Sentence],
                         passages: list[Passage]) -> Sentence:
        """A prose sentence followed by a code block ("如果想体验 RL，执行下述命令安装依赖。") quoted with the
        block's first lines: the command is the answer, the sentence says what it is for. A sentence that
        ends its passage takes them from the start of the next chunk of the file, where the block went."""
        if s.code:
            return s
        lines = []
        later = False
        for c in sentences:
            if c.passage != s.passage or c.position <= s.position or c.is_title:
                continue
            later = True
            if not c.code or c.position != s.position + 1 + len(lines) or c in chosen:
                break
            lines.append(c.text)
            if len(lines) == CODE_AFTER_LINES:
                break
        if not lines and not later and s.passage < len(passages):
            own = [c.text for c in sentences if c.passage == s.passage]
            lines = leading_code(passages[s.passage].following, own)
        if not lines:
            return s
        code = '; '.join(f'`{line}`' for line in lines)
        return Sentence(f'{s.text} {code}', s.passage, s.position, False, s.score, s.title)

    def answer(self, query: str, passages: list[Passage], query_vector=None, language: str = '',
               unmentioned: list[str] | None = None) -> ExtractedAnswer:
        """`query_vector`: the query's embedding when the caller has it (the reject stage computed it).
        `language` ('zh', 'en'): the asker's; a quote from a page in the other language is followed by the
        number of the same page in theirs when it is among the passages (docs/en/faq.md -> docs/zh_cn/faq.md).
        `unmentioned`: names in the question no document uses; the quotes are then introduced as the closest
        the documents come, not as the answer."""
        sentences = self.candidates(passages)
        self.mark_echoes(query, sentences)
        if not any(not s.is_title for s in sentences):
            return ExtractedAnswer('')
        self.score(query, sentences, len(passages), query_vector)
        ranked = sorted((s for s in sentences if not s.is_title), key=lambda s: s.score, reverse=True)
        chosen = [ranked[0]]
        for s in ranked[1:]:
            if len(chosen) >= self.max_sentences or s.score < ranked[0].score * self.keep_ratio:
                break
            if not any(near_duplicate(s.text, c.text) for c in chosen):
                chosen.append(s)
        chosen = [self._with_code_after(self._with_lead_in(s, sentences, chosen), sentences, chosen, passages)
                  for s in chosen]
        # Read in document order: passage by passage, sentence by sentence.
        chosen.sort(key=lambda s: (s.passage, s.position))
        lines, references = [], []
        if unmentioned:
            zh = language == 'zh'
            lines.append(UNMENTIONED_NOTE['zh' if zh else 'en'].format(words=('、' if zh else ', ').join(unmentioned)))
        for s in chosen:
            quoted = f'`{s.text}`' if s.code else s.text
            lines.append(f'> {quoted} [{s.passage + 1}]')
            reference = passages[s.passage].reference
            if reference not in references:
                references.append(reference)
        translations = self.translations(sorted({s.passage for s in chosen}), passages, language)
        for j in translations:   # one a line: only the [n] that ends a line is a citation
            lines.append(f'{TRANSLATION_NOTE[language]}[{j + 1}]')
            if passages[j].reference not in references:
                references.append(passages[j].reference)
        return ExtractedAnswer('\n'.join(lines), references, chosen)

    @staticmethod
    def translations(quoted: list[int], passages: list[Passage], language: str) -> list[int]:
        """Indexes of passages that are the asker's-language version of a quoted passage's page and are not
        quoted themselves: a Chinese asker quoted the English FAQ is pointed to the Chinese one as well."""
        if language not in TRANSLATION_NOTE:
            return []
        sources = [p.reference for p in passages]
        found = []
        for i in quoted:
            j = translation_of(sources[i], sources, language)
            if j >= 0 and j not in quoted and j not in found:
                found.append(j)
        return found
