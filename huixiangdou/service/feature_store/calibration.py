"""Choose the reject threshold for an operating point ("f1", or "precision:0.9" for a bot that must not
spam) from scores of labelled examples, and measure precision/recall/F1 there; also the retrieval
dense/sparse weight. It does not touch config.ini and fits no model (reject_model.py does).

"Positive" means accepted: a good question scoring >= threshold is a true positive.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from huixiangdou.config import parse_reject_target


class QuestionFileError(ValueError):
    """A question file is missing, empty or unreadable."""


@dataclass
class Metrics:
    threshold: float
    precision: float
    recall: float
    f1: float
    weight: float | None = None

    def to_json(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    def __str__(self) -> str:
        w = f' weight={self.weight:.2f}' if self.weight is not None else ''
        return (f'threshold={self.threshold:.4f}{w} precision={self.precision:.3f} '
                f'recall={self.recall:.3f} F1={self.f1:.3f}')


def load_questions(path: Path) -> list[str]:
    """Questions from a JSON list of strings, or one question per line."""
    path = Path(path)
    if not path.is_file():
        raise QuestionFileError(f'question file {path} not found')
    text = path.read_text(encoding='utf-8-sig')
    stripped = text.strip()
    if stripped.startswith('['):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise QuestionFileError(f'{path} looks like JSON but does not parse: {exc}') from exc
        questions = [q.strip() for q in data if isinstance(q, str) and q.strip()]
    else:
        questions = [line.strip() for line in text.splitlines() if line.strip()]
    if not questions:
        raise QuestionFileError(f'{path} holds no questions')
    return questions


def metrics_at(good: np.ndarray, bad: np.ndarray, threshold: float, weight: float | None = None) -> Metrics:
    tp = float(np.sum(good >= threshold))
    fp = float(np.sum(bad >= threshold))
    fn = float(len(good) - tp)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Metrics(float(threshold), precision, recall, f1, weight)


def best_threshold(good: np.ndarray, bad: np.ndarray, weight: float | None = None) -> Metrics:
    """Sweep thresholds halfway between consecutive distinct scores; keep the best F1.

    Ties go to the higher threshold (fewer false accepts: a silent bot annoys less than a chatty one).
    """
    good, bad = np.asarray(good, dtype=np.float64), np.asarray(bad, dtype=np.float64)
    values = np.unique(np.concatenate([good, bad]))
    candidates = np.concatenate([[values[0] - 1e-6], (values[:-1] + values[1:]) / 2, [values[-1] + 1e-6]])
    best = None
    for t in candidates:
        m = metrics_at(good, bad, float(t), weight)
        if best is None or m.f1 >= best.f1:
            best = m
    return best


def choose_threshold(good: np.ndarray, bad: np.ndarray, target: str = 'f1') -> tuple[Metrics, bool]:
    """The threshold for `target` and its metrics; the flag is False when a precision target cannot be
    met (then the most precise threshold that still accepts something is returned)."""
    min_precision = parse_reject_target(target)
    if min_precision is None:
        return best_threshold(good, bad), True
    good, bad = np.asarray(good, dtype=np.float64), np.asarray(bad, dtype=np.float64)
    values = np.unique(np.concatenate([good, bad]))
    candidates = (np.concatenate([[values[0] - 1e-6], (values[:-1] + values[1:]) / 2, [values[-1] - 1e-9]])
                  if len(values) else [])
    met, fallback = None, None
    for t in candidates:
        m = metrics_at(good, bad, float(t))
        if m.recall == 0:
            continue
        if m.precision >= min_precision - 1e-12 and (met is None or m.recall > met.recall):
            met = m
        if fallback is None or (m.precision, m.recall) > (fallback.precision, fallback.recall):
            fallback = m
    if met is not None:
        return met, True
    return (fallback or metrics_at(good, bad, float(values[-1]) + 1e-6 if len(values) else 1.0)), False


def calibrate(good_cos: np.ndarray, good_cov: np.ndarray, bad_cos: np.ndarray, bad_cov: np.ndarray,
              weight: float | None = None) -> Metrics:
    """Best threshold for a fixed weight, or the best (weight, threshold) pair when weight is None."""
    weights = [weight] if weight is not None else [round(w, 2) for w in np.linspace(0, 1, 21)]
    best = None
    for w in weights:
        m = best_threshold(w * good_cos + (1 - w) * good_cov, w * bad_cos + (1 - w) * bad_cov, w)
        # Prefer weights near the middle on ties: both kinds of evidence keep a say.
        if best is None or m.f1 > best.f1 + 1e-9 or (
                abs(m.f1 - best.f1) <= 1e-9 and abs(w - 0.5) < abs(best.weight - 0.5)):
            best = m
    return best
