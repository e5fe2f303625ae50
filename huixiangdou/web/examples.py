"""The Examples and calibration page's API: the on-topic ("good") and chatter ("bad") example lists, their
import, recalibration, and the picture of the last calibration (GET /api/calibration).

The lists are the files named by good_questions / bad_questions of the knowledge base `?kb=` names ([feature_store]
for "default"), rewritten atomically as JSON lists. Recalibrating is the build job's incremental build (build_job.py).
"""
from __future__ import annotations

import json
from pathlib import Path

from aiohttp import BodyPartReader, web

from huixiangdou.primitive.json_input import InvalidJson, parse_json
from huixiangdou.primitive.request_body import reading_multipart
from huixiangdou.web.api_error import ApiError, read_json, text_field
from huixiangdou.web.console_file import write_atomically
from huixiangdou.web.console import KnowledgeBaseState
from huixiangdou.web.scope import kb_ready, kb_scope

KINDS = ('good', 'bad')
MAX_EXAMPLE_CHARS = 2000
MAX_IMPORT_BYTES = 5 * 1024 * 1024


def _same(text: str) -> str:
    """Two examples are the same when they differ only in spacing."""
    return ' '.join(text.split())


class ExampleFiles:
    """The two example lists on disk. Ids are positions in the list.

    Usage:
        files = ExampleFiles(good_path, bad_path)
        new_id, duplicate = files.add('good', '怎么重建索引？')
    """

    def __init__(self, good: Path, bad: Path):
        self.paths = {'good': good, 'bad': bad}

    def read(self, kind: str) -> list[str]:
        path = self.paths[kind]
        if not path.is_file():
            return []
        text = path.read_text(encoding='utf-8-sig')
        return parse_questions(text, str(path))

    def write(self, kind: str, items: list[str]) -> None:
        write_atomically(self.paths[kind], json.dumps(items, ensure_ascii=False, indent=1) + '\n')

    def add(self, kind: str, text: str) -> tuple[int, bool]:
        """Append `text` unless it is already there; (its id, whether it was a duplicate)."""
        items = self.read(kind)
        known = [_same(t) for t in items]
        if _same(text) in known:
            return known.index(_same(text)), True
        items.append(text)
        self.write(kind, items)
        return len(items) - 1, False


def parse_questions(text: str, where: str) -> list[str]:
    """A JSON list of strings, or one question per line (as the builder reads them)."""
    stripped = text.strip()
    if stripped.startswith('['):
        try:
            data = parse_json(stripped)  # bounded nesting: a file of `[` × 100,000 is a 400
        except InvalidJson as exc:
            raise ApiError(400, 'bad_examples', f'{where} looks like JSON but does not parse: {exc}') from None
        if not isinstance(data, list):
            raise ApiError(400, 'bad_examples', f'{where} must be a JSON list of strings')
        return [q.strip() for q in data if isinstance(q, str) and q.strip()]
    return [line.strip() for line in text.splitlines() if line.strip()]


def example_files(console: KnowledgeBaseState) -> ExampleFiles:
    fs = console.config.feature_store
    return ExampleFiles(console.config.path(fs.good_questions), console.config.path(fs.bad_questions))


def _kind(value) -> str:
    if not isinstance(value, str) or value not in KINDS:
        raise ApiError(400, 'bad_kind', 'kind must be "good" (on-topic) or "bad" (chatter)')
    return value


def _position(items: list[str], raw: str) -> int:
    try:
        index = int(raw)
    except ValueError:
        index = -1
    if not 0 <= index < len(items):
        raise ApiError(404, 'not_found', f'no example {raw}: reload the list, it may have changed')
    return index


async def get_examples(request: web.Request) -> web.Response:
    files = example_files(kb_scope(request))
    body = {kind: [{'id': i, 'text': t} for i, t in enumerate(files.read(kind))] for kind in KINDS}
    return web.json_response(body | {'good_file': str(files.paths['good']), 'bad_file': str(files.paths['bad'])})


async def add_example(request: web.Request) -> web.Response:
    body = await read_json(request)
    kind = _kind(body.get('kind'))
    text = text_field(body, 'text', max_chars=MAX_EXAMPLE_CHARS)
    new_id, duplicate = example_files(kb_scope(request)).add(kind, text)
    if duplicate:
        raise ApiError(409, 'duplicate', f'this example is already in the list (id {new_id})')
    return web.json_response({'id': new_id}, status=201)


async def edit_example(request: web.Request) -> web.Response:
    kind = _kind(request.match_info['kind'])
    text = text_field(await read_json(request), 'text', max_chars=MAX_EXAMPLE_CHARS)
    files = example_files(kb_scope(request))
    items = files.read(kind)
    index = _position(items, request.match_info['id'])
    others = [_same(t) for i, t in enumerate(items) if i != index]
    if _same(text) in others:
        raise ApiError(409, 'duplicate', 'another example already says this')
    items[index] = text
    files.write(kind, items)
    return web.json_response({'id': index, 'text': text})


