"""Follow-ups in context: replies under a quoted message, answered or left silent, today vs. with the follow-up stage.

    python bench/bench_followups.py --work-root /tmp/rdev/work                 # a built store, config.ini's model
    python bench/bench_followups.py --work-root /tmp/fu-sample --sample        # the sample store (built if missing)

Each item of --followups (bench/data/followups.json) is a quote (a group message, or a bot answer composed
from the knowledge base), who wrote it, a reply and whether the bot should answer the reply. The decision
is the worker's own stages up to reject, run as the worker wires them: "today" without the follow-up stage
(the reply judged alone, the quote ignored), "follow-up" with it. Prints precision / recall / F1 of
"answer" overall and per quote_from, the items each gets wrong, and the decision's time per message
(mean over the set; a ratio to today, measured in the same run).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

os.environ.setdefault('HF_HUB_OFFLINE', '1')

from huixiangdou.config import Config, FeatureStoreConfig, WorkerConfig, load_config  # noqa: E402
from huixiangdou.service.api_embedder import make_embedder  # noqa: E402
from huixiangdou.service.feature_store import FeatureStore  # noqa: E402
from huixiangdou.service.worker.followup import FollowUp  # noqa: E402
from huixiangdou.service.worker.pipeline import Worker  # noqa: E402
from huixiangdou.service.worker.preprocess import Preprocess  # noqa: E402
from huixiangdou.service.worker.reject import Reject  # noqa: E402
from huixiangdou.service.worker.session import Session  # noqa: E402

HERE = Path(__file__).resolve().parent
LABELS = ('answer', 'silent')


def load_items(path: Path) -> list[dict]:
    items = json.loads(path.read_text(encoding='utf-8'))
    for i, item in enumerate(items):
        if item.get('label') not in LABELS or item.get('quote_from') not in ('user', 'bot'):
            raise ValueError(f'{path} item {i}: label must be answer|silent and quote_from user|bot, got {item}')
    return items


def sample_store(work: Path, embedder) -> None:
    """The shipped sample knowledge base, built with the shipped question sets, as the tests build it."""
    from huixiangdou.service.feature_store.builder import FeatureStoreBuilder
    if (work / 'CURRENT').is_file():
        return
    root = HERE.parent
    FeatureStoreBuilder(FeatureStoreConfig(embedding_model_path=''), embedder, progress=False).build(
        root / 'repodir', work, good=root / 'resource/good_questions.json', bad=root / 'resource/bad_questions.json')


def decision_stages(store) -> dict[str, list]:
    """The worker's own stages up to reject, with and without the follow-up stage."""
    worker = Worker(WorkerConfig(answer_mode='extract', ocr=0), store, llm=None)
    upto = worker._stages_for(Session(query='?', quote='?'))
    upto = [s for s in upto if isinstance(s, (FollowUp, Preprocess, Reject))]
    return {'today': [s for s in upto if not isinstance(s, FollowUp)], 'follow-up': upto}


async def decide(stages: list, item: dict) -> tuple[bool, Session]:
    session = Session(query=item['reply'], quote=item['quote'], quote_from_bot=item['quote_from'] == 'bot',
                      quoted_question=item.get('quoted_question', ''))
    for stage in stages:
        await stage.run(session)
        if session.done:
            return False, session
    return True, session


def scores(pairs: list[tuple[bool, str]]) -> tuple[float, float, float, int]:
    tp = sum(1 for said, label in pairs if said and label == 'answer')
    fp = sum(1 for said, label in pairs if said and label == 'silent')
    fn = sum(1 for said, label in pairs if not said and label == 'answer')
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0), len(pairs)


async def run(store, items: list[dict]) -> None:
    by_name = decision_stages(store)
    quotes = sorted({item['quote'] for item in items})
    quote_scores = dict(zip(quotes, (s.score for s in store.reject_scores(quotes))))
    threshold = store.decision_threshold(None)
    results, timing = {}, {}
    for name, stages in by_name.items():
        await decide(stages, items[0])  # warm: jieba, the model's first call
        started = time.perf_counter()
        results[name] = [await decide(stages, item) for item in items]
        timing[name] = (time.perf_counter() - started) * 1000 / len(items)
    print(f'store: {store.manifest.embedding_model}, {len(store.chunks)} chunks, threshold {threshold:.3f}; '
          f'{len(items)} items ({sum(i["label"] == "answer" for i in items)} answer); '
          f'quotes on-topic by the reject model: {sum(v >= threshold for v in quote_scores.values())}/{len(quotes)}; '
          f'{os.cpu_count()} cores')
    print(f'{"behaviour":<10} {"subset":<8} {"P":>5} {"R":>5} {"F1":>5} {"n":>4}  silent-kept-silent')
    for name, decided in results.items():
        for subset in ('all', 'user', 'bot'):
            pairs = [(said, item['label']) for (said, _), item in zip(decided, items)
                     if subset == 'all' or item['quote_from'] == subset]
            p, r, f1, n = scores(pairs)
            silent = [said for said, label in pairs if label == 'silent']
            print(f'{name:<10} {subset:<8} {p:5.2f} {r:5.2f} {f1:5.2f} {n:4d}  '
                  f'{sum(not s for s in silent)}/{len(silent)}')
    print(f'decision time per message: today {timing["today"]:.1f} ms, follow-up {timing["follow-up"]:.1f} ms '
          f'(ratio {timing["follow-up"] / timing["today"]:.2f})')
    changed = [(item, said) for (said, _), (before, _), item in zip(results['follow-up'], results['today'], items)
               if said != before]
    print(f'decisions the follow-up stage changed: {len(changed)} '
          f'(right now: {sum(said == (item["label"] == "answer") for item, said in changed)})')
    print('follow-up behaviour, wrong items (label, quote P(on-topic), reply, how the reply was read, quote):')
    for (said, session), item in zip(results['follow-up'], items):
        if said != (item['label'] == 'answer'):
            print(f'  {item["label"]:<6} q={quote_scores[item["quote"]]:.2f} {item["reply"]!r:<28} '
                  f'{session.debug.get("follow_up")} | {item["quote"][:50]!r}')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--followups', type=Path, default=HERE / 'data/followups.json')
    parser.add_argument('--work-root', type=Path, required=True, help='a built store (its work dir)')
    parser.add_argument('--sample', action='store_true',
                        help='the sample store with all-MiniLM-L6-v2, built into --work-root if missing')
    parser.add_argument('--config', type=Path, default=Path('config.ini'), help='its embedding model loads the store')
    args = parser.parse_args()
    config = Config() if args.sample else load_config(args.config)
    if args.sample:
        config.feature_store = FeatureStoreConfig(embedding_model_path='')
    embedder = make_embedder(config)
    if args.sample:
        sample_store(args.work_root, embedder)
    store = FeatureStore.load(args.work_root, embedder)
    asyncio.run(run(store, load_items(args.followups)))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
