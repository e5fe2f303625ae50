"""Screenshots in WeChat groups through wkteam: image pushes (80002) downloaded with getMsgImg from the
fake wkteam, read by the real worker (RapidOCR, sample store), and answered in the group."""
from __future__ import annotations

import asyncio
import itertools

import aiohttp
import pytest

from huixiangdou.config import GroupConfig, WorkerConfig
from huixiangdou.frontend.message_images import ImageLimits
from huixiangdou.frontend.wechat_wkteam import WechatWkteamServer
from huixiangdou.frontend.wkteam_api import WkteamApi
from huixiangdou.service.worker.pipeline import Worker
from tests.frontend.conftest import REFERENCE, ScriptedResponder, frontend_config
from tests.ocr_images import render_picture, render_text

WID = 'w-fake-instance'
BOT = 'wxid_bot'
GROUP = '43925126702@chatroom'
PORT_SCREENSHOT = ['$ python -m huixiangdou.service.llm_server_hybrid', 'Traceback (most recent call last):',
                   'OSError: [Errno 98] Address already in use']
_ids = itertools.count(1)


def push(message_type: str, content: str, sender: str = 'wxid_alice') -> tuple[str, dict]:
    """(msgId, body) of a group push as wkteam sends it."""
    n = next(_ids)
    data = {'fromGroup': GROUP, 'fromUser': sender, 'content': content, 'msgId': 7000 + n,
            'newMsgId': 6_000_000 + n, 'timestamp': 1_700_000_000 + n, 'toUser': BOT, 'wId': WID, 'self': False}
    return str(7000 + n), {'account': '13800000000', 'messageType': message_type, 'wcId': BOT, 'data': data}


def image_push(sender: str = 'wxid_alice') -> tuple[str, dict]:
    # The XML of an image push: what getMsgImg takes back (the CDN keys here are made up).
    xml = ('<?xml version="1.0"?>\n<msg><img aeskey="849481a442044ad3a3a8130c94d2b591" encryver="1" '
           'cdnthumblength="3310" cdnthumbheight="80" cdnthumbwidth="120" length="19842" '
           'cdnbigimgurl="3053020100044c304a0201" md5="39fec3c8e1ebad09ef4289b9e712a716" /></msg>')
    return push('80002', xml, sender)


@pytest.fixture(scope='module')
def screenshot() -> bytes:
    return render_text(PORT_SCREENSHOT)


@pytest.fixture
async def wkteam(fake_wkteam, tmp_path):
    servers = []

    async def start(responder, images: ImageLimits = ImageLimits(), **settings):
        frontend = frontend_config(type='wechat_wkteam', max_body_size=8192)
        config = frontend.wechat_wkteam
        config.base_url, config.wid, config.callback_host = fake_wkteam.base_url, WID, '127.0.0.1'
        config.groups = {'43925126702': GroupConfig(name='茴香豆微信群')}
        for key, value in settings.items():
            setattr(config if hasattr(config, key) else frontend, key, value)
        api = WkteamApi(config.base_url, api_token=fake_wkteam.token, retry_delay=0)
        server = WechatWkteamServer(frontend, responder, history_path=tmp_path / f'wkteam{len(servers)}.sqlite',
                                    api=api, port=0, images=images)
        await server.warm_up()
        await server.start()
        servers.append(server)
        return Driver(server)

    yield start
    for server in servers:
        await server.stop()


class Driver:
    def __init__(self, server: WechatWkteamServer):
        self.server = server
        self.url = f'http://127.0.0.1:{server.port}{server.config.callback_path}'

    async def push(self, body: dict) -> int:
        async with aiohttp.ClientSession() as http:
            async with http.post(self.url, json=body) as resp:
                return resp.status

    async def settle(self):
        # Downloads first (an image is queued once fetched), then the queue, then what it spawned.
        for _ in range(2):
            if self.server._tasks:
                await asyncio.gather(*list(self.server._tasks))
            await self.server.dispatcher.wait_idle()


