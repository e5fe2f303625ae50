"""The Knowledge bases page and group bindings: list them (GET /api/knowledge-bases), create one with its folders
and an optional operator password, delete one made here (its folders moved aside), set an operator password,
and bind a group to a knowledge base (PUT/DELETE /api/groups/<id>).

Changes go to the console-managed file (console_file.py); only the admin makes them. It does not build stores.
"""
from __future__ import annotations

import asyncio
import re
import shutil
import time
import unicodedata
from pathlib import Path

from aiohttp import web
from loguru import logger

from huixiangdou.config import DEFAULT_KNOWLEDGE_BASE, GROUP_FRONTENDS, Config, ConfigError
from huixiangdou.primitive.documents.walker import RepoDirError, walk_repo
from huixiangdou.web import console_file
from huixiangdou.web.api_error import ApiError, read_json, text_field
from huixiangdou.web.auth import SESSIONS, is_admin, principal_of, require_admin
from huixiangdou.web.console import Console, console_of
from huixiangdou.web.operator_password import PasswordRefused, hash_password
from huixiangdou.web.scope import allowed

# Names go into folder names, commands (--kb) and Milvus collection names: lower-case ASCII words.
NAME = re.compile(r'[a-z][a-z0-9_]{0,31}')
DELETED = '.deleted'
MAX_GROUP_ID = 200


def _entry(config: Config, name: str) -> dict:
    """One knowledge base as the list shows it. Reads its folders: call it in a thread."""
    from huixiangdou.service.feature_store.store_files import StoreError, read_manifest

    fs = config.knowledge_bases()[name]
    try:
        files = len(walk_repo(config.path(fs.repo_dir), int(fs.max_file_size_mb * 1024 * 1024)).files)
    except RepoDirError:
        files = 0
    try:
        manifest = read_manifest(config.path(fs.work_dir))
    except StoreError:
        manifest = None
    return {'name': name, 'groups': config.groups_of(name),
            'source': 'console' if name in config.console_knowledge_bases else 'config',
            'has_operator': name in config.operators, 'files': files,
            'chunks': sum(r.count for r in manifest.files.values()) if manifest is not None else None}


async def list_knowledge_bases(request: web.Request) -> web.Response:
    config = console_of(request).config
    names = [name for name in config.knowledge_bases() if allowed(request, name)]
    entries = await asyncio.to_thread(lambda: [_entry(config, name) for name in names])
    principal = principal_of(request)
    if principal is not None and principal.kb is not None:
        role, kb = 'operator', principal.kb
    else:
        role, kb = ('admin' if is_admin(request) else None), None
    return web.json_response({'knowledge_bases': entries, 'role': role, 'kb': kb})


def _password(body: dict, required: bool) -> str | None:
    value = body.get('password')
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise ApiError(400, 'bad_password', '"password" must be a string of at least 8 characters')
    try:
        return hash_password(value)
    except PasswordRefused as exc:
        raise ApiError(400, 'bad_password', str(exc)) from None


def _save(console: Console, edit, before_write=None) -> None:
    """Change the console-managed file and serve the new config; a change the loader would refuse is a 400."""
    try:
        console.config = console_file.change(console.config, edit, before_write)
    except ConfigError as exc:
        raise ApiError(400, 'bad_settings', str(exc)) from None


def _folder_of(config: Config, name: str) -> Path:
    return config.path(config.web.knowledge_base_root) / name


async def create_knowledge_base(request: web.Request) -> web.Response:
    require_admin(request)
    body = await read_json(request)
    name = body.get('name')
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ApiError(400, 'bad_name', 'a knowledge base name is a lower-case letter, then lower-case letters, '
                                        'digits or "_" (32 at most), e.g. "coffee" or "docs_zh"')
    stored_password = _password(body, required=False)
    console = console_of(request)
    if name in console.config.knowledge_bases():
        where = 'made in the console' if name in console.config.console_knowledge_bases else 'defined in config.ini'
        raise ApiError(409, 'exists', f'a knowledge base named "{name}" exists already ({where})')
    folder = _folder_of(console.config, name)
    if folder.exists():
        raise ApiError(409, 'folder_exists', f'{folder} exists already: move it away or choose another name')
    relative = Path(console.config.web.knowledge_base_root) / name
    section = {'repo_dir': str(relative / 'repodir'), 'work_dir': str(relative / 'workdir'),
               'good_questions': str(relative / 'good_questions.json'),
               'bad_questions': str(relative / 'bad_questions.json')}

    def edit(document) -> None:
        console_file.table(document, 'knowledge_base')[name] = section
        if stored_password is not None:
            console_file.table(document, 'operators')[name] = stored_password

    def make_folders(config: Config) -> None:
        fs = config.knowledge_bases()[name]
        try:
            config.path(fs.repo_dir).mkdir(parents=True)
            config.path(fs.work_dir).mkdir(parents=True)
            for key in ('good_questions', 'bad_questions'):
                config.path(getattr(fs, key)).write_text('[]\n', encoding='utf-8')
        except OSError as exc:
            raise ApiError(507, 'cannot_store', f'cannot make the folders of "{name}" in {folder}: '
                                                f'{exc.strerror or exc}') from None

    _save(console, edit, make_folders)
    logger.info('web console: knowledge base "{}" created in {}{}', name, folder,
                ' with an operator password' if stored_password else '')
    return web.json_response({'name': name, 'folder': str(folder), 'has_operator': stored_password is not None},
                             status=201)


