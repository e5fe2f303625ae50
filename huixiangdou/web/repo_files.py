"""Uploads into repo_dir and deletes from it: POST /api/files and DELETE /api/files (of the knowledge base
`?kb=` names).

Names are sanitised so nothing is written or removed outside repo_dir (no traversal, no absolute paths,
no hidden names, no writing through a symlink); types are limited to what the parsers read; sizes to
[web] max_upload_mb. A request is stored all or nothing: files are staged first and moved into place
only when the whole upload was read. It does not index anything (a rebuild does).
"""
from __future__ import annotations

import os
import unicodedata
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

from aiohttp import BodyPartReader, web
from loguru import logger

from huixiangdou.primitive.documents.dispatch import SUPPORTED_SUFFIXES
from huixiangdou.primitive.request_body import reading_multipart
from huixiangdou.web.api_error import ApiError
from huixiangdou.web.scope import kb_scope

_MAX_NAME_CHARS = 200
# What the file system takes: a name of 255 bytes (100 CJK characters are 300), a path of 4096 with repo_dir.
_MAX_NAME_BYTES = 255
_MAX_RELATIVE_BYTES = 1024
_CHUNK = 1 << 16


class NameRefused(ValueError):
    """A file or folder name that cannot be stored; the message says why."""


def clean_component(name: str, what: str = 'name') -> str:
    """One path component as stored: NFC, no control characters, not hidden, not '.'/'..'."""
    name = unicodedata.normalize('NFC', name).strip()
    if any(unicodedata.category(c) in ('Cc', 'Cf') for c in name):
        raise NameRefused(f'the {what} holds control characters')
    if any(unicodedata.category(c) == 'Cs' for c in name):
        # aiohttp keeps bytes that are not UTF-8 as lone surrogates: stored, such a name could not be deleted
        # from the console nor written into the store's manifest (every later build would fail on it).
        raise NameRefused(f'the {what} is not valid UTF-8: send file names as UTF-8')
    if name in ('', '.', '..'):
        raise NameRefused(f'empty {what}')
    if name.startswith('.'):
        raise NameRefused(f'hidden {what}s (starting with ".") are not indexed')
    if len(name) > _MAX_NAME_CHARS:
        raise NameRefused(f'the {what} is longer than {_MAX_NAME_CHARS} characters')
    if len(name.encode('utf-8', 'surrogatepass')) > _MAX_NAME_BYTES:
        raise NameRefused(f'the {what} is longer than {_MAX_NAME_BYTES} bytes in UTF-8 (about 85 CJK characters)')
    return name


def clean_filename(raw: str) -> str:
    """The file's own name: any directories a client sent (../, C:\\, /etc/) are dropped. A name that
    aiohttp's client percent-encoded (browsers and curl send UTF-8 as is) is decoded first."""
    try:
        decoded = unquote(raw, errors='strict') if '%' in raw else raw
    except UnicodeDecodeError:
        decoded = raw
    if decoded != raw and not decoded.isascii():
        raw = decoded
    base = raw.replace('\\', '/').rstrip('/').rsplit('/', 1)[-1]
    return clean_component(base.split(':')[-1] if ':' in base else base)


def clean_relative(raw: str, what: str = 'path') -> PurePosixPath:
    """A relative path inside repo_dir given by a client: every component checked, none may climb out."""
    text = raw.replace('\\', '/').strip()
    if text.startswith('/') or (len(text) > 1 and text[1] == ':'):
        raise NameRefused(f'the {what} must be relative to repo_dir, got an absolute path')
    parts = [p for p in text.split('/') if p not in ('', '.')]
    if len('/'.join(parts).encode('utf-8', 'surrogatepass')) > _MAX_RELATIVE_BYTES:
        raise NameRefused(f'the {what} is longer than {_MAX_RELATIVE_BYTES} bytes in UTF-8')
    return PurePosixPath(*[clean_component(p, what) for p in parts]) if parts else PurePosixPath()


def inside(repo_dir: Path, target: Path) -> bool:
    """True when `target` (resolved, following symlinks) lies inside repo_dir."""
    root = repo_dir.resolve()
    resolved = target.resolve(strict=False)
    return resolved == root or resolved.is_relative_to(root)


def unsupported_reason(name: str) -> str:
    suffix = PurePosixPath(name).suffix.lower()
    if suffix in SUPPORTED_SUFFIXES:
        return ''
    return (f'unsupported file type {suffix or "(no extension)"}: upload md, txt, pdf, docx, xlsx, csv, pptx, '
            'html or source files')


@dataclass
class _Staged:
    name: str
    target: Path
    temp: Path
    size: int


async def _stage(part: BodyPartReader, folder: Path, name: str, limit: int) -> _Staged:
    """Stream one part to a hidden temporary file next to its target; 413 past `limit` bytes (what is
    left of the request's allowance)."""
    temp = folder / f'.upload-{uuid.uuid4().hex}.partial'
    size = 0
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(temp, 'xb') as f:
            while chunk := await part.read_chunk(_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, 'too_large', f'the upload passes [web] max_upload_mb at {name}: '
                                                     'nothing was stored; send fewer or smaller files')
                f.write(chunk)
    except OSError as exc:  # a full disk or a read-only repo_dir: the server's side, said plainly
        temp.unlink(missing_ok=True)
        raise ApiError(507, 'cannot_store', f'cannot store {name} in repo_dir: {exc.strerror or exc}') from None
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return _Staged(name, folder / name, temp, size)


