"""The repo walker on real directory trees: sorted output, hidden dirs, skip reasons, symlink loops,
broken links, FIFOs and unreadable files, without hanging or crashing."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from huixiangdou.primitive.documents import RepoDirError, walk_repo

MB = 1024 * 1024
LIMIT = 50 * MB


def _touch(path: Path, text: str = '内容') -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding='utf-8')
    return path


def _reasons(result) -> dict[str, str]:
    return {s.source: s.reason for s in result.skipped}


def test_lists_supported_files_sorted_with_relative_posix_sources(tmp_path):
    _touch(tmp_path / 'zh' / '安装.md')
    _touch(tmp_path / 'b.txt', 'hello')
    _touch(tmp_path / 'a' / 'z.py')
    _touch(tmp_path / 'a' / 'deep' / 'x.PDF')
    result = walk_repo(tmp_path, LIMIT)
    assert [f.source for f in result.files] == ['a/deep/x.PDF', 'a/z.py', 'b.txt', 'zh/安装.md']
    entry = result.files[2]
    assert entry.path == tmp_path.resolve() / 'b.txt' and entry.path.is_absolute()
    assert entry.size == 5
    assert result.skipped == []


def test_hidden_and_cache_directories_are_not_walked(tmp_path):
    _touch(tmp_path / '.git' / 'config.ini')
    _touch(tmp_path / 'docs' / '.cache' / 'a.md')
    _touch(tmp_path / 'node_modules' / 'lib' / 'index.js')
    _touch(tmp_path / 'src' / '__pycache__' / 'm.py')
    _touch(tmp_path / 'docs' / 'keep.md')
    result = walk_repo(tmp_path, LIMIT)
    assert [f.source for f in result.files] == ['docs/keep.md']
    # Hidden folders are named in the report; build caches stay silent.
    assert [s.source for s in result.skipped] == ['.git', 'docs/.cache']


def test_hidden_folder_is_one_skipped_entry_with_its_file_count(tmp_path):
    for i in range(30):
        _touch(tmp_path / '.git' / 'objects' / f'{i:02d}' / 'blob.md')
    _touch(tmp_path / '.github' / 'workflows' / 'ci.yml')
    _touch(tmp_path / '.github' / 'README.md')
    (tmp_path / '.empty').mkdir()
    _touch(tmp_path / 'docs' / '.草稿.md')
    _touch(tmp_path / 'docs' / '手册.md')
    result = walk_repo(tmp_path, LIMIT)
    assert [f.source for f in result.files] == ['docs/手册.md']
    assert _reasons(result) == {
        '.empty': 'hidden folder, not indexed (no files inside)',
        '.git': 'hidden folder, not indexed (30 files inside)',
        '.github': 'hidden folder, not indexed (2 files inside)',
        'docs/.草稿.md': 'hidden file, not indexed',
    }


def test_huge_hidden_folder_count_is_capped(tmp_path, monkeypatch):
    from huixiangdou.primitive.documents import walker
    monkeypatch.setattr(walker, '_MAX_HIDDEN_COUNT', 5)
    for i in range(8):
        _touch(tmp_path / '.git' / f'{i}.pack')
    _touch(tmp_path / 'a.md')
    assert _reasons(walk_repo(tmp_path, LIMIT)) == {
        '.git': 'hidden folder, not indexed (over 5 files inside)'}


def test_skip_reasons_for_unsupported_empty_and_oversized(tmp_path):
    _touch(tmp_path / 'photo.xyz')
    (tmp_path / 'empty.md').write_bytes(b'')
    big = tmp_path / 'huge.txt'
    with open(big, 'wb') as f:  # sparse: 51 MB on paper, no disk written
        f.truncate(51 * MB)
    _touch(tmp_path / 'ok.md')
    result = walk_repo(tmp_path, LIMIT)
    reasons = _reasons(result)
    assert reasons['photo.xyz'] == 'unsupported file type .xyz'
    assert reasons['empty.md'] == 'empty file'
    assert reasons['huge.txt'].startswith('larger than the 50 MB limit')
    assert [f.source for f in result.files] == ['ok.md']


def test_symlink_loop_is_reported_not_followed(tmp_path):
    _touch(tmp_path / 'docs' / 'a.md')
    (tmp_path / 'docs' / 'loop').symlink_to(tmp_path / 'docs', target_is_directory=True)
    (tmp_path / 'root_link').symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / 'self').symlink_to(tmp_path / 'self')
    result = walk_repo(tmp_path, LIMIT)
    reasons = _reasons(result)
    assert reasons['docs/loop'].startswith('symlink loop')
    assert reasons['root_link'].startswith('symlink loop')
    assert reasons['self'] == 'symlink loop'
    assert [f.source for f in result.files] == ['docs/a.md']


def test_broken_symlink_is_reported(tmp_path):
    (tmp_path / 'gone.md').symlink_to(tmp_path / 'nowhere.md')
    assert _reasons(walk_repo(tmp_path, LIMIT)) == {
        'gone.md': 'broken symlink (its target does not exist)'}


def test_symlinked_directory_outside_is_followed_once(tmp_path):
    outside = tmp_path / 'outside'
    _touch(outside / '手册.md')
    repo = tmp_path / 'repo'
    repo.mkdir()
    (repo / 'linked').symlink_to(outside, target_is_directory=True)
    (repo / 'linked_again').symlink_to(outside, target_is_directory=True)
    result = walk_repo(repo, LIMIT)
    assert [f.source for f in result.files] == ['linked/手册.md']
    assert result.files[0].path == repo.resolve() / 'linked' / '手册.md'
    assert _reasons(result)['linked_again'] == 'same directory as linked, already included'


def test_fifo_is_skipped_without_blocking(tmp_path):
    os.mkfifo(tmp_path / 'pipe.txt')
    assert _reasons(walk_repo(tmp_path, LIMIT)) == {'pipe.txt': 'not a regular file'}


@pytest.mark.skipif(os.geteuid() == 0, reason='root can read a chmod 000 file, so nothing is denied')
def test_unreadable_file_and_directory_are_reported(tmp_path):
    secret = _touch(tmp_path / 'secret.md')
    secret.chmod(0)
    locked = tmp_path / 'locked'
    _touch(locked / 'inside.md')
    locked.chmod(0)
    try:
        reasons = _reasons(walk_repo(tmp_path, LIMIT))
    finally:
        secret.chmod(0o644)
        locked.chmod(0o755)
    assert reasons['secret.md'] == 'permission denied'
    assert reasons['locked'] == 'directory permission denied'


def test_missing_or_non_directory_repo_dir_is_a_clear_error(tmp_path):
    with pytest.raises(RepoDirError, match='does not exist.*repo_dir in config.ini'):
        walk_repo(tmp_path / 'missing', LIMIT)
    with pytest.raises(RepoDirError, match='is not a directory'):
        walk_repo(_touch(tmp_path / 'file.md'), LIMIT)
    with pytest.raises(ValueError, match='max_file_size'):
        walk_repo(tmp_path, 0)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which('setpriv') is None,
                    reason='needs root and setpriv to drop the capabilities that bypass file modes')
def test_unreadable_file_is_reported_when_root_drops_capabilities(tmp_path):
    """Root keeps CAP_DAC_OVERRIDE; without it a chmod 000 file is unreadable even to root."""
    secret = _touch(tmp_path / 'secret.md')
    secret.chmod(0)
    _touch(tmp_path / 'ok.md')
    script = ('import json, sys; from pathlib import Path; '
              'from huixiangdou.primitive.documents import walk_repo; '
              'r = walk_repo(Path(sys.argv[1]), 1 << 20); '
              'print(json.dumps([[f.source for f in r.files], {s.source: s.reason for s in r.skipped}]))')
    try:
        proc = subprocess.run(['setpriv', '--inh-caps=-all', '--bounding-set=-all', sys.executable,
                               '-c', script, str(tmp_path)], capture_output=True, text=True, timeout=60)
    finally:
        secret.chmod(0o644)
    if proc.returncode != 0 and 'setpriv' in proc.stderr:
        pytest.skip(f'setpriv cannot drop capabilities here: {proc.stderr.strip()}')
    assert proc.returncode == 0, proc.stderr
    files, skipped = json.loads(proc.stdout)
    assert files == ['ok.md']
    assert skipped == {'secret.md': 'permission denied'}


def test_a_name_that_is_not_utf8_is_skipped_with_a_printable_reason(tmp_path):
    _touch(tmp_path / 'good.md')
    odd = os.fsdecode(b'odd\xff name.md')
    _touch(tmp_path / odd)
    (tmp_path / os.fsdecode(b'dir\xfe')).mkdir()
    _touch(tmp_path / os.fsdecode(b'dir\xfe') / 'inside.md')
    result = walk_repo(tmp_path, 10 * 1024 * 1024)
    assert [f.source for f in result.files] == ['good.md']
    reasons = _reasons(result)
    assert reasons == {'odd\\xff name.md': 'its name is not valid UTF-8: rename it to index it',
                       'dir\\xfe': 'its name is not valid UTF-8: rename it to index it'}
    json.dumps(reasons, ensure_ascii=False).encode('utf-8')  # the report can be written
