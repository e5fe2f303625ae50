"""Checks that a .docx/.xlsx/.pptx file is an Office Open XML zip before a library opens it.

Gives the user a reason they can act on (an old binary .doc renamed, not a zip at all), and refuses a
package whose XML would expand past a bound; it does not validate the XML inside.
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
OFFICE_SUFFIXES = frozenset(_PARTS)


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


def check_expanded_size(path: Path, max_expanded_mb: float) -> None:
    """Raise ParseError when the XML parts of an Office package add up, uncompressed, to more than the bound.

    The sizes come from the zip's directory, read without inflating anything; zipfile never yields more
    than the size the directory gives, so a package cannot lie its way past this check. A few hundred KB
    of zip can hold 100 MB of tiny paragraphs, which a DOM parser holds in about 16 times that.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            size = sum(item.file_size for item in archive.infolist()
                       if item.filename.lower().endswith(('.xml', '.rels')))
    except (zipfile.BadZipFile, OSError):
        return  # check_office_file says what is wrong with it
    if size > max_expanded_mb * 1024 * 1024:
        raise ParseError(f'its XML expands to {size / 1024 / 1024:.0f} MB, over max_expanded_mb = '
                         f'{max_expanded_mb:g}: split the document, or raise [feature_store] max_expanded_mb '
                         f'(parsing needs about 16 times that in memory)')