def _made_here(console: Console, name: str) -> None:
    config = console.config
    if name not in config.knowledge_bases():
        raise ApiError(404, 'unknown_knowledge_base', f'no knowledge base named {name[:64]!r}')
    if name == DEFAULT_KNOWLEDGE_BASE:
        raise ApiError(409, 'defined_in_config', 'the default knowledge base is [feature_store] in config.ini: '
                                                 'it cannot be deleted')
    if name not in config.console_knowledge_bases:
        raise ApiError(409, 'defined_in_config', f'"{name}" is defined in config.ini: remove it there')


async def delete_knowledge_base(request: web.Request) -> web.Response:
    require_admin(request)
    name = request.match_info['name']
    console = console_of(request)
    _made_here(console, name)
    confirm = (await read_json(request)).get('confirm') if request.can_read_body else None
    if confirm != name:
        raise ApiError(400, 'confirm', f'to delete "{name}", send {{"confirm": "{name}"}}')
    fs = console.config.knowledge_bases()[name]
    folders = {console.config.path(fs.repo_dir).parent, console.config.path(fs.work_dir).parent}
    unbound = [g for g, b in console.config.group_bindings.items() if b.knowledge_base == name]
    await console.forget(name)  # a running build cancelled, the worker closed

    def edit(document) -> None:
        for key in ('knowledge_base', 'operators'):
            if key in document and name in document[key]:
                del document[key][name]
        for group_id in unbound:
            del document['groups'][group_id]

    _save(console, edit)
    request.app[SESSIONS].close_operators(name)
    moved = None
    folder = _folder_of(console.config, name)
    if folders == {folder} and folder.is_dir():  # its own folder, as made here: moved aside, not erased
        moved = folder.parent / DELETED / f'{name}-{time.strftime("%Y%m%dT%H%M%S")}'
        moved.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(shutil.move, folder, moved)
    logger.info('web console: knowledge base "{}" deleted{}', name, f'; its folder is now {moved}' if moved else '')
    return web.json_response({'deleted': name, 'moved_to': str(moved) if moved else None, 'unbound': unbound})


async def set_password(request: web.Request) -> web.Response:
    require_admin(request)
    name = request.match_info['name']
    console = console_of(request)
    if name not in console.config.knowledge_bases():
        raise ApiError(404, 'unknown_knowledge_base', f'no knowledge base named {name[:64]!r}')
    stored = _password(await read_json(request), required=True)
    _save(console, lambda document: console_file.table(document, 'operators').__setitem__(name, stored))
    # Sessions opened with the old password end; the current request's own cookie is the admin's.
    request.app[SESSIONS].close_operators(name)
    logger.info('web console: operator password of "{}" set', name)
    return web.json_response({'name': name, 'has_operator': True})


def _group_id(request: web.Request) -> str:
    group_id = unicodedata.normalize('NFC', request.match_info['group_id']).strip()
    if not group_id or len(group_id) > MAX_GROUP_ID or any(unicodedata.category(c) in ('Cc', 'Cf', 'Cs')
                                                           for c in group_id):
        raise ApiError(400, 'bad_group', f'a group id is 1 to {MAX_GROUP_ID} printable characters')
    return group_id


async def bind_group(request: web.Request) -> web.Response:
    """Route a group to a knowledge base; the frontends read it when they start."""
    require_admin(request)
    group_id = _group_id(request)
    body = await read_json(request)
    name = text_field(body, 'knowledge_base', max_chars=64)
    frontend = text_field(body, 'frontend', max_chars=64)
    console = console_of(request)
    if name not in console.config.knowledge_bases():
        raise ApiError(400, 'unknown_knowledge_base', f'no knowledge base named {name!r}: GET /api/knowledge-bases '
                                                      'lists them')
    if frontend not in GROUP_FRONTENDS:
        raise ApiError(400, 'bad_frontend', f'frontend must be one of {", ".join(GROUP_FRONTENDS)}')

    def edit(document) -> None:
        console_file.table(document, 'groups')[group_id] = {'knowledge_base': name, 'frontend': frontend}

    _save(console, edit)
    logger.info('web console: group {!r} ({}) bound to knowledge base "{}"', group_id, frontend, name)
    return web.json_response({'group': group_id, 'knowledge_base': name, 'frontend': frontend})


async def unbind_group(request: web.Request) -> web.Response:
    """Forget the console's binding: config.ini's group section (or "default") routes the group again."""
    require_admin(request)
    group_id = _group_id(request)
    console = console_of(request)
    if group_id not in console.config.group_bindings:
        raise ApiError(404, 'not_found', f'group {group_id!r} has no binding made in the console')
    _save(console, lambda document: document['groups'].__delitem__(group_id))
    return web.json_response({'group': group_id, 'knowledge_base': console.config.knowledge_base_for(group_id)})


def add_routes(app: web.Application) -> None:
    app.router.add_get('/api/knowledge-bases', list_knowledge_bases)
    app.router.add_post('/api/knowledge-bases', create_knowledge_base)
    app.router.add_delete('/api/knowledge-bases/{name}', delete_knowledge_base)
    app.router.add_put('/api/knowledge-bases/{name}/password', set_password)
    app.router.add_put('/api/groups/{group_id}', bind_group)
    app.router.add_delete('/api/groups/{group_id}', unbind_group)
