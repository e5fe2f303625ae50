"""The fast loops of issue 23 on the sample knowledge base (`repodir/`, default config), each row with the
figure the issue measured before beside it:

    python bench/bench_loops.py [--work-root DIR] [--rows upload,example,first_run,reject] [--no-cold]

- upload → answerable: the real console (`python -m huixiangdou.web`) on loopback; POST /api/files with a new
  document, POST /api/rebuild, poll until done, then /api/ask a question only that document answers.
- add one example → recalibrated: POST /api/examples, POST /api/calibrate, poll until done.
  Both rows are measured again with nothing to reuse (no calibration cache, embedding cache off): the
  same-run baseline of recomputing everything, as a ratio.
- `main --standalone` first run: a fresh workdir, timed to the first answer line and to exit; says whether
  the LLM server was started.
- the worker's reject stage per message (session.debug['ms']['reject']), p50 / p95, on the sample store;
  with `--reject-store DIR --reject-questions FILE` also on an already built store (reject-dev's 16,047
  chunks: `--reject-questions bench/data/qa_realkb.json`, the questions' `question` fields).
The other reject-dev rows (build time, F1) are measured by bench_reject.py. The sample store is built once in
--work-root and reused.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

os.environ.setdefault('HF_HUB_OFFLINE', '1')
HERE = Path(__file__).resolve().parent.parent
TOKEN = 'bench-loops-admin-token-0123456789'
# The figures of the issue (other work running, 2 cores) and its targets.
BEFORE = {'upload': ('53 s', '<= 10 s'), 'example': ('46.5 s', '<= 5 s'), 'first_run': ('6 m 30 s', '<= 60 s'),
          'reject': ('61 ms (reject-dev)', '<= 20 ms')}
NEW_DOC = ('# Zorblax 网关\n\nZorblax 网关是 huixiangdou 的示例组件。Zorblax 网关默认监听 7411 端口，'
           '在 config.ini 的 [zorblax] 段用 port 修改；改完重启 Zorblax 网关即可生效。\n')
NEW_QUESTION = 'Zorblax 网关默认监听哪个端口？在 config.ini 哪里改？'
NEW_EXAMPLE = '修改 config.ini 里的 chunk_size 之后要不要重建特征库？'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def write_config(path: Path, work: Path, repo: Path, good: Path, bad: Path, port: int = 8080,
                 embedding_cache: str = '') -> Path:
    sections = {
        'feature_store': {'repo_dir': str(repo), 'work_dir': str(work), 'good_questions': str(good),
                          'bad_questions': str(bad), 'embedding_cache': embedding_cache},
        'worker': {'save_path': str(path.parent / 'work.txt')},
        'web': {'host': '127.0.0.1', 'port': port, 'admin_token': TOKEN},
        'llm.server': {'local_llm_bind_port': free_port()},
    }
    sections['llm'] = {'client_url': f'http://127.0.0.1:{sections["llm.server"]["local_llm_bind_port"]}/inference'}
    lines = []
    for name, values in sections.items():
        lines.append(f'[{name}]')
        lines += [f'{k} = {json.dumps(v, ensure_ascii=False)}' for k, v in values.items()]
        lines.append('')
    path.write_text('\n'.join(lines), encoding='utf-8')
    return path


def base_store(root: Path) -> Path:
    """The sample store built with the default config, once; later runs reuse it."""
    base = root / 'base'
    if not (base / 'work' / 'CURRENT').exists():
        base.mkdir(parents=True, exist_ok=True)
        config = write_config(base / 'config.ini', base / 'work', HERE / 'repodir',
                              HERE / 'resource/good_questions.json', HERE / 'resource/bad_questions.json')
        print('building the sample store once (reused by later runs) ...', flush=True)
        subprocess.run([sys.executable, '-m', 'huixiangdou.service.feature_store', '--config', str(config),
                        '--quiet'], check=True, cwd=HERE)
    return base / 'work'


def fresh_copy(root: Path, name: str, base: Path, embedding_cache: str = '', keep_caches: bool = True,
               port: int = 8080) -> Path:
    """A private repodir, examples and workdir (a copy of the built store) for one measurement."""
    folder = root / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shutil.copytree(HERE / 'repodir', folder / 'repo')
    shutil.copytree(base, folder / 'work')
    if not keep_caches:  # and calibration_cache.py's file is only ever read by a build, so it can go now
        for cache in folder.joinpath('work').glob('*cache*'):
            cache.unlink()
    for kind in ('good', 'bad'):
        shutil.copy(HERE / f'resource/{kind}_questions.json', folder / f'{kind}.json')
    return write_config(folder / 'config.ini', folder / 'work', folder / 'repo', folder / 'good.json',
                        folder / 'bad.json', port, embedding_cache)


class Console:
    """`python -m huixiangdou.web` as a subprocess, driven over HTTP as the pages and scripts drive it."""

    def __init__(self, config: Path, port: int):
        self.url = f'http://127.0.0.1:{port}'
        self.log = open(config.parent / 'console.log', 'w')
        self.proc = subprocess.Popen([sys.executable, '-m', 'huixiangdou.web', '--config', str(config)],
                                     cwd=HERE, stdout=self.log, stderr=subprocess.STDOUT)

    def call(self, method: str, path: str, body: dict | None = None, data: bytes | None = None,
             content_type: str = 'application/json') -> bytes:
        if body is not None:
            data = json.dumps(body, ensure_ascii=False).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method, headers={
            'Authorization': f'Bearer {TOKEN}', 'Content-Type': content_type})
        with urllib.request.urlopen(request, timeout=600) as response:
            return response.read()

    def wait_ready(self, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.ask('warm up: how do I rebuild the feature store?')
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f'the console exited; see {self.log.name}')
                time.sleep(0.5)
        raise RuntimeError('the console did not answer in time')

    def wait_build(self) -> dict:
        while True:
            status = json.loads(self.call('GET', '/api/rebuild'))
            if status['state'] != 'running':
                if status['state'] != 'done':
                    raise RuntimeError(f'build {status["state"]}: {status["message"]}')
                return status
            time.sleep(0.1)

    def ask(self, query: str) -> dict:
        raw = self.call('POST', '/api/ask', {'query': query}).decode()
        done = [block for block in raw.split('\n\n') if block.startswith('event: done')]
        return json.loads(done[-1].split('data: ', 1)[1])

    def upload(self, name: str, text: str) -> None:
        boundary = 'benchloopsboundary'
        body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
                f'Content-Type: text/markdown\r\n\r\n{text}\r\n--{boundary}--\r\n').encode()
        self.call('POST', '/api/files', data=body, content_type=f'multipart/form-data; boundary={boundary}')

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def console_rows(root: Path, base: Path, cold: bool) -> dict[str, tuple[float, str]]:
    """upload → answerable and add example → recalibrated; warm (caches as a running console has them)
    and, with `cold`, with nothing to reuse."""
    out = {}
    for label, keep in (('', True), (' cold', False)) if cold else (('', True),):
        port = free_port()
        config = fresh_copy(root, f'console{label.strip()}', base, '' if keep else 'off', keep, port)
        console = Console(config, port)
        try:
            console.wait_ready()
            t0 = time.perf_counter()
            console.upload('zorblax.md', NEW_DOC)
            console.call('POST', '/api/rebuild', {})
            report = console.wait_build()['report']
            built = time.perf_counter() - t0
            done = console.ask(NEW_QUESTION)
            upload = time.perf_counter() - t0
            cited = any('zorblax' in r for r in done['references'])
            out['upload' + label] = (upload, f'build {report["seconds"]:.1f} s + load and ask '
                                             f'{upload - built:.1f} s; answered {done["code"]}, cites the new file: {cited}')
            if not keep:  # the upload's calibration filled it: empty it again
                for cache in config.parent.joinpath('work').glob('calibration_cache*'):
                    cache.unlink()
            t0 = time.perf_counter()
            console.call('POST', '/api/examples', {'kind': 'good', 'text': NEW_EXAMPLE})
            console.call('POST', '/api/calibrate', {})
            report = console.wait_build()['report']
            example = time.perf_counter() - t0
            out['example' + label] = (example, f'build {report["seconds"]:.1f} s + load {example - report["seconds"]:.1f} s')
        finally:
            console.stop()
    return out


def first_run(root: Path) -> tuple[float, str]:
    """`python -m huixiangdou.main --standalone` on a fresh workdir: to the first answer, and to exit."""
    folder = root / 'first_run'
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / 'resource').mkdir()  # the sample queries are read next to the config, as in a fresh clone
    shutil.copy(HERE / 'resource/sample_queries.json', folder / 'resource/sample_queries.json')
    config = write_config(folder / 'config.ini', folder / 'work', HERE / 'repodir',
                          HERE / 'resource/good_questions.json', HERE / 'resource/bad_questions.json')
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, '-m', 'huixiangdou.main', '--standalone', '--config', str(config)],
                            cwd=HERE, stdout=subprocess.PIPE, stderr=open(folder / 'stderr.log', 'w'), text=True)
    first = None
    for line in proc.stdout:
        if first is None and line.startswith('ErrorCode.'):
            first = time.perf_counter() - t0
    proc.wait()
    total = time.perf_counter() - t0
    err = (folder / 'stderr.log').read_text(encoding='utf-8', errors='replace')
    server = 'LLM server started' if 'starting the LLM server:' in err else 'no LLM server started'
    report = json.loads((folder / 'work' / 'report.json').read_text()) if (folder / 'work' / 'report.json').exists() else {}
    return first or float('nan'), (f'exit {total:.1f} s (code {proc.returncode}); {server}; store {report.get("seconds", 0):.0f} s '
                                   f'(embedding {report.get("embed_seconds", 0):.0f} s, calibration '
                                   f'{report.get("calibrate_seconds", 0):.1f} s)')


def reject_row(base: Path, n: int, questions: Path | None = None) -> tuple[float, str]:
    """The worker's reject stage per message, as debug['ms'] times it: on the sample store with its held-out
    messages, or on `base` (a built workdir) with the questions of `questions` (a QA file)."""
    from loguru import logger

    from huixiangdou.config import load_config
    from huixiangdou.service.worker.pipeline import Worker
    from huixiangdou.service.worker.session import Session

    config = load_config(write_config(Path(tempfile.mkdtemp()) / 'reject.ini', base, HERE / 'repodir',
                                      HERE / 'resource/good_questions.json', HERE / 'resource/bad_questions.json'))
    config.worker.save_path = ''
    logger.remove()  # one log line per message would be timed too
    logger.add(sys.stderr, level='WARNING')
    if questions:
        messages = [q['question'] for q in json.loads(questions.read_text(encoding='utf-8'))][:n]
    else:
        messages = (json.loads((HERE / 'resource/heldout_good.json').read_text(encoding='utf-8'))
                    + json.loads((HERE / 'resource/heldout_bad.json').read_text(encoding='utf-8')))[:n]

    async def run() -> list[float]:
        worker = Worker.from_config(config)
        try:
            await worker.run(Session(query='warm up: how do I rebuild the feature store?'))
            times = []
            for text in messages:
                session = await worker.run(Session(query=text))
                if 'reject' in session.debug.get('ms', {}):
                    times.append(session.debug['ms']['reject'])
            return times
        finally:
            await worker.close()

    times = sorted(asyncio.run(run()))
    return statistics.median(times), f'p95 {times[int(len(times) * 0.95)]:.1f} ms over {len(times)} messages'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--work-root', type=Path, default=Path('/tmp/huixiangdou-bench-loops'))
    parser.add_argument('--rows', default='upload,example,first_run,reject')
    parser.add_argument('--no-cold', action='store_true', help='skip the same-run baseline with nothing reused')
    parser.add_argument('--messages', type=int, default=100, help='messages timed through the reject stage')
    parser.add_argument('--reject-store', type=Path, help='a built workdir (e.g. reject-dev\'s) to time the reject '
                        'stage on too')
    parser.add_argument('--reject-questions', type=Path, default=HERE / 'bench/data/qa_realkb.json',
                        help='QA file whose questions are timed on --reject-store')
    args = parser.parse_args()
    rows = set(args.rows.split(','))
    args.work_root.mkdir(parents=True, exist_ok=True)
    print(f'{os.cpu_count()} cores, load average {" / ".join(f"{x:.1f}" for x in os.getloadavg())} at start')
    results: dict[str, tuple[float, str]] = {}
    if 'first_run' in rows:  # first: it builds from nothing, nothing of the others helps it
        results['first_run'] = first_run(args.work_root)
    base = base_store(args.work_root) if rows & {'upload', 'example', 'reject'} else None
    if rows & {'upload', 'example'}:
        results.update(console_rows(args.work_root, base, cold=not args.no_cold))
    if 'reject' in rows:
        p50, note = reject_row(base, args.messages)
        results['reject'] = (p50 / 1000, note)
        if args.reject_store:
            p50, note = reject_row(args.reject_store, args.messages, args.reject_questions)
            results['reject store'] = (p50 / 1000, f'{args.reject_store}: {note}')
    names = {'upload': 'upload one file in the console -> answerable', 'example': 'add one example -> recalibrated',
             'first_run': 'main --standalone first run -> first answer', 'reject': 'worker reject stage p50 (sample)'}
    print(f'\n{"row":48s} {"now":>10s}  {"before (issue)":>18s}  {"target":>9s}  notes')
    for key, (seconds, note) in results.items():
        name = key.split(' ')[0]
        label = names[name] + (' [nothing reused]' if key.endswith('cold') else '')
        label = label.replace('(sample)', '(--reject-store)') if key == 'reject store' else label
        now = f'{seconds * 1000:.1f} ms' if name == 'reject' else f'{seconds:.1f} s'
        before, target = BEFORE[name]
        print(f'{label:48s} {now:>10s}  {before:>18s}  {target:>9s}  {note}')
    for name in ('upload', 'example'):
        if name in results and f'{name} cold' in results:
            print(f'{names[name]}: reusing / recomputing everything = {results[name][0]:.1f} s / '
                  f'{results[name + " cold"][0]:.1f} s = {results[name][0] / results[name + " cold"][0]:.2f}')
    print(f'load average {" / ".join(f"{x:.1f}" for x in os.getloadavg())} at the end')
    return 0


if __name__ == '__main__':
    sys.exit(main())
