"""The sample QA set (resource/qa_sample.json) that bench/bench_answers.py scores answers with: every
question names a real file of repodir/ and facts that file's parsed text really contains."""
from __future__ import annotations

import json
from collections import Counter
from functools import lru_cache

import pytest

from huixiangdou.primitive.documents import parse_file
from tests.conftest import REPO_ROOT

QA_PATH = REPO_ROOT / 'resource' / 'qa_sample.json'
REPO_DIR = REPO_ROOT / 'repodir'
QA = json.loads(QA_PATH.read_text(encoding='utf-8'))


@lru_cache(maxsize=None)
def parsed_text(source: str) -> str:
    return parse_file(REPO_DIR / source, source).text.lower()


def test_the_set_is_large_enough_in_both_languages():
    assert len(QA) >= 60
    languages = Counter(item['language'] for item in QA)
    assert set(languages) == {'zh', 'en'}
    assert languages['zh'] >= 25 and languages['en'] >= 25, languages


def test_items_have_the_documented_shape():
    for item in QA:
        assert set(item) == {'question', 'language', 'facts', 'source'}, item
        assert item['question'].strip() and item['facts'], item
        assert all(isinstance(f, str) and f.strip() for f in item['facts']), item


def test_no_question_is_asked_twice():
    questions = Counter(item['question'].strip().lower() for item in QA)
    assert [q for q, n in questions.items() if n > 1] == []


def test_every_file_of_the_sample_knowledge_base_is_asked_about():
    files = {p.relative_to(REPO_DIR).as_posix() for p in REPO_DIR.rglob('*') if p.is_file()}
    sources = {item['source'] for item in QA}
    assert sources <= files, sources - files
    assert files <= sources, f'no question about {sorted(files - sources)}'


@pytest.mark.parametrize('item', QA, ids=[f"{i}-{item['source']}" for i, item in enumerate(QA)])
def test_every_fact_is_in_its_source(item):
    text = parsed_text(item['source'])
    missing = [fact for fact in item['facts'] if fact.lower() not in text]
    assert missing == [], f"{item['source']} does not contain {missing} (question: {item['question']})"


def test_a_fact_is_never_a_lone_digit():
    # Answers cite passages as [1]..[5]; a one-digit fact would be "found" in any cited answer.
    assert [item['question'] for item in QA if any(f.strip().isdigit() and len(f.strip()) < 2
                                                   for f in item['facts'])] == []
