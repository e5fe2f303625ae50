"""Reads images for the document parsers: one OCR engine, the image limits, and a cache of text by image content.

The parsers are handed an ImageReader (or None when OCR is off); it does not choose the engine
(ocr.make_ocr does) or know where images come from.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from loguru import logger

from huixiangdou.primitive.ocr import OCREngine, OCRResult, image_bytes, load_image

if TYPE_CHECKING:  # a primitive: any object with OCRConfig's attributes will do
    from huixiangdou.config import OCRConfig


@dataclass
class OCRStats:
    """What an ImageReader did: images the engine read, images answered from the cache, engine seconds."""
    images: int = 0
    cached: int = 0
    seconds: float = 0.0


class ImageReader:
    """The OCR handed to the document parsers: an engine, the image limits, and a cache by image content.

    With `cache_dir` the text of every image read is kept on disk under the hash of the image and the
    engine's identity, so rebuilding the store, or a changed document whose pictures did not change,
    costs no OCR again. The cache holds text only (a few KB an image).

        reader = ImageReader(make_ocr(config.ocr), config.ocr, cache_dir=Path('workdir/ocr_cache'))
        reader.read(Path('repodir/diagram.png')).text   # raises ImageRejected or OCRError
        reader.read_decoded(page_image).text             # an image rendered here (a scanned PDF page)
        reader.stats                                     # OCRStats(images=2, cached=0, seconds=1.3)
    """

    def __init__(self, engine: OCREngine, config: 'OCRConfig', cache_dir: Path | None = None):
        self.engine = engine
        self.max_image_mb = config.max_image_mb
        self.max_pixels = int(config.max_pixels)
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.stats = OCRStats()
        self._used: set[str] = set()
        self._memory: dict[str, str] = {}  # the same picture twice in one build (a logo on every slide)

    def read(self, data: bytes | str | Path) -> OCRResult:
        """Check and decode an image file's bytes (or path), then OCR it unless its text is cached."""
        data = image_bytes(data, self.max_image_mb)
        image = load_image(data, self.max_image_mb, self.max_pixels)
        return self._read(image, hashlib.sha256(data))

    def read_decoded(self, image) -> OCRResult:
        """OCR an RGB PIL image made here (not from untrusted bytes), unless its text is cached."""
        digest = hashlib.sha256(f'{image.mode} {image.size}'.encode())
        digest.update(image.tobytes())
        return self._read(image, digest)

    def _read(self, image, digest) -> OCRResult:
        digest.update(getattr(self.engine, 'identity', self.engine.name).encode())
        key = digest.hexdigest()
        self._used.add(key)
        text = self._cached(key)
        if text is not None:
            self.stats.cached += 1
            return OCRResult(text, [], 0.0, *image.size)
        result = self.engine.read(image)
        self.stats.images += 1
        self.stats.seconds += result.seconds
        self._store(key, result.text)
        return result

    def _path(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f'{key}.json'

    def _cached(self, key: str) -> str | None:
        if key in self._memory:
            return self._memory[key]
        if self.cache_dir is None:
            return None
        try:
            return json.loads(self._path(key).read_text(encoding='utf-8'))['text']
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:  # a damaged entry is read again
            logger.warning('OCR cache entry {} unreadable ({}); reading the image again', key[:12], exc)
            return None

    def _store(self, key: str, text: str) -> None:
        self._memory[key] = text
        if self.cache_dir is None:
            return
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f'.{os.getpid()}.partial')
            partial.write_text(json.dumps({'text': text}, ensure_ascii=False), encoding='utf-8')
            os.replace(partial, path)  # a reader never sees half an entry
        except OSError as exc:  # the cache only saves time; the text is still used
            logger.warning('could not write the OCR cache in {}: {}', self.cache_dir, exc)

    @property
    def keys_read(self) -> frozenset[str]:
        """Cache keys of the images read (or found cached) since this reader was made."""
        return frozenset(self._used)

    def absorb(self, stats: OCRStats, keys: frozenset[str]) -> None:
        """Count in what a reader in another process (a parse worker) did, so stats and prune cover it."""
        self.stats.images += stats.images
        self.stats.cached += stats.cached
        self.stats.seconds += stats.seconds
        self._used.update(keys)

    def prune(self) -> int:
        """Delete cached texts of images not read since this reader was made; call after a build that read
        every file (nothing reused), so the cache holds what the documents contain now. Returns the count."""
        if self.cache_dir is None or not self.cache_dir.is_dir():
            return 0
        removed = 0
        for path in self.cache_dir.glob('*/*'):
            if path.stem not in self._used:
                path.unlink(missing_ok=True)
                removed += 1
        return removed