async def upload_files(request: web.Request) -> web.Response:
    console = kb_scope(request)
    repo_dir = console.repo_dir
    limit = int(console.config.web.max_upload_mb * 1024 * 1024)
    if request.content_length is not None and request.content_length > limit + 1024 * 1024:
        raise ApiError(413, 'too_large', f'the upload is larger than [web] max_upload_mb '
                                         f'({console.config.web.max_upload_mb:g} MB): nothing was stored')
    if not request.content_type.startswith('multipart/'):
        raise ApiError(415, 'unsupported_type', 'send the files as multipart/form-data, in parts named "file"')
    repo_dir.mkdir(parents=True, exist_ok=True)
    folder = PurePosixPath()
    staged: list[_Staged] = []
    refused: list[dict] = []
    try:
        async with reading_multipart(request, limit):  # bad boundary or part header: 400; too slow: 408
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader):
                    raise ApiError(400, 'bad_multipart', 'nested multipart bodies are not accepted')
                if part.name == 'folder':
                    if staged or refused:
                        raise ApiError(400, 'bad_multipart', 'send the "folder" part before the "file" parts')
                    try:
                        folder = clean_relative(await part.text(), 'folder')
                    except NameRefused as exc:
                        raise ApiError(400, 'bad_folder', f'{exc}: give a sub-folder of repo_dir such as "zh/faq"')
                    if not inside(repo_dir, repo_dir / folder):
                        raise ApiError(400, 'bad_folder', 'the folder leads outside repo_dir (a symlink?)')
                    if any(repo_dir.joinpath(*folder.parts[:i + 1]).is_file()
                           for i in range(len(folder.parts))):
                        raise ApiError(400, 'bad_folder', f'{folder} names a file in repo_dir, not a folder')
                    continue
                if part.name != 'file':
                    await part.release()
                    continue
                raw = part.filename or ''
                try:
                    name = clean_filename(raw)
                except NameRefused as exc:
                    refused.append({'name': raw, 'reason': str(exc)})
                    await part.release()
                    continue
                target = repo_dir / folder / name
                reason = unsupported_reason(name)
                if not reason and (target.is_symlink() or target.is_dir() or not inside(repo_dir, target)):
                    reason = 'a folder or link of that name is in the way inside repo_dir'
                if not reason and any(s.target == target for s in staged):
                    reason = 'the same name twice in one upload'
                if reason:
                    refused.append({'name': raw, 'reason': reason})
                    await part.release()
                    continue
                # One allowance for the whole request: several files together may not pass max_upload_mb.
                staged.append(await _stage(part, repo_dir / folder, name, limit - sum(s.size for s in staged)))
    except BaseException:
        for item in staged:
            item.temp.unlink(missing_ok=True)
        raise
    saved = []
    for item in staged:
        os.replace(item.temp, item.target)  # atomic: a reader sees the old file or the new one
        source = item.target.relative_to(repo_dir).as_posix()
        saved.append({'path': source, 'size': item.size})
        logger.info('web console: uploaded {} ({} bytes)', source, item.size)
    if not saved and refused:
        type_only = all(r['reason'].startswith('unsupported file type') for r in refused)
        raise ApiError(415 if type_only else 400, 'unsupported_type' if type_only else 'bad_name',
                       '; '.join(f'{r["name"] or "(no name)"}: {r["reason"]}' for r in refused))
    if not saved:
        raise ApiError(400, 'no_files', 'no "file" part in the upload')
    return web.json_response({'saved': saved, 'refused': refused}, status=201)


def resolve_existing(repo_dir: Path, raw: str | None) -> tuple[str, Path]:
    """A file named by a client's relative path, checked to lie in repo_dir; 400 or 404 otherwise."""
    if not raw:
        raise ApiError(400, 'missing_field', 'give the file as ?path=<path relative to repo_dir>')
    try:
        relative = clean_relative(raw)
    except NameRefused as exc:
        raise ApiError(400, 'bad_path', str(exc)) from None
    path = repo_dir / relative
    if not relative.parts or not inside(repo_dir, path.parent) or not (path.is_file() or path.is_symlink()):
        raise ApiError(404, 'not_found', f'{raw} is not a file in repo_dir')
    return relative.as_posix(), path


async def delete_file(request: web.Request) -> web.Response:
    source, path = resolve_existing(kb_scope(request).repo_dir, request.query.get('path'))
    try:
        path.unlink()
    except OSError as exc:
        raise ApiError(409, 'cannot_delete', f'cannot delete {source}: {exc.strerror or exc}') from None
    logger.info('web console: deleted {}', source)
    return web.json_response({'deleted': source})


def add_routes(app: web.Application) -> None:
    app.router.add_post('/api/files', upload_files)
    app.router.add_delete('/api/files', delete_file)
