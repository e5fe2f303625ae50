"""The settings the console manages, in config.CONSOLE_FILE beside config.ini: knowledge bases made in the
console, operator password hashes and group bindings. Each change is checked by the config loader's own rules
(config.apply_console_settings) before the file is rewritten, atomically, with tomlkit (comments kept).

It writes; config.load_config reads (so `main` and the feature-store command see the same knowledge bases).
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Callable

import tomlkit
from tomlkit.exceptions import TOMLKitError

from huixiangdou.config import Config, ConfigError, apply_console_settings

HEADER = ('Written by the web console (python -m huixiangdou.web): knowledge bases made there, operator password '
          'hashes and group bindings.', 'config.load_config reads it beside config.ini with the same checks. '
          'Prefer the console to editing it by hand.')


def write_atomically(path: Path, text: str, private: bool = False) -> None:
    """Replace `path` with `text` so that a reader (or a crash) sees the old file or the new one, never half;
    `private` files (password hashes) are readable by their owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f'.{path.name}.{uuid.uuid4().hex}.tmp')
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def read_document(path: Path) -> tomlkit.TOMLDocument:
    """The file as an editable document; a new one (with its header) when there is none."""
    if not path.is_file():
        document = tomlkit.document()
        for line in HEADER:
            document.add(tomlkit.comment(line))
        return document
    try:
        return tomlkit.parse(path.read_text(encoding='utf-8'))
    except (TOMLKitError, UnicodeDecodeError) as exc:
        raise ConfigError(f'{path}: not valid TOML: {exc} (the web console writes this file; fix or remove it)') \
            from None


def table(document, key: str):
    """The sub-table `key` of `document`, added when missing (a super-table: only its sub-tables are written)."""
    if key not in document:
        document[key] = tomlkit.table(is_super_table=True)
    return document[key]


def change(config: Config, edit: Callable[[tomlkit.TOMLDocument], None],
           before_write: Callable[[Config], None] | None = None) -> Config:
    """Apply `edit` to the file's document, check the result as load_config would (ConfigError if it does not
    pass), run `before_write(new config)` (e.g. make the folders), then write the file; the new Config."""
    path = config.console_file
    document = read_document(path)
    edit(document)
    updated = apply_console_settings(config, document.unwrap())
    if before_write is not None:
        before_write(updated)
    write_atomically(path, tomlkit.dumps(document), private=True)
    return updated
