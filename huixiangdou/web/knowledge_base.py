"""The Knowledge base page's API: every file in repo_dir with its status, the store's facts, the chunks
the store holds for a file, and the rebuild job (GET /api/kb, GET /api/chunks, GET/POST /api/rebuild,
POST /api/rebuild/cancel), each for the knowledge base `?kb=` names (scope.py).

Uploads and deletes are in repo_files.py; the build itself in build_job.py.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from pathlib import Path

from aiohttp import web

from huixiangdou.primitive.documents.walker import RepoDirError, walk_repo
from huixiangdou.web import repo_files
from huixiangdou.web.api_error import ApiError, read_json
from huixiangdou.web.console import KnowledgeBaseState as Console
from huixiangdou.web.scope import kb_ready, kb_scope

# Content hashes by (path, size, mtime): listing a large repo_dir must not re-read every file each poll.
_HASHES: dict[tuple[str, int, int], str] = {}


def _sha256(path: Path, st: os.stat_result) -> str:
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(path, 'rb') as f:
            for block in iter(lambda: f.read(1 << 20), b''):
                h.update(block)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


def _manifest(console: Console):
    from huixiangdou.service.feature_store.store_files import StoreError, read_manifest

    try:
        return read_manifest(console.work_dir)
    except StoreError:
        return None


def _last_report(work_dir: Path) -> tuple[dict, float]:
    """The last build's report (for the skipped files and their reasons) and when it was written."""
    path = work_dir / 'report.json'
    try:
        return json.loads(path.read_text(encoding='utf-8')), path.stat().st_mtime
    except (OSError, ValueError):
        return {}, 0.0


def _modified(st: os.stat_result) -> str:
    return time.strftime('%Y-%m-%dT%H:%M:%S%z', time.localtime(st.st_mtime))


def store_facts(console: Console, manifest) -> dict | None:
    if manifest is None:
        return None
    calibration = manifest.calibration or {}
    return {'embedding_model': manifest.embedding_model,
            'chunks': sum(r.count for r in manifest.files.values()), 'files': len(manifest.files),
            'built_at': manifest.built_at, 'build_seconds': manifest.build_seconds,
            'calibrated_at': calibration.get('calibrated_at'), 'threshold': manifest.reject_threshold,
            'repo_dir': str(console.repo_dir), 'work_dir': str(console.work_dir)}


def list_files(console: Console) -> tuple[dict | None, list[dict]]:
    """Each file of repo_dir: indexed (in the store, unchanged), skipped (with the reason), or pending."""
    manifest = _manifest(console)
    report, report_time = _last_report(console.work_dir)
    skipped_at_build = {s.get('source'): s.get('reason', '') for s in report.get('skipped', [])
                        if isinstance(s, dict)}
    limit = int(console.config.feature_store.max_file_size_mb * 1024 * 1024)
    try:
        walk = walk_repo(console.repo_dir, limit)
    except RepoDirError:
        return store_facts(console, manifest), []
    stored = manifest.files if manifest is not None else {}
    rows = []
    for entry in walk.files:
        try:
            st = entry.path.stat()
            digest = _sha256(entry.path, st)
        except OSError as exc:
            rows.append({'path': entry.source, 'size': entry.size, 'modified': '', 'status': 'skipped',
                         'chunks': 0, 'reason': f'cannot read: {exc.strerror}'})
            continue
        row = {'path': entry.source, 'size': st.st_size, 'modified': _modified(st), 'status': 'pending',
               'chunks': 0, 'reason': None}
        record = stored.get(entry.source)
        if record is not None and record.sha256 == digest:
            row.update(status='indexed', chunks=record.count)
        elif entry.source in skipped_at_build and st.st_mtime <= report_time:
            row.update(status='skipped', reason=skipped_at_build[entry.source])
        rows.append(row)
    for item in walk.skipped:  # not a document at all: unsupported type, too big, hidden ...
        path = console.repo_dir / item.source
        try:
            st = path.stat()
            size, modified = st.st_size, _modified(st)
        except OSError:
            size, modified = 0, ''
        rows.append({'path': item.source, 'size': size, 'modified': modified, 'status': 'skipped',
                     'chunks': 0, 'reason': item.reason})
    rows.sort(key=lambda r: r['path'])
    return store_facts(console, manifest), rows


async def get_kb(request: web.Request) -> web.Response:
    console = kb_scope(request)
    store, files = await asyncio.to_thread(list_files, console)
    return web.json_response({'knowledge_base': console.name, 'store': store, 'files': files,
                              'build': console.build.snapshot()})


async def get_chunks(request: web.Request) -> web.Response:
    """What the store answering now holds for one file, in order."""
    console = await kb_ready(request)
    source = request.query.get('path', '')
    if not source:
        raise ApiError(400, 'missing_field', 'give the file as ?path=<path relative to repo_dir>')
    async with console.slot.use() as worker:
        store = worker.store
        record = store.manifest.files.get(source)
        if record is None:
            raise ApiError(404, 'not_found', f'{source} is not in the feature store (pending or skipped: '
                                             'rebuild to index it)')
        chunks = store.chunks[record.first:record.first + record.count]
    return web.json_response({'path': source, 'chunks': [{'n': i + 1, 'text': c.text, 'anchor': c.anchor}
                                                         for i, c in enumerate(chunks)]})


async def start_rebuild(request: web.Request) -> web.Response:
    body = await read_json(request) if request.can_read_body else {}
    full = body.get('full', False)
    if not isinstance(full, bool):
        raise ApiError(400, 'bad_field', '"full" must be true or false')
    return web.json_response(kb_scope(request).build.start(full=full, purpose='full rebuild' if full
                                                           else 'rebuild'), status=202)


async def cancel_rebuild(request: web.Request) -> web.Response:
    """Stop the running build; GET /api/rebuild then shows it "cancelled" (409 when none runs)."""
    return web.json_response(kb_scope(request).build.cancel(), status=202)


async def get_rebuild(request: web.Request) -> web.Response:
    return web.json_response(kb_scope(request).build.snapshot())


def add_routes(app: web.Application) -> None:
    app.router.add_get('/api/kb', get_kb)
    app.router.add_get('/api/chunks', get_chunks)
    app.router.add_post('/api/rebuild', start_rebuild)
    app.router.add_get('/api/rebuild', get_rebuild)
    app.router.add_post('/api/rebuild/cancel', cancel_rebuild)
    repo_files.add_routes(app)
