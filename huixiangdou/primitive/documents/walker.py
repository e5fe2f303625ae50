"""Lists the files under repodir that the parsers can read, and why each other file was skipped.

Follows directory symlinks but never loops (a link back to an ancestor is reported, not walked), in
sorted order; hidden entries (".git", ".github") are reported as skipped, once each, and not walked.
It does not open files beyond a readability check and does not parse them.
"""
from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from huixiangdou.primitive.documents.dispatch import SUPPORTED_SUFFIXES

# Build output and caches that hold no documents but can hold many files (and .js to be misread).
_IGNORED_DIRS = frozenset({'__pycache__', 'node_modules'})
# Counting stops here: walking every loose object of a large .git would cost more than it tells.
_MAX_HIDDEN_COUNT = 10_000


class RepoDirError(Exception):
    """repo_dir is missing or is not a directory."""


@dataclass
class FileEntry:
    path: Path     # absolute
    source: str    # posix path relative to repo_dir, used in citations
    size: int


@dataclass
class SkippedFile:
    source: str
    reason: str


@dataclass
class WalkResult:
    files: list[FileEntry] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)


def _format_mb(size: int) -> str:
    mb = size / (1024 * 1024)
    return f'{mb:.0f}' if mb >= 10 or mb == int(mb) else f'{mb:.1f}'


def _stat_error_reason(exc: OSError, is_link: bool) -> str:
    if exc.errno == errno.ELOOP:
        return 'symlink loop'
    if exc.errno == errno.ENOENT and is_link:
        return 'broken symlink (its target does not exist)'
    if exc.errno in (errno.EACCES, errno.EPERM):
        return 'permission denied'
    return f'unreadable: {exc.strerror or exc}'


def _count_files(directory: str) -> str:
    """'3 files', 'no files' or 'over 10,000 files' under `directory`, symlinks not followed."""
    count = 0
    for _, _, files in os.walk(directory):
        count += len(files)
        if count > _MAX_HIDDEN_COUNT:
            return f'over {_MAX_HIDDEN_COUNT:,} files'
    if count == 0:
        return 'no files'
    return '1 file' if count == 1 else f'{count:,} files'


def _hidden_reason(entry: os.DirEntry) -> str:
    try:
        is_dir = entry.is_dir()  # follows a symlink, like the rest of the walk
    except OSError:
        is_dir = False
    if is_dir:
        return f'hidden folder, not indexed ({_count_files(entry.path)} inside)'
    return 'hidden file, not indexed'


def _is_utf8(name: str) -> bool:
    """False for a name whose bytes are not UTF-8 (os gives them to us as lone surrogates)."""
    try:
        name.encode('utf-8')
    except UnicodeEncodeError:
        return False
    return True


def _printable(source: str) -> str:
    """`source` with each undecodable byte shown as \\xNN."""
    return os.fsencode(source).decode('utf-8', errors='backslashreplace')


def _readable(path: Path) -> str:
    """'' when `path` can be opened for reading, else the reason it cannot."""
    # os.access answers for the real uid; opening catches ACLs and other cases it cannot see.
    if not os.access(path, os.R_OK):
        return 'permission denied'
    try:
        with open(path, 'rb') as f:
            f.read(1)
    except PermissionError:
        return 'permission denied'
    except OSError as exc:
        return f'unreadable: {exc.strerror or exc}'
    return ''


def walk_repo(repo_dir: Path, max_file_size: int) -> WalkResult:
    """Files to parse under `repo_dir` (sorted by path) and the files skipped with their reasons.

    >>> result = walk_repo(Path('repodir'), max_file_size=50 * 1024 * 1024)  # doctest: +SKIP
    >>> [f.source for f in result.files], [(s.source, s.reason) for s in result.skipped]  # doctest: +SKIP
    """
    if max_file_size <= 0:
        raise ValueError(f'max_file_size must be > 0 bytes, got {max_file_size}')
    repo_dir = Path(repo_dir)
    if not repo_dir.exists():
        raise RepoDirError(f'repo_dir {repo_dir} does not exist: create it and put your documents '
                           'in it, or set [feature_store] repo_dir in config.ini')
    if not repo_dir.is_dir():
        raise RepoDirError(f'repo_dir {repo_dir} is not a directory: point [feature_store] repo_dir '
                           'in config.ini at the folder that holds your documents')
    root = repo_dir.resolve()
    root_stat = root.stat()
    result = WalkResult()
    seen_files: dict[tuple[int, int], str] = {}
    seen_dirs: dict[tuple[int, int], str] = {(root_stat.st_dev, root_stat.st_ino): '.'}
    # Depth-first with an explicit stack; each entry carries the (dev, inode)s of its ancestors so a
    # symlink back to one of them is recognised as a loop.
    stack: list[tuple[Path, str, frozenset]] = [(root, '', frozenset(seen_dirs))]
    while stack:
        directory, prefix, ancestors = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            result.skipped.append(SkippedFile(prefix.rstrip('/') or '.',
                                              f'directory {_stat_error_reason(exc, False)}'))
            continue
        subdirs = []
        for entry in entries:
            source = prefix + entry.name
            if entry.name.startswith('.'):
                # .git, .github, .venv, .DS_Store: never documents, but say so in the report.
                result.skipped.append(SkippedFile(source, _hidden_reason(entry)))
                continue
            if not _is_utf8(entry.name):
                # Its citation, the manifest and the chunk table hold names as UTF-8: one such name
                # would fail the whole build at save. Reported under a printable spelling.
                result.skipped.append(SkippedFile(_printable(source), 'its name is not valid UTF-8: rename it '
                                                                      'to index it'))
                continue
            path = Path(entry.path)
            is_link = entry.is_symlink()
            try:
                st = os.stat(entry.path)  # follows symlinks
            except OSError as exc:
                result.skipped.append(SkippedFile(source, _stat_error_reason(exc, is_link)))
                continue
            key = (st.st_dev, st.st_ino)
            if stat.S_ISDIR(st.st_mode):
                if entry.name in _IGNORED_DIRS:
                    continue
                if key in ancestors:
                    result.skipped.append(SkippedFile(
                        source, 'symlink loop (links back to a directory that contains it)'))
                elif key in seen_dirs:
                    result.skipped.append(SkippedFile(
                        source, f'same directory as {seen_dirs[key]}, already included'))
                else:
                    seen_dirs[key] = source
                    subdirs.append((path, source + '/', ancestors | {key}))
                continue
            reason = _file_reason(path, st, max_file_size)
            if not reason and key in seen_files:
                reason = f'same file as {seen_files[key]}, already included'
            if reason:
                result.skipped.append(SkippedFile(source, reason))
                continue
            seen_files[key] = source
            result.files.append(FileEntry(path=root / source, source=source, size=st.st_size))
        stack.extend(reversed(subdirs))
    # Files of a directory come out before its subdirectories' files; sort to plain path order.
    result.files.sort(key=lambda f: f.source)
    result.skipped.sort(key=lambda s: s.source)
    return result


def _file_reason(path: Path, st: os.stat_result, max_file_size: int) -> str:
    """Why this file is skipped, or '' to keep it."""
    if not stat.S_ISREG(st.st_mode):
        # Opening a FIFO would block forever; devices and sockets hold no documents.
        return 'not a regular file'
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        return f'unsupported file type {suffix or "(no extension)"}'
    if st.st_size == 0:
        return 'empty file'
    if st.st_size > max_file_size:
        return (f'larger than the {_format_mb(max_file_size)} MB limit '
                f'({_format_mb(st.st_size)} MB; raise [feature_store] max_file_size_mb to include it)')
    return _readable(path)
