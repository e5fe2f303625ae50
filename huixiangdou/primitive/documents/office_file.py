"""Checks that a .docx/.xlsx/.pptx file is an Office Open XML zip before a library opens it.

Gives the user a reason they can act on (an old binary .doc renamed, not a zip at all), and refuses a
package whose XML would expand past a bound; it does not validate the XML inside.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

from lxml import etree

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
    than the size the directory gives (a part that holds more fails its CRC, and the memory limit of the
    parse bounds what inflating it costs). A part is XML by its name (.xml, .rels) or by the content type
    [Content_Types].xml gives it: the libraries find parts through relationships, so `xl/strings.bin`
    declared as shared strings is parsed as XML too. A few hundred KB of zip can hold 100 MB of tiny
    paragraphs, which a DOM parser holds in about 16 times that.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            defaults, overrides = _content_types(archive)
            size = sum(item.file_size for item in archive.infolist()
                       if _is_xml_part(item.filename, defaults, overrides))
    except (zipfile.BadZipFile, OSError):
        return  # check_office_file says what is wrong with it
    if size > max_expanded_mb * 1024 * 1024:
        raise ParseError(f'its XML expands to {size / 1024 / 1024:.0f} MB, over max_expanded_mb = '
                         f'{max_expanded_mb:g}: split the document, or raise [feature_store] max_expanded_mb '
                         f'(parsing needs about 16 times that in memory)')


# [Content_Types].xml is a list of short elements: more than this is not a real package's.
_MAX_CONTENT_TYPES = 4 * 1024 * 1024


def _content_types(archive: zipfile.ZipFile) -> tuple[dict[str, str], dict[str, str]]:
    """({extension: content type}, {part name: content type}) from [Content_Types].xml, names lowercased
    without the leading slash; empty when it is missing or unreadable (the parser then says why)."""
    try:
        with archive.open('[Content_Types].xml') as f:
            data = f.read(_MAX_CONTENT_TYPES)  # bounded: a lying directory cannot make this inflate more
        root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))
    except (KeyError, zipfile.BadZipFile, OSError, etree.XMLSyntaxError, ValueError):
        return {}, {}
    defaults, overrides = {}, {}
    for element in root:
        tag = etree.QName(element).localname if isinstance(element.tag, str) else ''
        if tag == 'Default':
            defaults[element.get('Extension', '').lower()] = element.get('ContentType', '')
        elif tag == 'Override':
            overrides[element.get('PartName', '').lstrip('/').lower()] = element.get('ContentType', '')
    return defaults, overrides


def _is_xml_part(name: str, defaults: dict[str, str], overrides: dict[str, str]) -> bool:
    lowered = name.lower()
    if lowered.endswith(('.xml', '.rels')):
        return True
    content_type = overrides.get(lowered) or defaults.get(lowered.rpartition('.')[2], '')
    return content_type.endswith('+xml') or content_type in ('application/xml', 'text/xml')
