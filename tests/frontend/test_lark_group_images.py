"""Screenshots in Lark group messages: image and post messages through the fake Lark Open Platform, their
images fetched from its message-resource API and read by the real worker (RapidOCR, sample store)."""
from __future__ import annotations

import pytest

from huixiangdou.config import FrontendConfig, GroupConfig, LarkGroupConfig, WorkerConfig
from huixiangdou.frontend.lark_group import LarkGroupServer
from huixiangdou.frontend.lark_open_api import LarkOpenApi
from huixiangdou.frontend.message_images import ImageLimits
from huixiangdou.service.worker.pipeline import Worker
from tests.frontend.conftest import REFERENCE, ScriptedResponder
from tests.frontend.lark_events import ENCRYPT_KEY, TOKEN, Driver, message_event
from tests.ocr_images import render_picture, render_text

TOMLLIB_SCREENSHOT = ['$ python -m huixiangdou.main --standalone', 'Traceback (most recent call last):',
                      '    import tomllib', "ModuleNotFoundError: No module named 'tomllib'"]

# The pages of the sample knowledge base that document this error.
DOCUMENTED_IN = ('常见问题.md', 'troubleshooting.md', '安装.md')


@pytest.fixture(scope='module')
def screenshot() -> bytes:
    return render_text(TOMLLIB_SCREENSHOT)


@pytest.fixture
async def lark(fake_lark):
    """Starts LarkGroupServers on the fake with the given responder and image limits; stops them after."""
    servers = []

    async def start(responder, images: ImageLimits = ImageLimits()) -> Driver:
        group = LarkGroupConfig(app_id=fake_lark.app_id, app_secret=fake_lark.app_secret, encrypt_key=ENCRYPT_KEY,
                                verification_token=TOKEN, host='127.0.0.1', port=0, base_url=fake_lark.base_url,
                                groups={'oc_group1': GroupConfig(name='茴香豆用户群')})
        frontend = FrontendConfig(type='lark_group', max_body_size=8192, lark_group=group)
        api = LarkOpenApi(group.app_id, group.app_secret, group.base_url, retry_delay=0)
        server = LarkGroupServer(frontend, responder, api=api, images=images)
        await server.warm_up()
        await server.start()
        servers.append(server)
        return Driver(server)

    yield start
    for server in servers:
        await server.stop()


@pytest.fixture
def worker(sample_feature_store):
    # Quoting answers (no LLM): what is asserted is which document answers, not the wording.
    return Worker(WorkerConfig(answer_mode='extract'), sample_feature_store, None)


def image_message(message_id: str, image_key: str) -> dict:
    return message_event('', message_id=message_id, message_type='image', content={'image_key': image_key})


def post_message(message_id: str, text: str, image_key: str) -> dict:
    # A post as the Lark client sends "text + pasted screenshot": one paragraph of text, one with the image.
    content = {'title': '', 'content': [[{'tag': 'text', 'text': text}],
                                        [{'tag': 'img', 'image_key': image_key, 'width': 1080, 'height': 720}]]}
    return message_event('', message_id=message_id, message_type='post', content=content)


async def test_an_image_message_is_answered_from_its_text(lark, fake_lark, worker, screenshot):
    fake_lark.resources[('om_img', 'img_v2_tomllib')] = screenshot
    driver = await lark(worker)
    assert (await driver.send(image_message('om_img', 'img_v2_tomllib')))[0] == 200
    await driver.settle()
    assert fake_lark.resource_requests == [('om_img', 'img_v2_tomllib')]
    assert [r.message_id for r in fake_lark.replies] == ['om_img']
    answer, references = fake_lark.replies[0].text.split('References:', 1)
    assert '3.11' in answer and any(page in references for page in DOCUMENTED_IN), answer  # the fix, quoted


async def test_a_post_with_a_question_and_a_screenshot_is_answered(lark, fake_lark, worker, screenshot):
    fake_lark.resources[('om_post', 'img_v2_shot')] = screenshot
    driver = await lark(worker)
    await driver.send(post_message('om_post', '这个报错怎么办？', 'img_v2_shot'))
    await driver.settle()
    assert [r.message_id for r in fake_lark.replies] == ['om_post']
    answer, references = fake_lark.replies[0].text.split('References:', 1)
    # Quoted from a page that documents this error: the FAQ, troubleshooting, or the install page's
    # "Python 3.10 gives ModuleNotFoundError: No module named 'tomllib'".
    assert '3.11' in answer and any(page in references for page in DOCUMENTED_IN), answer  # the fix, quoted


async def test_an_image_without_text_gets_no_reply(lark, fake_lark, worker):
    fake_lark.resources[('om_meme', 'img_v2_meme')] = render_picture()
    driver = await lark(worker)
    await driver.send(image_message('om_meme', 'img_v2_meme'))
    await driver.settle()
    assert fake_lark.resource_requests == [('om_meme', 'img_v2_meme')]
    assert fake_lark.replies == []


@pytest.mark.parametrize('failure', ['not in message', 'server error', 'hang', 'too large'])
async def test_an_image_that_cannot_be_fetched_leaves_the_text_answered(lark, fake_lark, screenshot, failure):
    responder = ScriptedResponder()
    limits = ImageLimits(seconds=0.5)
    if failure == 'server error':
        fake_lark.resources[('om_q', 'img_v2_x')] = screenshot
        fake_lark.fail('resource', 500, times=5)
    elif failure == 'hang':
        fake_lark.resources[('om_q', 'img_v2_x')] = screenshot
        fake_lark.hanging.add('resource')
    elif failure == 'too large':
        fake_lark.resources[('om_q', 'img_v2_x')] = screenshot
        limits = ImageLimits(max_bytes=len(screenshot) - 1)
    driver = await lark(responder, limits)
    await driver.send(post_message('om_q', '茴香豆怎么安装？', 'img_v2_x'))
    await driver.settle()
    assert [r.message_id for r in fake_lark.replies] == ['om_q']
    assert REFERENCE in fake_lark.replies[0].text
    assert responder.seen[0].query == '茴香豆怎么安装？' and responder.seen[0].images == []


async def test_with_ocr_off_images_are_not_fetched(lark, fake_lark, screenshot):
    fake_lark.resources[('om_img', 'img_v2_a')] = fake_lark.resources[('om_post', 'img_v2_b')] = screenshot
    responder = ScriptedResponder()
    driver = await lark(responder, ImageLimits(enabled=False))
    await driver.send(image_message('om_img', 'img_v2_a'))
    await driver.send(post_message('om_post', '茴香豆怎么安装？', 'img_v2_b'))
    await driver.settle()
    assert fake_lark.resource_requests == []
    assert [r.message_id for r in fake_lark.replies] == ['om_post']
    assert [s.images for s in responder.seen] == [[]]


async def test_image_keys_of_a_post_are_read_in_order_and_capped(lark, fake_lark, screenshot):
    for n in range(5):
        fake_lark.resources[('om_many', f'img_{n}')] = screenshot
    responder = ScriptedResponder()
    driver = await lark(responder)
    content = {'title': '安装', 'content': [[{'tag': 'img', 'image_key': f'img_{n}'}] for n in range(5)]}
    await driver.send(message_event('', message_id='om_many', message_type='post', content=content))
    await driver.settle()
    assert fake_lark.resource_requests == [('om_many', f'img_{n}') for n in range(3)]
    assert len(responder.seen[0].images) == 3 and responder.seen[0].query == '安装'
