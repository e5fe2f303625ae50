"""The OCR primitive on images the tests render: error screenshots read back, bad images refused, the cache."""
from __future__ import annotations

import pytest

from huixiangdou.config import OCRConfig
from huixiangdou.primitive.image_reader import ImageReader
from huixiangdou.primitive.ocr import ImageRejected, load_image, make_ocr, read_image
from tests.ocr_images import cer, render_bomb, render_picture, render_text

CONFIG = OCRConfig()

ZH_ERROR = ['部署时报错：', '错误：无法连接到向量数据库，请检查 workdir 路径是否存在', '提示：先运行 python -m huixiangdou.service.feature_store',
            '飞书回调地址校验失败，返回码 403']
EN_ERROR = ['Traceback (most recent call last):', '  File "huixiangdou/main.py", line 42, in <module>',
            "ModuleNotFoundError: No module named 'faiss'", 'ERROR: port 8888 is already in use']


@pytest.fixture(scope='module')
def engine():
    """One RapidOCR model for the module (make_ocr shares it with every other user of the same config)."""
    return make_ocr(CONFIG)


@pytest.mark.parametrize('lines', [ZH_ERROR, EN_ERROR], ids=['chinese', 'english'])
def test_error_screenshot_text_comes_back(engine, lines):
    result = read_image(engine, render_text(lines, font_size=26), CONFIG)
    assert cer('\n'.join(lines), result.text) < 0.05, result.text
    assert result.text.count('\n') == len(lines) - 1  # one line of text per line on screen, in order
    assert (result.width, result.height) == (1080, 720)


def test_picture_without_text_reads_empty(engine):
    assert read_image(engine, render_picture(), CONFIG).text == ''


def test_decompression_bomb_is_refused_before_it_is_decoded():
    bomb = render_bomb()  # ~100 KB that would decode to 100 megapixels
    assert len(bomb) < 200_000
    with pytest.raises(ImageRejected, match='10000x10000 pixels is over max_pixels .*decompression bomb'):
        load_image(bomb, CONFIG.max_image_mb, CONFIG.max_pixels)


@pytest.mark.parametrize('data, reason', [
    (b'\x89PNG\r\n\x1a\n' + b'\x00' * 64, 'not a readable image'),
    (b'', 'empty image'),
    (b'GIF89a' + b'\x00' * (2 * 1024 * 1024), 'over max_image_mb = 1'),
], ids=['corrupt', 'empty', 'too-many-mb'])
def test_bad_images_are_refused_with_the_reason(data, reason):
    with pytest.raises(ImageRejected, match=reason):
        load_image(data, 1, CONFIG.max_pixels)


def test_transparent_diagram_is_read_on_white(engine):
    from io import BytesIO

    from PIL import Image
    opaque = Image.open(BytesIO(render_text(['Service A calls Service B'], size=(640, 120), font_size=30)))
    grey = opaque.convert('L')
    # Black text on a fully transparent background, as diagram tools export it.
    rgba = Image.new('RGBA', opaque.size, (0, 0, 0, 0))
    rgba.putalpha(grey.point(lambda v: 255 - v))
    buffer = BytesIO()
    rgba.save(buffer, format='PNG')
    assert cer('Service A calls Service B', read_image(engine, buffer.getvalue(), CONFIG).text) < 0.05


def test_reader_cache_answers_the_same_image_without_ocr(engine, tmp_path):
    png = render_text(['max_file_size_mb = 50'], size=(480, 100), font_size=28)
    first = ImageReader(engine, CONFIG, cache_dir=tmp_path)
    text = first.read(png).text
    assert (first.stats.images, first.stats.cached) == (1, 0)
    second = ImageReader(engine, CONFIG, cache_dir=tmp_path)  # a later build, a new process
    assert second.read(png).text == text
    assert (second.stats.images, second.stats.cached) == (1 - 1, 1)
    # Only the images a build read stay cached after prune.
    other = render_text(['port = 8080'], size=(480, 100), font_size=28)
    third = ImageReader(engine, CONFIG, cache_dir=tmp_path)
    third.read(other)
    assert third.prune() == 1
    assert ImageReader(engine, CONFIG, cache_dir=tmp_path).read(other).text == third.read(other).text
