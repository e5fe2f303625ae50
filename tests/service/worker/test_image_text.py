"""Screenshots in group messages, end to end through the worker on the sample knowledge base: the real
RapidOCR engine reads images rendered here, the real store judges and retrieves, the LLM is the fake."""
from __future__ import annotations

import json
import struct
import zlib

import pytest

from huixiangdou.config import OCRConfig, WorkerConfig
from huixiangdou.service.worker.pipeline import Worker
from huixiangdou.service.worker.session import ErrorCode, Session
from tests.ocr_images import render_picture, render_text

# Errors as a terminal shows them; each is documented in repodir (常见问题.md, troubleshooting.md).
TOMLLIB_SCREENSHOT = ['$ python -m huixiangdou.main --standalone', 'Traceback (most recent call last):',
                      '  File "huixiangdou/config.py", line 12, in <module>', '    import tomllib',
                      "ModuleNotFoundError: No module named 'tomllib'"]
PORT_SCREENSHOT = ['$ python -m huixiangdou.service.llm_server_hybrid', 'Traceback (most recent call last):',
                   'OSError: [Errno 98] Address already in use']
ASKED = '这个报错怎么办？'


def png_bomb(width: int = 10000, height: int = 10000) -> bytes:
    """A PNG whose header claims 100 megapixels: a few hundred bytes on disk, gigabytes if decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
    header = struct.pack('>IIBBBBB', width, height, 1, 0, 0, 0, 0)
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', zlib.compress(b'\0' * 1024)) + \
        chunk(b'IEND', b'')


def chat_requests(fake):
    return [r for r in fake.requests if r.path == '/v1/chat/completions']


@pytest.fixture(scope='module')
def screenshots():
    return {'tomllib': render_text(TOMLLIB_SCREENSHOT), 'port': render_text(PORT_SCREENSHOT),
            'picture': render_picture()}


async def test_short_question_with_an_error_screenshot_is_answered_from_the_right_document(
        sample_feature_store, llm, fake_openai, screenshots, tmp_path):
    fake_openai.responder = lambda messages: '用 PYTHON=python3.11 bash install.sh 重新创建虚拟环境 [1]'
    log = tmp_path / 'work.txt'
    worker = Worker(WorkerConfig(), sample_feature_store, llm, log_path=log)
    session = await worker.run(Session(query=ASKED, images=[screenshots['tomllib']], group_id='g1',
                                       message_id='om_1'))
    assert session.code is ErrorCode.SUCCESS
    assert any('tomllib' in reference for reference in session.references)
    # The typed words stay the query; the screenshot's text is its own field and its own part of the prompt.
    assert session.query == ASKED
    assert 'ModuleNotFoundError' in session.image_text and 'tomllib' in session.image_text
    prompt = chat_requests(fake_openai)[-1].body['messages'][-1]['content']
    labelled = prompt.split('截图中的文字：', 1)
    assert len(labelled) == 2 and 'tomllib' in labelled[1].split('问题：', 1)[0]
    assert f'问题：{ASKED}' in prompt
    # The saved outcome says what the screenshot read, and never carries the image itself.
    record = json.loads(log.read_text(encoding='utf-8').splitlines()[-1])
    assert record['query'] == ASKED and 'tomllib' in record['image_text'] and record['images'] == 1
    assert len(log.read_bytes()) < 20_000


async def test_a_screenshot_alone_is_the_question(sample_feature_store, screenshots):
    worker = Worker(WorkerConfig(answer_mode='extract'), sample_feature_store, None)
    session = await worker.run(Session(query='', images=[screenshots['port']], group_id='g1'))
    assert session.code is ErrorCode.SUCCESS
    assert any('Address already in use' in reference for reference in session.references)
    assert session.reply


@pytest.mark.parametrize('typed', ['', '哈哈'])
async def test_a_picture_without_text_is_ignored(sample_feature_store, llm, fake_openai, screenshots, typed):
    session = await Worker(WorkerConfig(), sample_feature_store, llm).run(
        Session(query=typed, images=[screenshots['picture']]))
    assert not session.code.should_reply
    assert session.image_text == '' and session.debug['image_text']['read'][0]['chars'] == 0
    assert chat_requests(fake_openai) == []


async def test_ocr_off_leaves_images_unread(sample_feature_store, screenshots):
    worker = Worker(WorkerConfig(ocr=0, answer_mode='extract'), sample_feature_store, None)
    session = await worker.run(Session(query=ASKED, images=[screenshots['tomllib']]))
    assert session.code is ErrorCode.UNRELATED   # "这个报错怎么办？" alone names no error of the knowledge base
    assert session.image_text == '' and 'image_text' not in session.debug
    alone = await worker.run(Session(query='', images=[screenshots['tomllib']]))
    assert alone.code is ErrorCode.NOT_A_QUESTION


async def test_a_bomb_or_a_broken_image_is_skipped_and_the_text_still_answered(sample_feature_store):
    worker = Worker(WorkerConfig(answer_mode='extract'), sample_feature_store, None)
    question = "运行时报错 ModuleNotFoundError: No module named 'tomllib' 怎么办？"
    session = await worker.run(Session(query=question, images=[png_bomb(), b'not an image at all'],
                                       group_id='g1', message_id='om_2'))
    # Answered from the text: the fix under the FAQ entry that names the error (Python older than 3.11).
    assert session.code is ErrorCode.SUCCESS and '3.11' in session.reply, session.reply
    skipped = session.debug['image_text']['skipped']
    assert len(skipped) == 2 and 'max_pixels' in skipped[0] and 'not a readable image' in skipped[1]
    assert session.image_text == ''


async def test_an_image_not_read_in_time_is_skipped(sample_feature_store, screenshots):
    worker = Worker(WorkerConfig(answer_mode='extract'), sample_feature_store, None,
                    ocr=OCRConfig(timeout=0.001))
    session = await worker.run(Session(query=ASKED, images=[screenshots['tomllib']]))
    assert 'timeout' in session.debug['image_text']['skipped'][0]
    assert session.code is ErrorCode.UNRELATED   # handled as the text alone would be
