"""Images rendered by the tests themselves: screenshots of text in a CJK font, for OCR tests and benches.

    png = render_text(['ModuleNotFoundError: No module named faiss', '运行时报错：找不到模块'])
    cer(expected, got)   # character error rate, whitespace ignored
"""
from __future__ import annotations

import io
from pathlib import Path

# Debian's fonts-noto-cjk (install.sh --test installs it): one font for Chinese, English and code.
CJK_FONT = Path('/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc')


def font(size: int = 28):
    from PIL import ImageFont

    if not CJK_FONT.exists():
        raise RuntimeError(f'{CJK_FONT} is missing: run `bash install.sh --test` (installs fonts-noto-cjk)')
    return ImageFont.truetype(str(CJK_FONT), size)


def render_text(lines: list[str], size: tuple[int, int] = (1080, 720), font_size: int = 28,
                fmt: str = 'PNG', background: str = 'white', color: str = 'black') -> bytes:
    """Lines of text drawn top-left to bottom like a terminal or a chat screenshot; the image's bytes."""
    from PIL import Image, ImageDraw

    image = Image.new('RGB', size, background)
    draw = ImageDraw.Draw(image)
    face = font(font_size)
    for i, line in enumerate(lines):
        draw.text((32, 32 + i * int(font_size * 1.7)), line, fill=color, font=face)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def render_picture(size: tuple[int, int] = (640, 480), fmt: str = 'PNG') -> bytes:
    """A picture without text (shapes and a gradient, like a meme's background)."""
    from PIL import Image, ImageDraw

    image = Image.new('RGB', size, (250, 220, 120))
    draw = ImageDraw.Draw(image)
    for i in range(0, size[0], 40):
        draw.ellipse((i, size[1] // 3, i + 60, size[1] // 3 + 60), fill=(200, 80 + i % 150, 60))
    draw.rectangle((size[0] // 4, size[1] // 2, size[0] // 2, size[1] - 40), fill=(90, 140, 220))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def cer(expected: str, got: str) -> float:
    """Character error rate: edit distance over the expected length, whitespace ignored (OCR engines
    differ on spaces between words, which no reader of the text notices)."""
    a = ''.join(expected.split())
    b = ''.join(got.split())
    return _levenshtein(a, b) / max(1, len(a))


def render_bomb(width: int = 10_000, height: int = 10_000) -> bytes:
    """A decompression bomb: a PNG of ~100 KB on disk that decodes to width x height pixels (100 MP)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))

    packer = zlib.compressobj(9)
    row = b'\x00' * (width + 1)  # filter byte + one grey byte a pixel
    body = b''.join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0)
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', body) + chunk(b'IEND', b'')
