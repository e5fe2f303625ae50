"""The build summary on a first run says only what is true of the new store: example questions are quoted as
lines of the example files, on-topic ones it answers and chatter it ignores, and not ones that read like
the build's own error output."""
from __future__ import annotations

import shutil

from huixiangdou.service.feature_store import calibration
from huixiangdou.service.feature_store.__main__ import main as feature_store_main
from huixiangdou.service.feature_store.store_calibration import showcase
from tests.conftest import REPO_ROOT, write_config


def test_summary_quotes_examples_from_their_files(sample_store, tmp_path, capsys):
    work = tmp_path / 'work'
    shutil.copytree(sample_store[0], work)
    good, bad = REPO_ROOT / 'resource/good_questions.json', REPO_ROOT / 'resource/bad_questions.json'
    config = write_config(tmp_path / 'config.ini', feature_store={'embedding_model_path': ''})
    assert feature_store_main(['--config', str(config), '--work-dir', str(work), '--repo-dir',
                               str(REPO_ROOT / 'repodir'), '--good', str(good), '--bad', str(bad), '--quiet']) == 0
    out = capsys.readouterr().out
    assert 'would answer:' not in out and 'would ignore:' not in out
    answers = next(line for line in out.splitlines() if 'it answers these examples from good_questions.json' in line)
    ignores = next(line for line in out.splitlines() if 'stays silent on these examples from bad_questions.json' in line)
    quoted = lambda line: [q.split('»')[0] for q in line.split('«')[1:]]  # noqa: E731
    assert quoted(answers) and set(quoted(answers)) <= set(calibration.load_questions(good))
    assert quoted(ignores) and set(quoted(ignores)) <= set(calibration.load_questions(bad))
    # good_questions.json quotes error messages users paste ("StoreError: workdir was built with …"):
    # shown first they read like this build failing.
    assert 'Error' not in answers and 'Traceback' not in answers


def test_showcase_prefers_plain_questions_but_shows_something():
    lines = ['StoreError: workdir was built with all-MiniLM-L6-v2 怎么办', '怎么重建索引？',
             'pip 报错：ERROR: Cannot install x', 'Traceback (most recent call last)', 'how do I add a group?']
    assert showcase(lines, 3) == ['怎么重建索引？', 'how do I add a group?', lines[0]]
    assert showcase(lines[:1]) == lines[:1]
