"""What the parse limits cost: parsing a folder in bounded worker processes vs in the build's own process,
and split_html's time against nesting depth (it must grow linearly).

Baseline, measured in the same run on the same files: parse_file called one file after another in this
process (what the builder did before parse workers). Prints seconds, files/s and the ratio pool / baseline
for 1 and 2 workers, then seconds per depth for nested HTML.

    python bench/bench_parse_limits.py [--repo repodir] [--kb-slice 300]   # slice: first N files of
                                                                           # /work/shared/data/reject-dev/kb.tar.gz
"""
from __future__ import annotations

import argparse
import os
import tarfile
import tempfile
import time
from pathlib import Path

from huixiangdou.primitive.documents import ParseError, parse_file, walk_repo
from huixiangdou.primitive.documents.parse_pool import ParseLimits, ParsePool
from huixiangdou.primitive.documents.webpage import split_html

KB = Path('/work/shared/data/reject-dev/kb.tar.gz')


def in_process(files: list[tuple[Path, str]]) -> tuple[float, int]:
    start, parsed = time.perf_counter(), 0
    for path, source in files:
        try:
            parse_file(path, source, max_expanded_mb=64)
            parsed += 1
        except ParseError:
            pass
    return time.perf_counter() - start, parsed


def pooled(files: list[tuple[Path, str]], workers: int) -> tuple[float, int]:
    start = time.perf_counter()
    with ParsePool(ParseLimits(workers=workers)) as pool:
        parsed = sum(outcome.document is not None for outcome in pool.parse(files))
    return time.perf_counter() - start, parsed


def compare(name: str, folder: Path) -> None:
    files = [(entry.path, entry.source) for entry in walk_repo(folder, 50 * 1024 * 1024).files]
    base, n = in_process(files)
    print(f'{name}: {len(files)} files, {n} parsed')
    print(f'  in process (baseline)   {base:7.2f} s  {len(files) / base:7.1f} files/s')
    for workers in (1, 2):
        seconds, m = pooled(files, workers)
        print(f'  pool, {workers} worker{"s" if workers > 1 else " "}        {seconds:7.2f} s  '
              f'{len(files) / seconds:7.1f} files/s  ratio {seconds / base:.2f}  ({m} parsed)')


def kb_slice(count: int, into: Path) -> Path:
    """The first `count` documents of the real knowledge base, unpacked under `into` (never the repository)."""
    with tarfile.open(KB) as archive:
        members = [m for m in archive.getmembers() if m.isfile()][:count]
        archive.extractall(into, members=members, filter='data')
    return into


def html_depths() -> None:
    print('split_html, nested <div><p> pages:')
    for depth in (1_000, 5_000, 20_000, 50_000):
        html = '<html><body>' + '<div><p>' * depth + 'deep text' + '</p></div>' * depth + '</body></html>'
        start = time.perf_counter()
        split_html(html)
        seconds = time.perf_counter() - start
        print(f'  depth {depth:6d}: {seconds:6.2f} s  ({seconds / depth * 1e6:5.1f} µs per level)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repo', default='repodir')
    parser.add_argument('--kb-slice', type=int, default=300, help='files of the real knowledge base; 0: skip')
    args = parser.parse_args()
    print(f'{os.cpu_count()} cores')
    compare(args.repo, Path(args.repo))
    if args.kb_slice and KB.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            compare(f'reject-dev kb, first {args.kb_slice} files', kb_slice(args.kb_slice, Path(tmp)))
    html_depths()


if __name__ == '__main__':
    main()
