"""Checks that a .docx/.xlsx/.pptx file is an Office Open XML zip before a library opens it.

Gives the user a reason they can act on (an old binary .doc renamed, not a zip at all); it does not
validate the XML inside.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

from huixiangdou.primitive.documents.errors import ParseError

_OLE2_MAGIC = b'\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1'
# The part every package of that kind must hold, and the application that saves it.
_PARTS = {
    '.docx': ('word/', 'Word'),
    '.xlsx': ('xl/', 'Excel'),
    '.pptx': ('ppt/', 'PowerPoint'),
}


def check_office_file(path: Path) -> None:
    """Raise ParseError unless `path` is a zip holding the parts its suffix promises."""
    suffix = path.suffix.lower()
    prefix, app = _PARTS[suffix]
    with open(path, 'rb') as f:
        head = f.read(8)
    if head == _OLE2_MAGIC:
        raise ParseError(f'an old binary Office file named {suffix}; '
                         f'open it in {app} and save it as {suffix}')
    if not zipfile.is_zipfile(path):
        raise ParseError(f'not a {suffix} (not a zip archive)')
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ParseError(f'not a {suffix} (damaged zip archive: {exc})') from exc
    if not any(name.startswith(prefix) for name in names):
        raise ParseError(f'not a {suffix} (a zip archive without {app} content)')
