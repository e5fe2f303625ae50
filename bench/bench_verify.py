"""What verifying a store's checksums costs: hashing throughput (xxh3-128 against hashlib's blake2b and
sha256 on the same files) and load time with and without verification, on synthetic stores.

    python bench/bench_verify.py --sizes 100000 --work-root /tmp/huixiangdou-scale

Stores are bench_scale.py's (bench/synthetic_corpus.py), reused from --work-root when there; a store
written before checksums existed gets them recorded first. Loads run in a fresh process each, alternating
with and without verification; the page cache is warm (the files were just read), so figures are for a
restart, not a cold disk. The projection to 1M chunks scales the measured bytes by chunk count.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LOADS = 3


def _hashlib_digest(path: Path, name: str) -> str:
    h = hashlib.new(name)
    buf = bytearray(8 << 20)
    view = memoryview(buf)
    with open(path, 'rb', buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def throughput(folder: Path) -> dict:
    """MB/s of each hash over every file of the version folder (best of two passes, warm cache)."""
    from huixiangdou.service.feature_store.checksums import file_digest, version_files

    files = list(version_files(folder).values())
    total = sum(p.stat().st_size for p in files)
    hashes = {'xxh3_128': file_digest,
              'blake2b': lambda p: _hashlib_digest(p, 'blake2b'),
              'sha256': lambda p: _hashlib_digest(p, 'sha256')}
    out = {'bytes': total, 'files': len(files)}
    for name, digest in hashes.items():
        best = float('inf')
        for _ in range(2):
            t0 = time.perf_counter()
            for p in files:
                digest(p)
            best = min(best, time.perf_counter() - t0)
        out[name] = total / best / 1e6
    return out


def measure_load(work_dir: Path, verify: bool) -> dict:
    """Runs in a fresh process: FeatureStore.load with or without verification."""
    from bench import synthetic_corpus
    from huixiangdou.service.feature_store import FeatureStore
    from huixiangdou.service.feature_store.checksums import find_damage
    from huixiangdou.service.feature_store.store_files import current_folder

    t0 = time.perf_counter()
    FeatureStore.load(work_dir, synthetic_corpus.SyntheticEmbedder(), verify=verify)
    load_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    damage = find_damage(current_folder(work_dir))
    return {'load_s': load_s, 'verify_only_s': time.perf_counter() - t1, 'damage': damage}


def prepare(work_dir: Path, n: int) -> Path:
    from bench import synthetic_corpus
    from huixiangdou.service.feature_store.checksums import CHECKSUMS_FILE, record_checksums
    from huixiangdou.service.feature_store.store_files import current_folder

    if not (work_dir / 'CURRENT').is_file():
        work_dir.mkdir(parents=True, exist_ok=True)
        synthetic_corpus.write_store(work_dir, n)
    folder = current_folder(work_dir)
    if not (folder / CHECKSUMS_FILE).is_file():
        print(f'{folder}: written before checksums; recording them now')
        record_checksums(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--sizes', type=int, nargs='+', default=[100_000])
    parser.add_argument('--work-root', type=Path, default=Path('/tmp/huixiangdou-scale'))
    parser.add_argument('--measure', type=Path, help=argparse.SUPPRESS)  # the fresh child process
    parser.add_argument('--no-verify', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure_load(args.measure, verify=not args.no_verify)))
        return
    for n in args.sizes:
        work_dir = args.work_root / f'chunks-{n}'
        folder = prepare(work_dir, n)
        rates = throughput(folder)
        loads: dict[bool, list[float]] = {True: [], False: []}
        verify_s = []
        for _ in range(LOADS):
            for verify in (False, True):
                cmd = [sys.executable, __file__, '--measure', str(work_dir)] + ([] if verify else ['--no-verify'])
                out = subprocess.run(cmd, capture_output=True, text=True, check=True)
                m = json.loads(out.stdout.strip().splitlines()[-1])
                assert m['damage'] is None, m['damage']
                loads[verify].append(m['load_s'])
                verify_s.append(m['verify_only_s'])
        plain, checked = statistics.median(loads[False]), statistics.median(loads[True])
        gb = rates['bytes'] / 1e9
        print(f'\n== {n:,} chunks ({os.cpu_count()} cores): {rates["files"]} files, {gb:.2f} GB ==')
        print('hash throughput, warm page cache: ' + ', '.join(
            f'{name} {rates[name]:,.0f} MB/s' for name in ('xxh3_128', 'blake2b', 'sha256')))
        print(f'load (fresh process, median of {LOADS}): {plain:.2f} s without verification, {checked:.2f} s '
              f'with (+{checked - plain:.2f} s, ratio {checked / plain:.2f}); verification alone '
              f'{statistics.median(verify_s):.2f} s')
        scale = 1_000_000 / n
        added = [f'{name} {gb * scale * 1e3 / rates[name]:.1f} s' for name in ('xxh3_128', 'blake2b', 'sha256')]
        print(f'projected at 1M chunks ({gb * scale:.2f} GB of files): verification adds ' + ', '.join(added)
              + f'; load without it {plain * scale:.1f} s if it scaled linearly (docs/scale.md measured 1.1-1.3 s)')


if __name__ == '__main__':
    main()
