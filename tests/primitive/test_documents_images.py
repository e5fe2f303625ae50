"""Documents with text in images: image files, a scanned PDF page, pictures inside docx and pptx."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from huixiangdou.config import OCRConfig
from huixiangdou.primitive.documents import ParseError, parse_file
from huixiangdou.primitive.image_reader import ImageReader
from huixiangdou.primitive.ocr import make_ocr
from tests.ocr_images import cer, render_bomb, render_picture, render_text

ERROR_LINES = ['错误：向量库 workdir 不存在', 'Run: python -m huixiangdou.service.feature_store']
FIX_LINES = ['解决办法：把 repo_dir 指向文档目录']


@pytest.fixture(scope='module')
def ocr():
    """One RapidOCR model for the module; no disk cache, so every image here is really read."""
    return ImageReader(make_ocr(OCRConfig()), OCRConfig())


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def _small(lines: list[str], fmt: str = 'PNG') -> bytes:
    return render_text(lines, size=(760, 40 + 48 * len(lines)), font_size=26, fmt=fmt)


@pytest.mark.parametrize('name, fmt', [('error.png', 'PNG'), ('error.jpg', 'JPEG'), ('error.webp', 'WEBP')])
def test_image_file_becomes_a_document_cited_by_its_file(tmp_path, ocr, name, fmt):
    document = parse_file(_write(tmp_path, name, _small(ERROR_LINES, fmt)), f'shots/{name}', ocr=ocr)
    assert [s.anchor for s in document.sections] == ['']
    assert document.sections[0].text.count('\n') == 1
    assert cer('\n'.join(ERROR_LINES), document.text) < 0.05, document.text


def test_gif_is_read_from_its_first_frame(tmp_path, ocr):
    from PIL import Image

    frames = [Image.open(io.BytesIO(_small(lines))).convert('P') for lines in (FIX_LINES, ['第二帧 second frame'])]
    buffer = io.BytesIO()
    frames[0].save(buffer, format='GIF', save_all=True, append_images=frames[1:], duration=500)
    text = parse_file(_write(tmp_path, 'fix.gif', buffer.getvalue()), 'fix.gif', ocr=ocr).text
    assert cer(FIX_LINES[0], text) < 0.05 and '第二帧' not in text


def test_image_without_text_is_skipped_with_the_reason(tmp_path, ocr):
    with pytest.raises(ParseError, match='^no text in the image$'):
        parse_file(_write(tmp_path, 'photo.png', render_picture()), 'photo.png', ocr=ocr)


@pytest.mark.parametrize('data, reason', [
    (render_bomb(), 'decompression bomb'),
    (b'\x89PNG\r\n\x1a\n' + bytes(range(256)) * 4, 'not a readable image'),
], ids=['bomb', 'corrupt'])
def test_bad_image_file_is_skipped_with_the_reason(tmp_path, ocr, data, reason):
    with pytest.raises(ParseError, match=reason):
        parse_file(_write(tmp_path, 'bad.png', data), 'bad.png', ocr=ocr)


def test_image_file_with_ocr_off_is_skipped_with_the_reason(tmp_path):
    with pytest.raises(ParseError, match=r'^OCR is off \(\[feature_store\] ocr = 0\)$'):
        parse_file(_write(tmp_path, 'error.png', _small(ERROR_LINES)), 'error.png')


@pytest.fixture(scope='module')
def scanned_pdf(tmp_path_factory) -> Path:
    """Page 1 is a scan (only an image of text, no text layer); page 2 has a text layer."""
    import pymupdf

    doc = pymupdf.open()
    page = doc.new_page(width=420, height=298)  # A6 landscape, in points (a full A4 page is benched)
    scan = render_text(ERROR_LINES + FIX_LINES, size=(875, 620), font_size=26)  # A6 at 150 DPI
    page.insert_image(page.rect, stream=scan)
    doc.new_page().insert_text((72, 72), 'Page two has a text layer.')
    path = tmp_path_factory.mktemp('pdf') / 'scan.pdf'
    doc.save(path)
    return path


def test_scanned_pdf_page_is_read_and_keeps_its_page(scanned_pdf, ocr):
    document = parse_file(scanned_pdf, 'manual/scan.pdf', ocr=ocr)
    assert [s.anchor for s in document.sections] == ['page 1', 'page 2']
    assert cer('\n'.join(ERROR_LINES + FIX_LINES), document.sections[0].text) < 0.05, document.sections[0].text
    assert document.sections[1].text == 'Page two has a text layer.'


def test_scanned_pdf_page_is_left_out_when_ocr_is_off(scanned_pdf):
    document = parse_file(scanned_pdf, 'manual/scan.pdf')
    assert [s.anchor for s in document.sections] == ['page 2']


def _docx_with_picture(path: Path, picture: bytes) -> Path:
    import docx

    document = docx.Document()
    document.add_heading('安装', level=1)
    document.add_paragraph('先安装依赖。')
    document.add_heading('排错', level=1)
    document.add_paragraph('常见报错的截图：')
    document.add_picture(io.BytesIO(picture))
    document.add_heading('升级', level=1)
    document.add_paragraph('升级后重建特征库。')
    document.save(path)
    return path


def _replace_media(path: Path, data: bytes) -> None:
    """Overwrite every picture inside an Office file, as a damaged file would carry them."""
    with zipfile.ZipFile(path) as source:
        items = [(info, source.read(info)) for info in source.infolist()]
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as target:
        for info, content in items:
            target.writestr(info, data if '/media/' in info.filename else content)


def test_docx_picture_text_joins_the_section_it_sits_in(tmp_path, ocr):
    path = _docx_with_picture(tmp_path / 'guide.docx', _small(ERROR_LINES))
    sections = {s.anchor: s.text for s in parse_file(path, 'guide.docx', ocr=ocr).sections}
    assert set(sections) == {'安装', '排错', '升级'}
    assert '常见报错的截图' in sections['排错']
    picture = sections['排错'].split('常见报错的截图：', 1)[1]
    assert cer('\n'.join(ERROR_LINES), picture) < 0.05, sections['排错']
    assert 'workdir' not in sections['安装'] + sections['升级']


def test_docx_with_a_broken_picture_keeps_its_text(tmp_path, ocr):
    path = _docx_with_picture(tmp_path / 'guide.docx', _small(ERROR_LINES))
    _replace_media(path, b'\x89PNG\r\n\x1a\n broken')
    sections = {s.anchor: s.text for s in parse_file(path, 'guide.docx', ocr=ocr).sections}
    assert sections['排错'].strip() == '排错\n常见报错的截图：'
    assert sections['升级'].endswith('升级后重建特征库。')


def _pptx_with_picture(path: Path, picture: bytes) -> Path:
    import pptx
    from pptx.util import Inches

    deck = pptx.Presentation()
    first = deck.slides.add_slide(deck.slide_layouts[5])
    first.shapes.title.text = 'Architecture'
    second = deck.slides.add_slide(deck.slide_layouts[5])
    second.shapes.title.text = 'Troubleshooting'
    second.shapes.add_picture(io.BytesIO(picture), Inches(0.5), Inches(2), width=Inches(9))
    deck.save(path)
    return path


def test_pptx_picture_text_joins_its_slide(tmp_path, ocr):
    path = _pptx_with_picture(tmp_path / 'deck.pptx', _small(FIX_LINES))
    sections = {s.anchor: s.text for s in parse_file(path, 'deck.pptx', ocr=ocr).sections}
    assert sections['slide 1'] == 'Architecture'
    assert sections['slide 2'].startswith('Troubleshooting\n')
    assert cer(FIX_LINES[0], sections['slide 2'].split('\n', 1)[1]) < 0.05, sections['slide 2']


def test_pptx_with_a_broken_picture_keeps_its_text(tmp_path, ocr):
    path = _pptx_with_picture(tmp_path / 'deck.pptx', _small(FIX_LINES))
    _replace_media(path, b'GIF89a broken')
    sections = {s.anchor: s.text for s in parse_file(path, 'deck.pptx', ocr=ocr).sections}
    assert sections == {'slide 1': 'Architecture', 'slide 2': 'Troubleshooting'}


async def test_vision_model_engine_reads_image_files(tmp_path, fake_openai):
    """[ocr] engine = "openai": the image goes to the vision model as a data URL; its transcription is the text."""
    import asyncio

    from huixiangdou.primitive.ocr import VisionAPIEngine

    def transcribe(messages: list[dict]) -> str:
        parts = messages[-1]['content']
        image = next(p for p in parts if p['type'] == 'image_url')
        assert image['image_url']['url'].startswith('data:image/png;base64,')
        return '\n'.join(ERROR_LINES)

    fake_openai.responder = transcribe
    config = OCRConfig(engine='openai', base_url=fake_openai.base_url, model='vision', api_key=fake_openai.api_key)
    reader = ImageReader(VisionAPIEngine(config.base_url, config.model, config.api_key, timeout=5), config)
    path = _write(tmp_path, 'error.jpg', _small(ERROR_LINES, 'JPEG'))
    document = await asyncio.to_thread(parse_file, path, 'error.jpg', ocr=reader)
    assert document.text == '\n'.join(ERROR_LINES)
    fake_openai.fail('400', times=1)  # the model refuses: skipped with the reason, read again next build
    other = _write(tmp_path, 'other.png', _small(FIX_LINES))
    with pytest.raises(ParseError, match='^OCR failed: vision model vision failed'):
        await asyncio.to_thread(parse_file, other, 'other.png', ocr=reader)
