"""Files that make parsers explode (a docx of millions of tiny paragraphs) and a way to see parse processes.

Used by the builder's, the command line's and the console's tests of the parse limits; no fixtures here.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import docx
import psutil

_PARAGRAPH = b'<w:p><w:r><w:t>x</w:t></w:r></w:p>'


def crafted_docx(path: Path, megabytes: float) -> Path:
    """A valid docx whose word/document.xml holds `megabytes` MB of one-letter paragraphs (zipped: ~1/300)."""
    base = io.BytesIO()
    docx.Document().save(base)
    count = int(megabytes * 1024 * 1024 / len(_PARAGRAPH))
    with zipfile.ZipFile(base) as src, zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as out:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename != 'word/document.xml':
                out.writestr(item, data)
                continue
            head, tail = data.split(b'<w:body>')
            with out.open('word/document.xml', 'w') as f:
                f.write(head + b'<w:body>')
                for _ in range(count // 1000):
                    f.write(_PARAGRAPH * 1000)
                f.write(tail)
    return path


def parse_workers(pid: int) -> list[psutil.Process]:
    """The parse worker processes under process `pid`: children of its multiprocessing fork server."""
    try:
        tree = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    workers = []
    for process in tree:
        try:
            if 'forkserver' in ' '.join(process.cmdline()):
                workers.extend(process.children())
        except psutil.Error:
            continue
    return workers
