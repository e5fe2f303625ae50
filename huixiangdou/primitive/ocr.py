"""Text from images, offline by default: the one OCR seam for documents and group messages.

    engine = make_ocr(config.ocr)                  # RapidOCR (PP-OCRv4 zh/en, inside its wheel), loaded lazily
    result = read_image(engine, data, config.ocr)  # bytes or a path; raises ImageRejected with the reason
    result.text                                    # lines top to bottom; '' for a picture without text

What the document parsers are handed is an ImageReader (image_reader.py): an engine, the limits and a cache.

`[ocr] engine = "openai"` swaps in a vision model behind an OpenAI-compatible chat API. Every image is
checked before it is decoded: file size, then pixel count from the header, so a decompression bomb
(a few KB on disk, gigapixels decoded) is refused without being expanded.
"""
from __future__ import annotations

import asyncio
import base64
import io
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from loguru import logger

if TYPE_CHECKING:  # a primitive: any object with OCRConfig's attributes will do
    from huixiangdou.config import OCRConfig


class OCRError(RuntimeError):
    """The OCR engine failed on an image (not the image's fault): the message says what."""


class ImageRejected(ValueError):
    """The image is corrupt, too large or not an image: the message is the reason to report."""


@dataclass
class OCRLine:
    text: str
    score: float
    box: tuple[float, float, float, float]  # left, top, right, bottom in pixels


@dataclass
class OCRResult:
    text: str
    lines: list[OCRLine] = field(default_factory=list)
    seconds: float = 0.0
    width: int = 0
    height: int = 0


class OCREngine(Protocol):
    name: str
    identity: str  # engine, version and settings: a cached text is reused only under the same identity

    def read(self, image) -> OCRResult:  # image: an RGB PIL.Image
        ...


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(name)
    except PackageNotFoundError:
        return 'unknown'


def image_bytes(data: bytes | str | Path, max_image_mb: float) -> bytes:
    """The image's bytes, refused when over max_image_mb (a file's size is checked before it is read)."""
    size = Path(data).stat().st_size if isinstance(data, (str, Path)) else len(data)
    if size > max_image_mb * 1024 * 1024:
        raise ImageRejected(f'image of {size / 1024 / 1024:.1f} MB is over max_image_mb = {max_image_mb}')
    return Path(data).read_bytes() if isinstance(data, (str, Path)) else data


def load_image(data: bytes | str | Path, max_image_mb: float, max_pixels: int):
    """Decode the first frame of an image as RGB, refusing what is too large before decoding it."""
    from PIL import Image, UnidentifiedImageError

    data = image_bytes(data, max_image_mb)
    if not data:
        raise ImageRejected('empty image')
    try:
        with warnings.catch_warnings():  # PIL's own warning: the pixel check below decides instead
            warnings.simplefilter('ignore', Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))  # reads the header only
        width, height = image.size
        if width * height > max_pixels:
            raise ImageRejected(f'image of {width}x{height} pixels is over max_pixels = {max_pixels} '
                                '(a decompression bomb, or a picture too large to read)')
        image.seek(0)  # the first frame of a GIF / animated WebP
        image.load()
        if image.mode in ('RGBA', 'LA', 'PA') or 'transparency' in image.info:
            # Diagrams are often exported on a transparent background: flattened as-is their black text
            # would sit on black. Paper white is what the author saw.
            rgba = image.convert('RGBA')
            flat = Image.new('RGBA', rgba.size, 'white')
            flat.alpha_composite(rgba)
            return flat.convert('RGB')
        return image.convert('RGB')
    except ImageRejected:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageRejected(f'decompression bomb: {exc}') from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageRejected(f'not a readable image: {exc}') from None


def _reading_order(lines: list[OCRLine]) -> str:
    """Lines top to bottom; boxes whose vertical middles fall in one row are joined left to right."""
    rows: list[list[OCRLine]] = []
    for line in sorted(lines, key=lambda ln: (ln.box[1] + ln.box[3]) / 2):
        middle = (line.box[1] + line.box[3]) / 2
        if rows:
            last = rows[-1][-1]
            if abs(middle - (last.box[1] + last.box[3]) / 2) < 0.5 * (last.box[3] - last.box[1]):
                rows[-1].append(line)
                continue
        rows.append([line])
    return '\n'.join(' '.join(ln.text for ln in sorted(row, key=lambda ln: ln.box[0])) for row in rows)


# RapidOCR scales an image up until its short side is 736 px before detecting text: a one-line chat
# screenshot of 640x120 became 3925x736 and took ~3 s. Padding to 736 instead (text kept at its size)
# reads the same text in a tenth of the time (bench/bench_ocr.py).
_DET_MIN_SIDE = 736


