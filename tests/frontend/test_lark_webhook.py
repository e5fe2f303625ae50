"""The `lark` custom-bot frontend against the fake webhook: signing, retries, rich-text answers."""
from __future__ import annotations

import asyncio
import io

import pytest

from huixiangdou.frontend.errors import LarkApiError
from huixiangdou.frontend.lark import LarkWebhookSender, run_lark_webhook, stdin_questions
from huixiangdou.frontend.lark_open_api import LarkOpenApi
from tests.frontend.conftest import REFERENCE, frontend_config


async def questions(*items):
    for item in items:
        yield item


def post_text(body: dict) -> str:
    lines = body['content']['post']['zh_cn']['content']
    return '\n'.join(''.join(el['text'] for el in line) for line in lines)


async def test_signed_post_is_accepted_by_a_bot_with_a_secret(fake_lark):
    fake_lark.webhook_secret = 'bot-secret'
    sender = LarkWebhookSender(fake_lark.webhook_url, secret='bot-secret', retry_delay=0)
    try:
        await sender.send('用 pip 安装', [REFERENCE], question='怎么安装？')
    finally:
        await sender.close()
    body = fake_lark.webhook_posts[0]
    assert body['msg_type'] == 'post'
    assert post_text(body).splitlines() == ['> 怎么安装？', '用 pip 安装', '参考资料 References:', f'[1] {REFERENCE}']


async def test_wrong_secret_fails_once_with_the_lark_reason(fake_lark):
    fake_lark.webhook_secret = 'bot-secret'
    sender = LarkWebhookSender(fake_lark.webhook_url, secret='not-it', retry_delay=0, max_retries=3)
    with pytest.raises(LarkApiError) as info:
        await sender.send('reply')
    await sender.close()
    assert info.value.code == 19021
    assert 'sign match fail' in info.value.msg
    assert fake_lark.webhook_posts == []


async def test_frequency_limit_and_server_errors_are_retried(fake_lark):
    fake_lark.fail('webhook', status=200, body={'code': 11232, 'msg': 'frequency limited'})
    fake_lark.fail('webhook', status=502, body={'code': 1, 'msg': 'bad gateway'})
    sender = LarkWebhookSender(fake_lark.webhook_url, retry_delay=0, max_retries=3)
    await sender.send('reply')
    await sender.close()
    assert len(fake_lark.webhook_posts) == 1


async def test_gives_up_after_max_retries(fake_lark):
    fake_lark.fail('webhook', status=500, times=5)
    sender = LarkWebhookSender(fake_lark.webhook_url, retry_delay=0, max_retries=2)
    with pytest.raises(LarkApiError):
        await sender.send('reply')
    await sender.close()
    assert fake_lark.failures['webhook'] != []  # 3 of the 5 failures used: 1 try + 2 retries
    assert len(fake_lark.failures['webhook']) == 2


def test_rejects_a_webhook_url_that_is_not_http():
    with pytest.raises(ValueError, match='custom bot'):
        LarkWebhookSender('open.feishu.cn/hook/abc')


async def test_run_posts_answers_only_for_on_topic_questions(fake_lark, responder):
    config = frontend_config(type='lark', webhook_url=fake_lark.webhook_url)
    sender = LarkWebhookSender(config.webhook_url, retry_delay=0)
    await run_lark_webhook(config, responder, questions('how to install?', 'nice weather', '安装失败怎么办'),
                           sender=sender)
    assert responder.queries == ['how to install?', 'nice weather', '安装失败怎么办']
    texts = [post_text(b) for b in fake_lark.webhook_posts]
    assert len(texts) == 2
    assert 'Answer to: how to install?' in texts[0] and REFERENCE in texts[0]
    assert '> 安装失败怎么办' in texts[1]


async def test_run_keeps_going_when_lark_refuses_one_post(fake_lark, responder):
    fake_lark.fail('webhook', status=200, body={'code': 19024, 'msg': 'Key Words Not Found'})
    config = frontend_config(type='lark', webhook_url=fake_lark.webhook_url)
    await run_lark_webhook(config, responder, questions('install 1', 'install 2'),
                           sender=LarkWebhookSender(config.webhook_url, retry_delay=0))
    assert [post_text(b).splitlines()[0] for b in fake_lark.webhook_posts] == ['> install 2']


async def test_stdin_questions_skips_blank_lines(monkeypatch):
    monkeypatch.setattr('sys.stdin', io.StringIO('茴香豆怎么安装？\n\n  \nhow to install?\n'))
    assert [q async for q in stdin_questions()] == ['茴香豆怎么安装？', 'how to install?']


@pytest.mark.parametrize('status, retry_after', [(429, '0.2'), (503, None)], ids=['429-retry-after', '503'])
async def test_transient_failures_are_retried_with_the_shared_policy(fake_lark, status, retry_after):
    fake_lark.fail('webhook', status=status, times=2, retry_after=retry_after)
    sender = LarkWebhookSender(fake_lark.webhook_url, retry_delay=0.01, max_retries=2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        await sender.send('reply')
    finally:
        await sender.close()
    assert len(fake_lark.webhook_posts) == 1 and fake_lark.failures['webhook'] == []
    if retry_after:
        assert loop.time() - started >= 0.4


async def test_a_connection_dropped_after_the_post_is_not_retried_so_nothing_posts_twice(fake_lark):
    fake_lark.fail('webhook', status=0, times=2)
    sender = LarkWebhookSender(fake_lark.webhook_url, retry_delay=0.01, max_retries=2)
    with pytest.raises(LarkApiError) as info:
        await sender.send('reply')
    await sender.close()
    assert info.value.code == 'network'
    assert len(fake_lark.failures['webhook']) == 1  # one try only


async def test_a_400_is_not_retried(fake_lark):
    fake_lark.fail('webhook', status=400, body={'code': 9499, 'msg': 'Bad Request'}, times=3)
    sender = LarkWebhookSender(fake_lark.webhook_url, retry_delay=0.01, max_retries=3)
    with pytest.raises(LarkApiError) as info:
        await sender.send('reply')
    await sender.close()
    assert info.value.code == 9499
    assert len(fake_lark.failures['webhook']) == 2  # one try only


async def test_open_api_reply_retries_transient_failures_and_not_a_400(fake_lark):
    """LarkOpenApi (the group bot's client) under the same policy: 503 and a drop retried, 400 not."""
    api = LarkOpenApi(fake_lark.app_id, fake_lark.app_secret, fake_lark.base_url, retry_delay=0.01,
                      max_retries=2)
    post = {'zh_cn': {'title': '', 'content': [[{'tag': 'text', 'text': 'hi'}]]}}
    try:
        fake_lark.fail('token', status=503)
        fake_lark.fail('reply', status=503)
        fake_lark.fail('reply', status=0)
        assert await api.reply('om_1', post) == 'om_reply_1'
        assert fake_lark.failures['token'] == [] and fake_lark.failures['reply'] == []
        fake_lark.fail('reply', status=400, body={'code': 230001, 'msg': 'invalid'}, times=2)
        with pytest.raises(LarkApiError) as info:
            await api.reply('om_2', post)
    finally:
        await api.close()
    assert info.value.code == 230001 and len(fake_lark.failures['reply']) == 1
