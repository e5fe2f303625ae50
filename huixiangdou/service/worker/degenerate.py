"""Degenerate-answer detection: repetition loops, the prompt's context or scaffolding echoed back,
empty answers and answers cut at the token limit. Pure functions over text; the reason is a short word.

It does not judge whether an answer is right or relevant (the check stage does that with the LLM).
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

# A CJK ideograph is one unit (Chinese has no spaces); a run of letters/digits is one word; any other
# non-space character is one unit. Digits are folded to 0 so "1. 2. 3." reads as a loop too.
_UNIT = re.compile(r'[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[^\W\d_]+|\d+|[^\w\s]|_+')
_TABLE_RULE = re.compile(r'^\s*\|?[\s:|\-]+\|?\s*$', re.M)
_FENCE = re.compile(r'^\s*(```|~~~)', re.M)
# What our prompts put around the context; a model that writes these back is copying the prompt.
SCAFFOLDING = (re.compile(r'资料[:：]'), re.compile(r'问题[:：]'), re.compile(r'\bPassages:'),
               re.compile(r'\bMaterial:'), re.compile(r'\bQuestion:'),
               re.compile(r'\[\d{1,2}\]\s*\((?:[^()\s]+[/#.][^()]*)\)'),   # "[1] (zh/a.md#…)"
               re.compile(r'(?:资料|Material|Passage)\s*\[\d{1,2}\]\s*[:：]'),
               re.compile(r'^\s*\[\d{1,2}\]', re.M))   # a line opening with a number, as passages do
_NUMBER = re.compile(r'(?<![\w.])\d+(?:\.\d+)*(?![\w])')
_CITATION = re.compile(r'\[\d{1,2}\]')
_SENTENCE_END = re.compile(r'[。！？.!?)）\]】`"”\'’:：;；…~]\s*$')

LOOP_NGRAM = 5           # units per n-gram for loop detection
LOOP_MIN_UNITS = 16      # shorter answers are too short to call a loop
LOOP_REPEATS = 3         # an n-gram seen this often counts as repeating
LOOP_SHARE = 0.4         # share of positions inside repeating n-grams that makes a loop
ECHO_NGRAM = 6
ECHO_MIN_UNITS = 60      # one long sentence copied from a passage is an answer; a block is an echo
ECHO_SHARE = 0.6         # share of the answer's n-grams copied from the context that makes an echo
ECHO_RUN = 100           # units copied in one run that make an echo whatever the share
SCAFFOLD_RUN = 10        # units copied from the prompt's instructions that make scaffolding


@dataclass(frozen=True)
class Degeneration:
    """Why an answer must not be posted: `reason` is empty | scaffold | loop | echo | unsupported | cut."""
    reason: str
    detail: str = ''

    def __str__(self) -> str:
        return f'{self.reason}: {self.detail}' if self.detail else self.reason


def units(text: str) -> list[str]:
    """The text as comparable units: CJK characters, lowercased words, digits folded to 0, punctuation.

    Runs of one repeated punctuation mark count once, so "-----" and "# # #" are not loops by themselves.
    """
    out: list[str] = []
    for unit in _UNIT.findall(text.lower()):
        if unit.isdigit():
            unit = '0'
        if out and unit == out[-1] and len(unit) == 1 and not unit.isalnum() and not _is_cjk(unit):
            continue
        out.append(unit)
    return out


def _is_cjk(ch: str) -> bool:
    return '\u3400' <= ch <= '\u9fff' or '\uf900' <= ch <= '\ufaff'


def _ngrams(seq: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(seq[i:i + n]) for i in range(len(seq) - n + 1)]


def loop_share(text: str, n: int = LOOP_NGRAM, repeats: int = LOOP_REPEATS) -> float:
    """Share of the answer's units that lie inside an n-gram occurring at least `repeats` times."""
    seq = units(_TABLE_RULE.sub('', text))
    grams = _ngrams(seq, n)
    if not grams:
        return 0.0
    counts = Counter(grams)
    covered = [False] * len(seq)
    for i, gram in enumerate(grams):
        if counts[gram] >= repeats:
            covered[i:i + n] = [True] * n
    return sum(covered) / len(seq)


def copied_share(answer: str, context: str, n: int = ECHO_NGRAM) -> tuple[float, int]:
    """(share of the answer's n-grams found in the context, longest run of units copied verbatim)."""
    seq = units(answer)
    grams = _ngrams(seq, n)
    if not grams or not context:
        return 0.0, 0
    source = set(_ngrams(units(context), n))
    hits = [g in source for g in grams]
    longest = run = 0
    for hit in hits:
        run = run + 1 if hit else 0
        longest = max(longest, run)
    return sum(hits) / len(grams), (longest + n - 1 if longest else 0)


def unsupported_numbers(answer: str, context: str) -> list[str]:
    """Numbers of two or more digits (ports, versions, sizes) in the answer that the context never says.

    A small model fills a gap with a likely number ("port 80"); citation marks like [12] are not numbers.
    """
    known = set(_NUMBER.findall(context))
    known |= {part for number in known for part in number.split('.')}
    said = _NUMBER.findall(_CITATION.sub(' ', answer))
    return [n for n in dict.fromkeys(said) if len(n.replace('.', '')) >= 2 and n not in known]


def detect_degeneration(answer: str, context: str = '', finish_reason: str | None = None,
                        instructions: str = '') -> Degeneration | None:
    """The first reason `answer` must not be posted, or None when it reads like an answer.

    `context` is the passage text (and question) the prompt carried (echo: a large block copied back;
    one copied sentence is an answer; unsupported: a number the context never says); `instructions`
    the prompt's own wording, system message included (any copied phrase is scaffolding);
    `finish_reason` the backend's ('length' = stopped at max_new_tokens), when the client exposes it.

    >>> detect_degeneration('# # 1. # # 2. # # 3. # # 4. # # 5. # # 6. # # 7.').reason
    'loop'
    >>> detect_degeneration('重建索引请加 --rebuild 参数 [1]。') is None
    True
    """
    text = answer.strip()
    seq = units(text)
    if sum(1 for u in seq if u.isalnum() or _is_cjk(u)) < 2:
        return Degeneration('empty', f'{len(text)} characters')
    for pattern in SCAFFOLDING:
        found = pattern.search(text)
        if found:
            return Degeneration('scaffold', repr(found.group()))
    if instructions:
        _, run = copied_share(text, instructions, n=SCAFFOLD_RUN)
        if run:
            return Degeneration('scaffold', f'{run} units of the instructions copied')
    if len(seq) >= LOOP_MIN_UNITS:
        share = loop_share(text)
        if share >= LOOP_SHARE:
            return Degeneration('loop', f'{share:.0%} of the answer repeats')
    if len(seq) >= ECHO_MIN_UNITS:
        share, run = copied_share(text, context)
        if share >= ECHO_SHARE or run >= ECHO_RUN:
            return Degeneration('echo', f'{share:.0%} copied from the context, longest run {run} units')
    if context:
        invented = unsupported_numbers(text, context)
        if invented:
            return Degeneration('unsupported', f'numbers not in the context: {", ".join(invented[:3])}')
    if len(_FENCE.findall(text)) % 2:
        return Degeneration('cut', 'a code block is left open')
    if finish_reason == 'length' and not _SENTENCE_END.search(text):
        return Degeneration('cut', 'stopped at the token limit mid-sentence')
    return None