def _padded(image, side: int):
    """`image` on a canvas at least `side` px each way, filled with its corner colour (dark mode stays dark)."""
    width, height = image.size
    if width >= side and height >= side:
        return image
    from PIL import Image

    canvas = Image.new('RGB', (max(width, side), max(height, side)), image.getpixel((0, 0)))
    canvas.paste(image, (0, 0))
    return canvas


class RapidOCREngine:
    """PP-OCRv4 detection + recognition (Chinese and English) through onnxruntime, on the CPU."""
    name = 'rapidocr'

    def __init__(self, min_confidence: float = 0.5):
        self.min_confidence = min_confidence
        self.identity = f'rapidocr {_package_version("rapidocr-onnxruntime")} upright min_confidence={min_confidence}'
        self._model = None
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if self._model is None:
                started = time.perf_counter()
                try:
                    from rapidocr_onnxruntime import RapidOCR
                except ImportError as exc:
                    raise OCRError('rapidocr-onnxruntime is not installed: `pip install rapidocr-onnxruntime`, '
                                   'or turn OCR off ([feature_store] ocr = 0, [worker] ocr = 0)') from exc
                self._model = RapidOCR()
                logger.debug('RapidOCR loaded in {:.2f} s', time.perf_counter() - started)
        return self._model

    def read(self, image) -> OCRResult:
        import numpy as np

        model = self._load()
        started = time.perf_counter()
        try:
            # No angle classifier: screenshots and scans are upright, and it turned whole lines upside
            # down that were not (a lone "git clone https://…" line came back empty).
            found, _ = model(np.asarray(_padded(image, _DET_MIN_SIDE)), use_cls=False)
        except Exception as exc:  # boundary: onnxruntime raises its own types
            raise OCRError(f'RapidOCR failed: {type(exc).__name__}: {exc}') from exc
        lines = []
        for box, text, score in found or []:
            if float(score) < self.min_confidence or not str(text).strip():
                continue
            xs, ys = [p[0] for p in box], [p[1] for p in box]
            lines.append(OCRLine(str(text).strip(), float(score), (min(xs), min(ys), max(xs), max(ys))))
        return OCRResult(_reading_order(lines), lines, time.perf_counter() - started, *image.size)


_VISION_PROMPT = ('Transcribe all the text in this image exactly as written, line by line, in its original '
                  'language. Output only the text. If there is no text, output nothing.')


class VisionAPIEngine:
    """A vision model behind an OpenAI-compatible /chat/completions that accepts image_url parts."""
    name = 'openai'

    def __init__(self, base_url: str, model: str, api_key: str, timeout: float):
        from openai import OpenAI

        # The SDK retries 429 / 5xx with backoff (Retry-After honoured); timeout bounds each image.
        self.client = OpenAI(base_url=base_url, api_key=api_key or 'none', timeout=timeout, max_retries=2)
        self.model = model
        self.identity = f'openai {base_url} {model}'

    def read(self, image) -> OCRResult:
        import openai

        buffer = io.BytesIO()
        image.save(buffer, format='PNG')
        url = 'data:image/png;base64,' + base64.b64encode(buffer.getvalue()).decode('ascii')
        started = time.perf_counter()
        try:
            response = self.client.chat.completions.create(model=self.model, temperature=0, messages=[{
                'role': 'user', 'content': [{'type': 'text', 'text': _VISION_PROMPT},
                                            {'type': 'image_url', 'image_url': {'url': url}}]}])
        except openai.OpenAIError as exc:
            raise OCRError(f'vision model {self.model} failed: {exc}') from exc
        text = (response.choices[0].message.content or '').strip() if response.choices else ''
        return OCRResult(text, [], time.perf_counter() - started, *image.size)


_engines: dict[tuple, OCREngine] = {}
_engines_lock = threading.Lock()


def make_ocr(config: 'OCRConfig') -> OCREngine:
    """One engine per configuration, shared by the builder and the worker (the model loads once, lazily)."""
    key = (config.engine, config.base_url, config.model, config.resolved_api_key, config.timeout,
           config.min_confidence)
    with _engines_lock:
        if key not in _engines:
            if config.engine == 'openai':
                _engines[key] = VisionAPIEngine(config.base_url, config.model, config.resolved_api_key,
                                                config.timeout)
            else:
                _engines[key] = RapidOCREngine(config.min_confidence)
        return _engines[key]


def read_image(engine: OCREngine, data: bytes | str | Path, config: 'OCRConfig') -> OCRResult:
    """Check, decode and read one image. Raises ImageRejected (the image's fault) or OCRError."""
    image = load_image(data, config.max_image_mb, config.max_pixels)
    return engine.read(image)


async def read_image_async(engine: OCREngine, data: bytes, config: 'OCRConfig') -> OCRResult:
    """read_image off the event loop, bounded by [ocr] timeout. Raises ImageRejected, OCRError or TimeoutError."""
    return await asyncio.wait_for(asyncio.to_thread(read_image, engine, data, config), config.timeout)

