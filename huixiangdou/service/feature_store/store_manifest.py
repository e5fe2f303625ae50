"""A version folder's manifest (`manifest.json`): its fields, and parsing that checks each one by type.

It holds the store's errors too (every module of the store raises them); reading and writing the folder's
other files is store_files.py's job.
"""
from __future__ import annotations

import math
import typing
from dataclasses import asdict, dataclass, field, fields

FORMAT_VERSION = 2
# Format 1 (before the learned reject model) has the same chunks and indexes: it loads, and only needs
# recalibrating before the reject stage can use it.
READABLE_FORMATS = (1, 2)
REBUILD = 'rebuild with `python -m huixiangdou.service.feature_store --rebuild`'


class StoreError(RuntimeError):
    """The feature store is missing, damaged, or does not fit the configuration."""


class StoreDamagedError(StoreError):
    """A version folder's files are not what its build wrote (a checksum, a field or a file is wrong)."""

    def __init__(self, folder, reason: str):
        super().__init__(f'feature store {folder} is damaged: {reason}; {REBUILD}')
        self.folder, self.reason = folder, reason


@dataclass
class FileRecord:
    """Where one source file's chunks sit in the store, and the content hash they came from."""
    sha256: str
    size: int
    first: int
    count: int


@dataclass
class Manifest:
    embedding_model: str
    dimension: int
    chunk_size: int
    chunk_overlap: int
    min_chunk_chars: int = 0
    files: dict[str, FileRecord] = field(default_factory=dict)
    # The calibrated threshold on the reject model's P(on-topic); None when the store was never calibrated.
    reject_threshold: float | None = None
    # Weight of the scaled cosine against scaled BM25 when retrieval mixes the two.
    reject_dense_weight: float = 0.5
    calibration: dict = field(default_factory=dict)
    # The OCR the documents were read with ("rapidocr", "openai <model>"); "" = none (OCR off, or older).
    ocr: str = ''
    # The dense index chosen by size ("flat" = exact, "IVF<n>,Flat nprobe=<p>" = approximate) and, when
    # approximate, its recall@10 against exact search measured at build.
    dense_index: str = 'flat'
    dense_recall_at_10: float | None = None
    built_at: str = ''
    build_seconds: float = 0.0
    # The hash of the folder's checksums.json ("xxh3_128"); "" = built before checksums were recorded.
    checksums: str = ''
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data, folder=None) -> 'Manifest':
        """Parse a manifest; another format says to rebuild, a field of the wrong type or value raises
        StoreDamagedError naming it."""
        if not isinstance(data, dict) or data.get('format_version') not in READABLE_FORMATS:
            version = data.get('format_version') if isinstance(data, dict) else None
            raise StoreError(f'the store has format {version}, this version reads {FORMAT_VERSION}: run '
                             '`python -m huixiangdou.service.feature_store --rebuild`')
        where = folder if folder is not None else 'the store'
        try:
            return _parse(cls, data, 'manifest.json')
        except ValueError as exc:
            raise StoreDamagedError(where, str(exc)) from exc


# Fields that must be positive; the others only need their type (and numbers to be finite).
_POSITIVE = {'dimension', 'chunk_size'}


def _parse(cls, data: dict, where: str):
    """`cls(**data)` after checking every field against its annotation (ValueError naming the field)."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f'{where} has unknown field(s) {", ".join(unknown)}')
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _check(value, hints[name], f'{where} field {name}')
        if name in _POSITIVE and kwargs[name] < 1:
            raise ValueError(f'{where} field {name} must be at least 1, got {value!r}')
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise ValueError(f'{where}: {exc}') from exc


def _check(value, tp, where: str):
    args = typing.get_args(tp)
    if type(None) in args:  # X | None
        if value is None:
            return None
        (tp,) = [a for a in args if a is not type(None)]
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f'{where} must be a number, got {value!r}')
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f'{where} must be an integer, got {value!r}')
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f'{where} must be a string, got {value!r}')
        return value
    if tp is dict or typing.get_origin(tp) is dict:
        if not isinstance(value, dict):
            raise ValueError(f'{where} must be an object, got {value!r}')
        if tp is dict:
            return value
        _, item = typing.get_args(tp)
        return {str(k): _parse(item, v, f'{where}[{k!r}]') if isinstance(v, dict) else _not_object(where, k, v)
                for k, v in value.items()}
    raise TypeError(f'{where}: unsupported type {tp}')  # pragma: no cover - a field added without a check


def _not_object(where: str, key, value):
    raise ValueError(f'{where}[{key!r}] must be an object, got {value!r}')