@pytest.fixture
def worker(sample_feature_store):
    return Worker(WorkerConfig(answer_mode='extract'), sample_feature_store, None)


async def test_an_image_push_is_answered_from_its_text(wkteam, fake_wkteam, worker, screenshot):
    msg_id, body = image_push()
    fake_wkteam.images[msg_id] = screenshot
    driver = await wkteam(worker)
    assert await driver.push(body) == 200
    await driver.settle()
    # getMsgImg got the push's own msgId (a number, as wkteam sends it) and XML back.
    request = fake_wkteam.image_requests[0]
    assert request['wId'] == WID and request['msgId'] == int(msg_id) and request['content'] == body['data']['content']
    assert len(fake_wkteam.sent) == 1 and fake_wkteam.sent[0]['wcId'] == GROUP
    answer, references = fake_wkteam.sent[0]['content'].split('References:', 1)
    assert answer.startswith('「[图片]」')
    assert 'Address already in use' in references


async def test_question_then_screenshot_are_merged_into_one_answered_question(wkteam, fake_wkteam, worker, screenshot):
    # WeChat sends text and picture as two messages; the merge policy joins a sender's burst.
    msg_id, image = image_push()
    fake_wkteam.images[msg_id] = screenshot
    driver = await wkteam(worker, message_process_policy='merge', merge_seconds=0.3)
    await driver.push(push('80001', '这个报错怎么办？')[1])
    await driver.push(image)
    await asyncio.sleep(0.4)
    await driver.settle()
    await fake_wkteam.wait_until(lambda: fake_wkteam.sent, timeout=30)
    assert len(fake_wkteam.sent) == 1
    content = fake_wkteam.sent[0]['content']
    assert content.startswith('「这个报错怎么办？」') and 'Address already in use' in content


async def test_an_image_without_text_gets_no_answer(wkteam, fake_wkteam, worker):
    msg_id, body = image_push()
    fake_wkteam.images[msg_id] = render_picture()
    driver = await wkteam(worker)
    await driver.push(body)
    await driver.settle()
    assert len(fake_wkteam.image_requests) == 1 and fake_wkteam.sent == []


@pytest.mark.parametrize('failure', ['expired', 'gateway', 'file gone', 'hang'])
async def test_a_failed_download_drops_only_the_image(wkteam, fake_wkteam, screenshot, failure):
    responder = ScriptedResponder()
    msg_id, body = image_push()
    if failure != 'expired':
        fake_wkteam.images[msg_id] = screenshot
    if failure == 'gateway':
        fake_wkteam.fail_http('getMsgImg', 502, times=5)
    elif failure == 'file gone':
        fake_wkteam.fail_http('files', 404)
    elif failure == 'hang':
        fake_wkteam.hanging.add('files')
    driver = await wkteam(responder, ImageLimits(seconds=0.5))
    await driver.push(body)
    await driver.push(push('80001', '茴香豆怎么安装？')[1])
    await driver.settle()
    # The image goes unanswered (nothing to read); the text message is answered as always.
    assert responder.queries == ['茴香豆怎么安装？']
    assert len(fake_wkteam.sent) == 1 and REFERENCE in fake_wkteam.sent[0]['content']


async def test_an_image_over_the_size_limit_is_not_downloaded_whole(wkteam, fake_wkteam, screenshot):
    responder = ScriptedResponder()
    msg_id, body = image_push()
    fake_wkteam.images[msg_id] = screenshot
    driver = await wkteam(responder, ImageLimits(max_bytes=len(screenshot) // 2))
    await driver.push(body)
    await driver.settle()
    assert fake_wkteam.calls.get('files') == 1 and responder.seen == []


async def test_with_ocr_off_image_pushes_are_not_downloaded(wkteam, fake_wkteam, screenshot):
    responder = ScriptedResponder()
    msg_id, body = image_push()
    fake_wkteam.images[msg_id] = screenshot
    driver = await wkteam(responder, ImageLimits(enabled=False))
    await driver.push(body)
    await driver.settle()
    assert fake_wkteam.image_requests == [] and responder.seen == []
