"""Per-language figures of an answer benchmark run (bench_answers.py --qa): fact, right file, wrongly
ignored, retrieval hit@k of the source file, p50 seconds. It only summarises rows; it runs nothing.
"""
from __future__ import annotations

import statistics
from pathlib import Path


def retrieval_figures(item: dict, retrieved: list[dict], passages: list[str]) -> dict:
    """Where the source file ranks among the retrieved chunks, and whether a fact is in any of them."""
    files = [r['reference'].split('#', 1)[0] for r in retrieved]
    rank = files.index(item['source']) + 1 if item['source'] in files else 0
    text = '\n'.join(passages).lower()
    return {'source_rank': rank, 'fact_retrieved': any(f.lower() in text for f in item['facts'])}


def check_facts(items: list[dict], kb_root: Path) -> list[str]:
    """Problems with a dev set: a source that is not a file under kb_root, a fact not literally in it."""
    problems = []
    for item in items:
        path = kb_root / item['source']
        if not path.is_file():
            problems.append(f'{item["source"]}: no such file under {kb_root}')
            continue
        text = path.read_text(encoding='utf-8', errors='replace')
        problems += [f'{item["source"]}: fact {f!r} does not occur in it' for f in item['facts'] if f not in text]
    return problems


def figures(rows: list[dict], k: int = 5) -> dict:
    n = len(rows)
    ranked = [r for r in rows if 'source_rank' in r]
    return {'n': n,
            'fact': sum(r['fact_present'] for r in rows) / n,
            'cite': sum(r['right_citation'] for r in rows) / n,
            # On-topic questions all: a reject (UNRELATED) is a question wrongly ignored.
            'ignored': sum(r['code'] == 'UNRELATED' for r in rows) / n,
            'silent': sum(r['code'] != 'SUCCESS' for r in rows) / n,
            f'hit@{k}': sum(0 < r['source_rank'] <= k for r in ranked) / max(1, len(ranked)),
            'hit@1': sum(r['source_rank'] == 1 for r in ranked) / max(1, len(ranked)),
            'fact@5': sum(r['fact_retrieved'] for r in ranked) / max(1, len(ranked)),
            'p50': statistics.median(r['seconds'] for r in rows)}


def print_language_report(rows: list[dict]) -> None:
    """One line per (model, mode, language) and overall: the real-KB targets are fact >= 70 %, right file
    >= 85 %, wrongly ignored <= 5 %, hit@5 >= 90 %, p50 <= 1 s."""
    print('\nper language (targets: fact >= 70 %, cite >= 85 %, ignored <= 5 %, hit@5 >= 90 %, p50 <= 1 s; '
          'fact@5 = a fact is somewhere in the 5 retrieved chunks; silent = any non-answer)')
    print(f'{"model":28} {"mode":9} {"lang":5} {"n":>3} {"fact":>6} {"cite":>6} {"ignored":>8} {"silent":>7} '
          f'{"hit@5":>6} {"hit@1":>6} {"fact@5":>7} {"p50 s":>6}')
    for model in dict.fromkeys(r['model'] for r in rows):
        for mode in dict.fromkeys(r['mode'] for r in rows):
            sub = [r for r in rows if r['model'] == model and r['mode'] == mode]
            for lang in ('all', 'zh', 'en'):
                part = sub if lang == 'all' else [r for r in sub if r['language'] == lang]
                if not part:
                    continue
                f = figures(part)
                print(f'{model:28} {mode:9} {lang:5} {f["n"]:>3} {f["fact"]:>6.0%} {f["cite"]:>6.0%} '
                      f'{f["ignored"]:>8.0%} {f["silent"]:>7.0%} {f["hit@5"]:>6.0%} {f["hit@1"]:>6.0%} '
                      f'{f["fact@5"]:>7.0%} {f["p50"]:>6.2f}')


# The first line of an extractive answer to a question about something no document uses (generate.py).
NOT_MENTIONED = ('文档里没有提到', 'The documents do not mention')


def print_unanswerable_report(rows: list[dict]) -> None:
    """On-topic questions the documents do not answer: the answer should say so (or stay silent), not quote
    something unrelated as if it answered."""
    if not rows:
        return
    print('\nquestions the knowledge base does not answer (should say "not mentioned" or stay silent)')
    print(f'{"model":28} {"mode":9} {"n":>3} {"says not mentioned":>19} {"silent":>7} {"quotes as if answered":>22}')
    for model in dict.fromkeys(r['model'] for r in rows):
        for mode in dict.fromkeys(r['mode'] for r in rows):
            part = [r for r in rows if r['model'] == model and r['mode'] == mode]
            said = sum(r['code'] == 'SUCCESS' and r['reply'].startswith(NOT_MENTIONED) for r in part)
            silent = sum(r['code'] != 'SUCCESS' for r in part)
            n = len(part)
            print(f'{model:28} {mode:9} {n:>3} {said / n:>19.0%} {silent / n:>7.0%} {(n - said - silent) / n:>22.0%}')