async def delete_example(request: web.Request) -> web.Response:
    kind = _kind(request.match_info['kind'])
    files = example_files(kb_scope(request))
    items = files.read(kind)
    index = _position(items, request.match_info['id'])
    removed = items.pop(index)
    files.write(kind, items)
    return web.json_response({'deleted': index, 'text': removed})


async def import_examples(request: web.Request) -> web.Response:
    """Part `kind` (good|bad), then part `file`: a JSON list of strings or one question per line."""
    files = example_files(kb_scope(request))  # an unknown or forbidden knowledge base before the upload is read
    if not request.content_type.startswith('multipart/'):
        raise ApiError(415, 'unsupported_type', 'send multipart/form-data with parts "kind" and "file"')
    kind, text = None, None
    async with reading_multipart(request, MAX_IMPORT_BYTES):  # bad boundary or part header: 400; too slow: 408
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise ApiError(400, 'bad_multipart', 'nested multipart bodies are not accepted')
            if part.name == 'kind':
                kind = _kind((await part.text()).strip())
            elif part.name == 'file':
                data = bytearray()
                while chunk := await part.read_chunk():
                    data += chunk
                    if len(data) > MAX_IMPORT_BYTES:
                        raise ApiError(413, 'too_large',
                                       f'an example file may hold {MAX_IMPORT_BYTES // 1024 // 1024} MB')
                try:
                    text = bytes(data).decode('utf-8-sig')
                except UnicodeDecodeError:
                    raise ApiError(400, 'bad_examples', 'the example file must be UTF-8 text') from None
            else:
                await part.release()
    if kind is None or text is None:
        raise ApiError(400, 'missing_field', 'send both parts: "kind" (good or bad) and "file"')
    questions = [q for q in parse_questions(text, 'the file') if len(q) <= MAX_EXAMPLE_CHARS]
    items = files.read(kind)
    known = {_same(t) for t in items}
    added = duplicates = 0
    for question in questions:
        if _same(question) in known:
            duplicates += 1
            continue
        known.add(_same(question))
        items.append(question)
        added += 1
    if added:
        files.write(kind, items)
    return web.json_response({'added': added, 'duplicates': duplicates})


async def calibrate(request: web.Request) -> web.Response:
    return web.json_response(kb_scope(request).build.start(full=False, purpose='calibration'), status=202)


async def get_calibration(request: web.Request) -> web.Response:
    from huixiangdou.service.worker.stage import run_cpu

    console = await kb_ready(request)
    files = example_files(console)
    good, bad = files.read('good'), files.read('bad')
    body = {'threshold': None, 'target': console.config.feature_store.reject_target, 'metrics': None,
            'good_scores': [], 'bad_scores': [], 'calibrated_at': None,
            'examples': {'good': len(good), 'bad': len(bad)}, 'rule': False}
    worker = console.slot.worker
    if worker is None:
        return web.json_response(body)
    async with console.slot.use() as worker:
        store = worker.store
        calibration = store.manifest.calibration or {}
        checked = calibration.get('cross_validated') or {}
        body.update(threshold=store.manifest.reject_threshold, calibrated_at=calibration.get('calibrated_at'),
                    target=calibration.get('target', body['target']), rule=calibration.get('model') == 'rule')
        if checked:
            body['metrics'] = {k: checked.get(k) for k in ('precision', 'recall', 'f1')}
        scores = calibration.get('scores')
        if isinstance(scores, dict) and (scores.get('good') or scores.get('bad')):
            body.update(good_scores=scores.get('good', []), bad_scores=scores.get('bad', []))
        elif store.reject_model is not None and (good or bad):
            # An older calibration kept no scores: the current model's (in-sample, so flattering) scores.
            scored = await run_cpu(store.reject_scores, good + bad)
            body.update(good_scores=[round(s.score, 4) for s in scored[:len(good)]],
                        bad_scores=[round(s.score, 4) for s in scored[len(good):]])
    return web.json_response(body)


def add_routes(app: web.Application) -> None:
    app.router.add_get('/api/examples', get_examples)
    app.router.add_post('/api/examples', add_example)
    app.router.add_post('/api/examples/import', import_examples)
    app.router.add_put('/api/examples/{kind}/{id}', edit_example)
    app.router.add_delete('/api/examples/{kind}/{id}', delete_example)
    app.router.add_post('/api/calibrate', calibrate)
    app.router.add_get('/api/calibration', get_calibration)
