"""Group messages: what the frontends received and what the bot did, from the worker's saved outcomes
([worker] save_path, JSON lines), and labels ("should have answered" / "should have ignored") that add a
message to the examples for the next calibration. Labels live in work_dir/console_labels.json.

Each knowledge base (`?kb=`) sees only its own messages: those its worker answered (the record names it), or,
in records older than that field, those of the groups routed to it.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from huixiangdou.config import Config
from huixiangdou.web.api_error import ApiError, read_json
from huixiangdou.web.console import KnowledgeBaseState, console_of
from huixiangdou.web.examples import example_files
from huixiangdou.web.scope import kb_scope
from huixiangdou.web.outcome import outcome_of, reason_of

LABELS = {'should_answer': 'good', 'should_ignore': 'bad'}
LABELS_FILE = 'console_labels.json'
MAX_LIMIT = 500


@dataclass
class SavedMessage:
    id: str
    record: dict

    def to_json(self, label: str | None) -> dict:
        r = self.record
        code = str(r.get('code', ''))
        references = r.get('references') if isinstance(r.get('references'), list) else []
        return {'id': self.id, 'time': str(r.get('time', '')), 'group': str(r.get('group', '')),
                'query': str(r.get('query', '')), 'code': code, 'outcome': outcome_of(code),
                'reason': reason_of(code, r.get('reject')), 'reply': str(r.get('reply', '')),
                'references': [str(x) for x in references], 'label': label}


def knowledge_base_of(record: dict, config: Config) -> str:
    """The knowledge base a saved outcome belongs to: the one that answered it, else its group's route."""
    name = record.get('knowledge_base')
    if isinstance(name, str) and name:
        return name
    return config.knowledge_base_for(str(record.get('group', '')))


def read_saved(path: Path | None) -> list[SavedMessage]:
    """Every readable outcome, oldest first; an id is the hash of its line (a repeat gets a suffix)."""
    if path is None or not path.is_file():
        return []
    messages, seen = [], {}
    with open(path, 'rb') as f:
        for raw in f:
            line = raw.strip()
            if not line:
                continue
            try:
                record = json.loads(line.decode('utf-8', errors='replace'))
            except ValueError:
                continue  # a line cut by a crash mid-write: skipped, the rest still shows
            if not isinstance(record, dict):
                continue
            digest = hashlib.sha256(line).hexdigest()[:16]
            seen[digest] = seen.get(digest, 0) + 1
            messages.append(SavedMessage(digest if seen[digest] == 1 else f'{digest}-{seen[digest]}', record))
    return messages


class Labels:
    """Message id → label, one small JSON file rewritten atomically."""

    def __init__(self, path: Path):
        self.path = path

    def read(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding='utf-8'))
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in data.items() if v in LABELS} if isinstance(data, dict) else {}

    def set(self, message_id: str, label: str) -> None:
        labels = self.read() | {message_id: label}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_name(f'.{self.path.name}.{uuid.uuid4().hex}.tmp')
        temp.write_text(json.dumps(labels, ensure_ascii=False, indent=1), encoding='utf-8')
        os.replace(temp, self.path)


def saved_of(state: KnowledgeBaseState, config: Config) -> list[SavedMessage]:
    """The saved outcomes of one knowledge base, oldest first. Reads the file: call it in a thread."""
    return [m for m in read_saved(state.save_path) if knowledge_base_of(m.record, config) == state.name]


def labels_of(console: KnowledgeBaseState) -> Labels:
    return Labels(console.work_dir / LABELS_FILE)


def _int(query, key: str, default: int, low: int, high: int) -> int:
    try:
        value = int(query.get(key, default))
    except ValueError:
        raise ApiError(400, 'bad_field', f'{key} must be an integer') from None
    if not low <= value <= high:
        raise ApiError(400, 'bad_field', f'{key} must be in {low}..{high}')
    return value


async def list_messages(request: web.Request) -> web.Response:
    console = kb_scope(request)
    group = request.query.get('group', '')
    outcome = request.query.get('outcome', '')
    if outcome not in ('', 'answered', 'ignored', 'failed'):
        raise ApiError(400, 'bad_field', 'outcome must be answered, ignored or failed')
    limit = _int(request.query, 'limit', 50, 1, MAX_LIMIT)
    offset = _int(request.query, 'offset', 0, 0, 10 ** 9)
    saved = await asyncio.to_thread(saved_of, console, console_of(request).config)
    labels = labels_of(console).read()
    rows = [m.to_json(labels.get(m.id)) for m in reversed(saved)]
    groups = sorted({r['group'] for r in rows})
    rows = [r for r in rows if (not group or r['group'] == group) and (not outcome or r['outcome'] == outcome)]
    return web.json_response({'total': len(rows), 'groups': groups, 'messages': rows[offset:offset + limit]})


async def label_message(request: web.Request) -> web.Response:
    """Add the message's question to the examples the label calls for; the latest label wins."""
    console = kb_scope(request)
    label = (await read_json(request)).get('label')
    if not isinstance(label, str) or label not in LABELS:
        raise ApiError(400, 'bad_label', 'label must be "should_answer" or "should_ignore"')
    message_id = request.match_info['id']
    saved = await asyncio.to_thread(saved_of, console, console_of(request).config)
    found = next((m for m in saved if m.id == message_id), None)
    if found is None:
        raise ApiError(404, 'not_found', f'no saved message {message_id}: reload the list')
    query = str(found.record.get('query', '')).strip()
    if not query:
        raise ApiError(400, 'empty_message', 'this message has no text to learn from')
    files = example_files(console)
    kind = LABELS[label]
    other = 'bad' if kind == 'good' else 'good'
    # A message relabelled the other way must not stay in both lists.
    previous = labels_of(console).read().get(message_id)
    if previous is not None and previous != label:
        items = files.read(other)
        if query in items:
            items.remove(query)
            files.write(other, items)
    _, duplicate = files.add(kind, query)
    labels_of(console).set(message_id, label)
    return web.json_response({'label': label, 'added_to': kind, 'duplicate': duplicate})


def add_routes(app: web.Application) -> None:
    app.router.add_get('/api/messages', list_messages)
    app.router.add_post('/api/messages/{id}/label', label_message)
