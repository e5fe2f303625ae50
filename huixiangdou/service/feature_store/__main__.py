"""Command line: build or update the feature store, or evaluate rejection on labelled questions.

    python -m huixiangdou.service.feature_store                 # repodir/ -> workdir/, then calibrate
    python -m huixiangdou.service.feature_store --eval-good G --eval-bad B [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
from loguru import logger

from huixiangdou.config import Config, ConfigError, load_config
from huixiangdou.primitive.documents.walker import RepoDirError
from huixiangdou.primitive.embedder import EmbedderError
from huixiangdou.service.api_embedder import make_embedder
from huixiangdou.service.feature_store import calibration
from huixiangdou.service.feature_store.builder import BuildError, BuildReport, FeatureStoreBuilder
from huixiangdou.service.feature_store.store import FeatureStore, StoreError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='python -m huixiangdou.service.feature_store',
        description='Build the feature store (parse, chunk, embed, FAISS + BM25 index) from a folder of '
                    'documents and calibrate the reject threshold; or evaluate rejection on labelled '
                    'questions against an existing store.')
    parser.add_argument('--config', default='config.ini', help='config file (TOML), default: %(default)s')
    parser.add_argument('--repo-dir', help='documents to index (default: [feature_store] repo_dir)')
    parser.add_argument('--work-dir', help='where the store is written (default: [feature_store] work_dir)')
    parser.add_argument('--rebuild', action='store_true',
                        help='re-parse and re-embed every file instead of only new or changed ones')
    parser.add_argument('--good', help='on-topic questions for calibration (default: [feature_store] good_questions)')
    parser.add_argument('--bad', help='chatter for calibration (default: [feature_store] bad_questions)')
    parser.add_argument('--eval-good', help='evaluate: labelled on-topic questions (JSON list or one per line)')
    parser.add_argument('--eval-bad', help='evaluate: labelled chatter')
    parser.add_argument('--json', action='store_true', help='print the result as JSON')
    parser.add_argument('--quiet', action='store_true', help='no progress bars or info logs')
    return parser.parse_args(argv)


def _print_build(report: BuildReport, threshold_override: float) -> None:
    print(f'Feature store written to {report.work_dir} in {report.seconds:.1f}s')
    print(f'  files indexed: {len(report.indexed)}  unchanged (reused): {len(report.reused)}  '
          f'deleted: {len(report.deleted)}  skipped: {len(report.skipped)}')
    for item in report.skipped:
        print(f'    skipped {item["source"]}: {item["reason"]}')
    print(f'  chunks: {report.chunks} ({report.new_chunks} embedded in this run, '
          f'{report.embed_seconds:.1f}s embedding, {report.parse_seconds:.1f}s parsing)')
    cal = report.calibration
    if cal:
        c = cal['combined']
        print(f'  reject threshold: {c["threshold"]:.4f} (dense weight {c["weight"]:.2f}) from '
              f'{cal["good_questions"]} good / {cal["bad_questions"]} bad questions: precision '
              f'{c["precision"]:.3f} recall {c["recall"]:.3f} F1 {c["f1"]:.3f}')
        for name in ('dense_only', 'sparse_only'):
            m = cal[name]
            print(f'    {name.replace("_", " ")}: F1 {m["f1"]:.3f} (precision {m["precision"]:.3f}, '
                  f'recall {m["recall"]:.3f})')
        if threshold_override != -1:
            print(f'  note: config.ini reject_throttle = {threshold_override} overrides the calibrated value')
        print('  would answer: ' + ' | '.join(report.examples.get('accepted', [])))
        print('  would ignore: ' + ' | '.join(report.examples.get('rejected', [])))
    print(f'  report: {Path(report.work_dir) / "report.json"}')


def evaluate(config: Config, work_dir: Path, good: Path, bad: Path) -> dict:
    """Precision/recall/F1 of rejection on labelled questions, at the stored and the best threshold."""
    store = FeatureStore.load(work_dir, make_embedder(config))
    good_q, bad_q = calibration.load_questions(good), calibration.load_questions(bad)
    g = store.reject_scores(good_q, weight=1.0)
    b = store.reject_scores(bad_q, weight=1.0)
    cos_g, cov_g = np.array([s.cosine for s in g]), np.array([s.coverage for s in g])
    cos_b, cov_b = np.array([s.cosine for s in b]), np.array([s.coverage for s in b])
    w = store.manifest.reject_dense_weight
    comb_g, comb_b = w * cos_g + (1 - w) * cov_g, w * cos_b + (1 - w) * cov_b
    override = config.feature_store.reject_throttle
    threshold = override if override != -1 else (store.threshold if store.threshold is not None else 0.0)
    return {
        'work_dir': str(work_dir), 'good_questions': len(good_q), 'bad_questions': len(bad_q),
        'embedding_model': store.manifest.embedding_model, 'dense_weight': w,
        'stored_threshold': calibration.metrics_at(comb_g, comb_b, threshold, w).to_json(),
        'best_threshold': calibration.best_threshold(comb_g, comb_b, w).to_json(),
        'dense_only_best': calibration.best_threshold(cos_g, cos_b, 1.0).to_json(),
        'sparse_only_best': calibration.best_threshold(cov_g, cov_b, 0.0).to_json(),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    logger.remove()
    logger.add(sys.stderr, level='WARNING' if args.quiet or args.json else 'INFO')
    try:
        config = load_config(args.config)
        fs = config.feature_store
        work_dir = Path(args.work_dir) if args.work_dir else config.path(fs.work_dir)
        if args.eval_good or args.eval_bad:
            if not (args.eval_good and args.eval_bad):
                print('error: --eval-good and --eval-bad go together', file=sys.stderr)
                return 2
            result = evaluate(config, work_dir, Path(args.eval_good), Path(args.eval_bad))
            if args.json:
                print(json.dumps(result, ensure_ascii=False, indent=1))
            else:
                print(f'Rejection on {result["good_questions"]} good / {result["bad_questions"]} bad questions '
                      f'({result["embedding_model"]}, dense weight {result["dense_weight"]:.2f}):')
                for key in ('stored_threshold', 'best_threshold', 'dense_only_best', 'sparse_only_best'):
                    m = result[key]
                    print(f'  {key.replace("_", " "):18s} threshold {m["threshold"]:.4f}  precision '
                          f'{m["precision"]:.3f}  recall {m["recall"]:.3f}  F1 {m["f1"]:.3f}')
            return 0
        repo_dir = Path(args.repo_dir) if args.repo_dir else config.path(fs.repo_dir)
        good = Path(args.good) if args.good else config.path(fs.good_questions)
        bad = Path(args.bad) if args.bad else config.path(fs.bad_questions)
        for given, path in ((args.good, good), (args.bad, bad)):
            if given and not path.is_file():
                print(f'error: question file {path} not found', file=sys.stderr)
                return 1
        if not (good.is_file() and bad.is_file()):
            logger.warning('question files {} / {} not found: the reject threshold is not calibrated',
                           good, bad)
            good = bad = None
        builder = FeatureStoreBuilder(fs, make_embedder(config), progress=not (args.quiet or args.json))
        report = builder.build(repo_dir, work_dir, rebuild=args.rebuild, good=good, bad=bad)
        if args.json:
            print(json.dumps(report.to_json(), ensure_ascii=False, indent=1))
        else:
            _print_build(report, fs.reject_throttle)
        return 0
    except (ConfigError, RepoDirError, BuildError, StoreError, EmbedderError,
            calibration.QuestionFileError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('interrupted: the previous feature store (if any) is unchanged', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
