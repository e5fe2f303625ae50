"""Feature store benchmark: parse throughput, embedding rate, build overhead over the model alone,
incremental rebuild cost, reject-score latency, peak RSS.

    python bench/bench_feature_store.py [--mb 5] [--queries 200]

Targets (issue): build / model-alone <= 1.2; incremental / full <= 5%; reject p50 <= 20 ms at 10k chunks.
"""
from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault('HF_HUB_OFFLINE', '1')

from loguru import logger  # noqa: E402

from huixiangdou.config import FeatureStoreConfig  # noqa: E402
from huixiangdou.primitive.documents import parse_file, walk_repo  # noqa: E402
from huixiangdou.primitive.embedder import LocalEmbedder  # noqa: E402
from huixiangdou.primitive.splitter import embedding_text  # noqa: E402
from huixiangdou.service.feature_store.builder import FeatureStoreBuilder  # noqa: E402
from huixiangdou.service.feature_store.store import FeatureStore  # noqa: E402

ZH_WORDS = ('茴香豆 群聊 助手 文档 索引 向量 检索 配置 安装 端口 模型 飞书 微信 机器人 回调 加密 密钥 阈值 拒答 '
            '问题 答案 引用 服务 部署 日志 重建 增量 分块 句子 中文 英文 代码 表格 幻灯片 网页 错误 超时 重试').split()
EN_WORDS = ('assistant group chat document index vector retrieval config install port model lark wechat '
            'bot callback encrypt key threshold reject question answer citation server deploy log rebuild '
            'incremental chunk sentence chinese english code table slide page error timeout retry').split()


def make_corpus(root: Path, megabytes: float, seed: int = 7) -> int:
    """Markdown files mixing Chinese and English paragraphs under headings; returns bytes written."""
    rng = random.Random(seed)
    total, i = 0, 0
    while total < megabytes * 1024 * 1024:
        parts = [f'# Topic {i}\n']
        for h in range(6):
            parts.append(f'\n## Section {i}.{h} {rng.choice(EN_WORDS)}\n')
            for _ in range(4):
                if rng.random() < 0.5:
                    sent = ['，'.join(''.join(rng.choices(ZH_WORDS, k=4)) for _ in range(3)) + '。'
                            for _ in range(6)]
                else:
                    sent = [' '.join(rng.choices(EN_WORDS, k=14)).capitalize() + '.' for _ in range(5)]
                parts.append('\n' + ''.join(sent) + '\n')
        text = ''.join(parts)
        (root / f'doc{i:04d}.md').write_text(text, encoding='utf-8')
        total += len(text.encode('utf-8'))
        i += 1
    return total


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--mb', type=float, default=5.0, help='corpus size in MB (default 5)')
    parser.add_argument('--queries', type=int, default=200, help='queries for the latency figure')
    parser.add_argument('--keep', help='copy the built store here (e.g. for bench_worker.py --work-dir)')
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level='WARNING')
    tmp = Path(tempfile.mkdtemp(prefix='hxd-bench-'))
    repo, work = tmp / 'repo', tmp / 'work'
    repo.mkdir()
    try:
        size = make_corpus(repo, args.mb)
        print(f'machine: {os.cpu_count()} cores; corpus: {size / 1e6:.2f} MB in {len(list(repo.iterdir()))} files')

        t = time.perf_counter()
        walk = walk_repo(repo, 50 * 1024 * 1024)
        for entry in walk.files:
            parse_file(entry.path, entry.source)
        parse_s = time.perf_counter() - t
        print(f'parse throughput: {size / 1e6 / parse_s:.1f} MB/s ({parse_s:.2f}s)')

        embedder = LocalEmbedder('')
        embedder.warm_up()
        builder = FeatureStoreBuilder(FeatureStoreConfig(), embedder, progress=False)
        t = time.perf_counter()
        report = builder.build(repo, work)
        full_s = time.perf_counter() - t
        print(f'full build: {full_s:.1f}s for {report.chunks} chunks '
              f'({report.chunks / full_s:.1f} chunks/s end to end, {report.chunks / report.embed_seconds:.1f} '
              f'chunks/s in the embedding step)')

        store = FeatureStore.load(work, embedder)
        texts = [embedding_text(c) for c in store.chunks]
        t = time.perf_counter()
        embedder.encode(texts)
        model_s = time.perf_counter() - t
        print(f'model alone encoding the same chunks: {model_s:.1f}s ({len(texts) / model_s:.1f} chunks/s)')
        print(f'ratio full build / model alone: {full_s / model_s:.3f} (target <= 1.2)')

        victim = repo / 'doc0003.md'
        victim.write_text(victim.read_text(encoding='utf-8') + '\n\n## Changed\n\n新增一段内容。\n',
                          encoding='utf-8')
        t = time.perf_counter()
        inc = builder.build(repo, work)
        inc_s = time.perf_counter() - t
        print(f'incremental rebuild after changing one file: {inc_s:.2f}s, {inc.new_chunks} chunks embedded; '
              f'ratio to full build: {inc_s / full_s:.2%} (target <= 5%)')

        store = FeatureStore.load(work, embedder)
        rng = random.Random(1)
        queries = [''.join(rng.choices(ZH_WORDS, k=5)) + '？' if i % 2 else
                   ' '.join(rng.choices(EN_WORDS, k=8)) + '?' for i in range(args.queries)]
        store.reject_score('warm up')
        latencies = []
        for q in queries:
            t = time.perf_counter()
            store.reject_score(q)
            latencies.append((time.perf_counter() - t) * 1000)
        print(f'reject score at {len(store.chunks)} chunks: p50 {percentile(latencies, 0.5):.1f} ms, '
              f'p95 {percentile(latencies, 0.95):.1f} ms, mean {statistics.mean(latencies):.1f} ms '
              f'(target p50 <= 20 ms)')
        print(f'peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB')
        if args.keep:
            shutil.copytree(work, args.keep, dirs_exist_ok=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
