"""Command line: build or update the feature store, or evaluate rejection on labelled questions.

    python -m huixiangdou.service.feature_store                 # repodir/ -> workdir/, then calibrate
    python -m huixiangdou.service.feature_store --eval-good G --eval-bad B [--json]
    python -m huixiangdou.service.feature_store --explain "一条消息"         # why answer / stay silent
    python -m huixiangdou.service.feature_store --kb docs      # only [knowledge_base.docs]
    python -m huixiangdou.service.feature_store --verify       # check the store's files; exit 1 if damaged

Every command runs on each knowledge base in turn ("default" = [feature_store], then each
[knowledge_base.<name>]), or on the one --kb names; one that fails is reported and the others still run.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
from loguru import logger

from huixiangdou.config import DEFAULT_KNOWLEDGE_BASE, Config, ConfigError, load_config, reject_throttle_override
from huixiangdou.primitive.documents.walker import RepoDirError
from huixiangdou.primitive.embedder import EmbedderError
from huixiangdou.service.api_embedder import make_embedder
from huixiangdou.service.feature_store import calibration
from huixiangdou.service.feature_store.builder import BuildError, BuildReport, FeatureStoreBuilder
from huixiangdou.service.feature_store.store import FeatureStore
from huixiangdou.service.feature_store.store_files import StoreError, verify_store


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='python -m huixiangdou.service.feature_store',
        description='Build the feature store (parse, chunk, embed, FAISS + BM25 index) from a folder of '
                    'documents and calibrate the reject threshold; or evaluate rejection on labelled '
                    'questions against an existing store.')
    # The underscore spellings (--config_path, --repo_dir, --work_dir, --good_questions, --bad_questions) are
    # upstream HuixiangDou's, accepted so its users' scripts keep working.
    parser.add_argument('--config', '--config_path', dest='config', default='config.ini',
                        help='config file (TOML), default: %(default)s')
    parser.add_argument('--kb', metavar='NAME',
                        help='only this knowledge base: a [knowledge_base.NAME] section, or '
                             f'"{DEFAULT_KNOWLEDGE_BASE}" '
                             'for [feature_store] (default: every knowledge base in turn)')
    parser.add_argument('--repo-dir', '--repo_dir', dest='repo_dir',
                        help='documents to index (default: [feature_store] repo_dir)')
    parser.add_argument('--work-dir', '--work_dir', dest='work_dir',
                        help='where the store is written (default: [feature_store] work_dir)')
    parser.add_argument('--rebuild', action='store_true',
                        help='re-parse and re-embed every file instead of only new or changed ones')
    parser.add_argument('--good', '--good_questions', dest='good',
                        help='on-topic questions for calibration (default: [feature_store] good_questions)')
    parser.add_argument('--bad', '--bad_questions', dest='bad',
                        help='chatter for calibration (default: [feature_store] bad_questions)')
    parser.add_argument('--eval-good', help='evaluate: labelled on-topic questions (JSON list or one per line)')
    parser.add_argument('--eval-bad', help='evaluate: labelled chatter')
    parser.add_argument('--explain', metavar='MESSAGE',
                        help='show how the reject stage decides MESSAGE: score, threshold, nearest examples, '
                             'best chunk with its citation, the words that mattered')
    parser.add_argument('--verify', action='store_true',
                        help='check every file of the published store against the checksums recorded when it '
                             'was built, without loading it; exit 1 with the reason when it is damaged')
    parser.add_argument('--json', action='store_true', help='print the result as JSON')
    parser.add_argument('--quiet', action='store_true', help='no progress bars or info logs')
    return parser.parse_args(argv)


def _print_build(report: BuildReport, reject_throttle: float | None, good: Path | None = None,
                 bad: Path | None = None) -> None:
    print(f'Feature store written to {report.work_dir} in {report.seconds:.1f}s')
    print(f'  files indexed: {len(report.indexed)}  unchanged (reused): {len(report.reused)}  '
          f'deleted: {len(report.deleted)}  skipped: {len(report.skipped)}')
    for item in report.skipped:
        print(f'    skipped {item["source"]}: {item["reason"]}')
    print(f'  chunks: {report.chunks} ({report.new_chunks} embedded in this run, '
          f'{report.embed_seconds:.1f}s embedding, {report.parse_seconds:.1f}s parsing)')
    cal = report.calibration
    if cal:
        c = cal['cross_validated']
        how = ('learned from the examples' if cal['model'] == 'classifier' else
               'too few examples: conservative rule (see docs/feature_store.md)')
        print(f'  reject model: {how}, {cal["good_questions"]} on-topic / {cal["bad_questions"]} chatter examples')
        print(f'    threshold {c["threshold"]:.4f} for target "{cal["target"]}"'
              f'{"" if cal["target_met"] else " (NOT met: most precise threshold used)"}; cross-validated '
              f'precision {c["precision"]:.3f} recall {c["recall"]:.3f} F1 {c["f1"]:.3f}')
        for name in ('dense_only', 'sparse_only'):
            m = cal[name]
            if m:
                print(f'    for comparison, {name.replace("_", " ")} (best threshold, in sample): F1 {m["f1"]:.3f}')
        if reject_throttle is not None:
            print(f'  note: config.ini reject_throttle = {reject_throttle} overrides the calibrated threshold '
                  f'{c["threshold"]:.4f}; set it to -1 to use the calibration')
        # Quoted as what they are: lines of the example files, scored by models that never saw them.
        for key, verb, path in (('accepted', 'answers', good), ('rejected', 'stays silent on', bad)):
            if report.examples.get(key):
                print(f'    e.g. it {verb} these examples from {path.name if path else "the example files"}: '
                      + '  '.join(f'«{q}»' for q in report.examples[key]))
    print(f'  report: {Path(report.work_dir) / "report.json"}')


def evaluate(config: Config, work_dir: Path, good: Path, bad: Path, embedder=None) -> dict:
    """Precision/recall/F1 of the reject model on labelled messages, at the threshold in force and at
    the best one for these messages (which flatters: it is chosen on them)."""
    store = FeatureStore.load(work_dir, embedder or make_embedder(config))
    good_q, bad_q = calibration.load_questions(good), calibration.load_questions(bad)
    threshold = store.decision_threshold(reject_throttle_override(config, store.calibrated_threshold))
    scores = np.array([s.score for s in store.reject_scores(good_q + bad_q)])
    g, b = scores[:len(good_q)], scores[len(good_q):]
    return {
        'work_dir': str(work_dir), 'good_questions': len(good_q), 'bad_questions': len(bad_q),
        'embedding_model': store.manifest.embedding_model, 'model': store.reject_model.kind,
        'stored_threshold': calibration.metrics_at(g, b, threshold).to_json(),
        'best_threshold': calibration.best_threshold(g, b).to_json(),
    }


def _print_explanation(query: str, why: dict) -> None:
    threshold = why['threshold']
    verdict = 'ANSWER' if why['answer'] else 'STAY SILENT'
    print(f'{verdict}: P(on-topic) = {why["score"]:.3f}, threshold {threshold:.3f} ({why["model"]})')
    print(f'  message: {query}')
    if 'evidence' in why:
        print('  evidence (contribution to the log-odds; + answers, - stays silent):')
        for name, item in sorted(why['evidence'].items(), key=lambda kv: -abs(kv[1]['contribution'])):
            print(f'    {item["contribution"]:+7.2f}  {name} = {item["value"]:g}')
        print(f'  character n-grams for: {" ".join(why["ngrams_for"]) or "-"}   '
              f'against: {" ".join(why["ngrams_against"]) or "-"}')
    else:
        print(f'  {why["rule"]}')
    words = ', '.join(f'{w["word"]} ({w["specificity"]:.1f})' for w in why['specific_words'])
    print(f'  words specific to the documents (log-ratio to everyday text): {words or "-"}')
    for item in why.get('entities', []):
        where = f', e.g. {item["found_in"]}' if item.get('found_in') else ' (too common to point at one passage)'
        print(f'  entity {item["entity"]}: named in {item["chunks"]} chunk(s) of {item["files"]} file(s){where}')
    for key, label in (('nearest_on_topic', 'nearest on-topic examples'), ('nearest_chatter', 'nearest chatter')):
        for item in why.get(key, []):
            print(f'  {label}: {item["cosine"]:.3f}  {item["text"]}')
    for key in ('best_chunk', 'best_bm25_chunk'):
        chunk = why.get(key)
        if chunk:
            score = chunk.get('cosine', chunk.get('bm25'))
            name = 'cosine' if 'cosine' in chunk else 'bm25'
            print(f'  {key.replace("_", " ")}: {chunk["reference"]} ({name} {score:.3f}): {chunk["text"]}')


# What one knowledge base's run may raise: reported, and the next knowledge base still runs.
KB_ERRORS = (ConfigError, RepoDirError, BuildError, StoreError, EmbedderError, calibration.QuestionFileError)


class EmbedderCache:
    """One loaded embedding model per distinct model, shared by the knowledge bases that use it."""

    def __init__(self):
        self._models: dict[tuple[str, str], object] = {}

    def get(self, config: Config):
        fs = config.feature_store
        key = (fs.embedding_model_path, fs.embedding_api_model)
        if key not in self._models:
            self._models[key] = make_embedder(config)
        return self._models[key]


def run_one(config: Config, args: argparse.Namespace, embedders: EmbedderCache) -> dict | None:
    """Build, evaluate or explain one knowledge base (`config.feature_store` is it); print the result unless
    --json, and return it as JSON. Raises one of KB_ERRORS."""
    fs = config.feature_store
    work_dir = Path(args.work_dir) if args.work_dir else config.path(fs.work_dir)
    if args.verify:
        folder = verify_store(work_dir)
        if not args.json:
            print(f'feature store {folder}: every file matches the checksums recorded when it was built')
        return {'work_dir': str(work_dir), 'folder': str(folder), 'verified': True}
    if args.explain is not None:
        store = FeatureStore.load(work_dir, embedders.get(config))
        why = store.explain(args.explain, reject_throttle_override(config, store.calibrated_threshold))
        if not args.json:
            _print_explanation(args.explain, why)
        return why
    if args.eval_good:
        result = evaluate(config, work_dir, Path(args.eval_good), Path(args.eval_bad), embedders.get(config))
        if not args.json:
            print(f'Rejection on {result["good_questions"]} good / {result["bad_questions"]} bad questions '
                  f'({result["embedding_model"]}, reject model: {result["model"]}):')
            for key in ('stored_threshold', 'best_threshold'):
                m = result[key]
                print(f'  {key.replace("_", " "):18s} threshold {m["threshold"]:.4f}  precision '
                      f'{m["precision"]:.3f}  recall {m["recall"]:.3f}  F1 {m["f1"]:.3f}')
        return result
    repo_dir = Path(args.repo_dir) if args.repo_dir else config.path(fs.repo_dir)
    good = Path(args.good) if args.good else config.path(fs.good_questions)
    bad = Path(args.bad) if args.bad else config.path(fs.bad_questions)
    for given, path in ((args.good, good), (args.bad, bad)):
        if given and not path.is_file():
            raise calibration.QuestionFileError(f'question file {path} not found')
    if not (good.is_file() and bad.is_file()):
        logger.warning('question files {} / {} not found: the reject stage keeps its last calibration, '
                       'or uses the conservative rule', good, bad)
        good = bad = None
    builder = FeatureStoreBuilder(fs, embedders.get(config), progress=not (args.quiet or args.json), ocr=config.ocr)
    report = builder.build(repo_dir, work_dir, rebuild=args.rebuild, good=good, bad=bad)
    if not args.json:
        _print_build(report, reject_throttle_override(config), good, bad)
    return report.to_json()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from huixiangdou.main import Stopped, stop_on_termination_signals

    # SIGTERM unwinds like Ctrl-C, so the builder kills its parse processes instead of orphaning them.
    stop_on_termination_signals()
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    logger.remove()
    logger.add(sys.stderr, level='WARNING' if args.quiet or args.json or args.explain or args.verify else 'INFO')
    if bool(args.eval_good) != bool(args.eval_bad):
        print('error: --eval-good and --eval-bad go together', file=sys.stderr)
        return 2
    if args.verify and (args.eval_good or args.explain is not None):
        print('error: --verify checks the store on its own: leave out --eval-good/--eval-bad and --explain',
              file=sys.stderr)
        return 2
    try:
        config = load_config(args.config)
        names = list(config.knowledge_bases())
        if args.kb is not None:
            config.for_knowledge_base(args.kb)  # ConfigError naming the known ones
            names = [args.kb]
    except ConfigError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1
    paths = [flag for flag, value in (('--repo-dir', args.repo_dir), ('--work-dir', args.work_dir),
                                      ('--good', args.good), ('--bad', args.bad)) if value]
    if paths and len(names) > 1:
        print(f'error: {", ".join(paths)} apply to one knowledge base, and this config has {len(names)} '
              f'({", ".join(names)}): add --kb NAME', file=sys.stderr)
        return 2
    several = len(names) > 1
    embedders = EmbedderCache()
    results: dict[str, dict | None] = {}
    failed: list[str] = []
    try:
        for name in names:
            if several and not args.json:
                print(f'== knowledge base "{name}" ==', flush=True)
            try:
                results[name] = run_one(config.for_knowledge_base(name), args, embedders)
            except KB_ERRORS as exc:
                failed.append(name)
                results[name] = {'error': str(exc)}
                print(f'error: knowledge base "{name}": {exc}' if several else f'error: {exc}', file=sys.stderr)
    except KeyboardInterrupt as exc:
        print('interrupted: the previous feature store (if any) is unchanged', file=sys.stderr)
        return 128 + exc.signum if isinstance(exc, Stopped) else 130
    if args.json and not (failed and not several):
        print(json.dumps(results if several else results[names[0]], ensure_ascii=False, indent=1))
    if failed and several:
        print(f'error: {len(failed)} of {len(names)} knowledge bases failed: {", ".join(failed)}', file=sys.stderr)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
