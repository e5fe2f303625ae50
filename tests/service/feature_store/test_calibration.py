"""Threshold calibration on toy sets where the right answer is known."""
from __future__ import annotations

import json

import numpy as np
import pytest

from huixiangdou.service.feature_store.calibration import (QuestionFileError, best_threshold, calibrate,
                                                           load_questions, metrics_at)


def test_separable_scores_get_a_threshold_between_them():
    good = np.array([0.8, 0.85, 0.9, 0.7])
    bad = np.array([0.1, 0.2, 0.3, 0.5])
    m = best_threshold(good, bad)
    assert 0.5 < m.threshold <= 0.7
    assert m.f1 == pytest.approx(1.0) and m.precision == 1.0 and m.recall == 1.0


def test_overlapping_scores_get_the_best_f1():
    good = np.array([0.9, 0.8, 0.6, 0.4])
    bad = np.array([0.7, 0.3, 0.2, 0.1])
    m = best_threshold(good, bad)
    # Accepting >= 0.6 gives tp=3, fp=1 -> F1 0.75; accepting >= 0.4 gives tp=4, fp=1 -> F1 0.889.
    assert m.threshold == pytest.approx(0.35)
    assert m.f1 == pytest.approx(2 * 0.8 * 1.0 / 1.8)


def test_metrics_at_counts_accepts():
    m = metrics_at(np.array([0.9, 0.1]), np.array([0.95, 0.05]), 0.5)
    assert (m.precision, m.recall) == (0.5, 0.5)


def test_weight_search_finds_the_informative_signal():
    # Dense cosine is noise, sparse coverage separates perfectly: calibration must lean on sparse.
    rng = np.random.default_rng(1)
    good_cos, bad_cos = rng.uniform(0.3, 0.6, 30), rng.uniform(0.3, 0.6, 30)
    good_cov, bad_cov = rng.uniform(0.6, 1.0, 30), rng.uniform(0.0, 0.4, 30)
    m = calibrate(good_cos, good_cov, bad_cos, bad_cov)
    assert m.f1 == pytest.approx(1.0)
    assert m.weight <= 0.5
    fixed = calibrate(good_cos, good_cov, bad_cos, bad_cov, weight=1.0)
    assert fixed.weight == 1.0 and fixed.f1 < 1.0


def test_question_files_json_or_lines(tmp_path):
    (tmp_path / 'a.json').write_text(json.dumps(['如何安装？', ' ', 'How to run?']), encoding='utf-8')
    (tmp_path / 'b.txt').write_text('第一个问题\n\nsecond question\n', encoding='utf-8')
    assert load_questions(tmp_path / 'a.json') == ['如何安装？', 'How to run?']
    assert load_questions(tmp_path / 'b.txt') == ['第一个问题', 'second question']
    (tmp_path / 'empty.txt').write_text('\n', encoding='utf-8')
    with pytest.raises(QuestionFileError, match='no questions'):
        load_questions(tmp_path / 'empty.txt')
    with pytest.raises(QuestionFileError, match='not found'):
        load_questions(tmp_path / 'missing.json')
