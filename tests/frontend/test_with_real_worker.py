"""The Lark group app with the real worker: sample feature store, real LLM server app, fake upstream.

An off-topic message gets no reply; an on-topic one gets a threaded reply that lists its references.
"""
from __future__ import annotations

import aiohttp

from huixiangdou.config import GroupConfig, LarkGroupConfig, WorkerConfig
from huixiangdou.frontend.lark_group import LarkGroupServer
from huixiangdou.frontend.lark_open_api import LarkOpenApi
from huixiangdou.service.worker.pipeline import Worker
from tests.frontend.conftest import frontend_config
from tests.frontend.lark_events import message_event, signed_request

KEY = 'real-worker-key'


async def test_lark_group_answers_on_topic_and_ignores_chatter(fake_lark, fake_openai, llm, sample_feature_store):
    fake_openai.responder = lambda m: '在 [frontend.lark_group] 段填写 encrypt_key 和 verification_token [1]'
    group = LarkGroupConfig(app_id=fake_lark.app_id, app_secret=fake_lark.app_secret, encrypt_key=KEY,
                            verification_token='vtoken', host='127.0.0.1', port=0, base_url=fake_lark.base_url,
                            groups={'oc_group1': GroupConfig(name='茴香豆用户群')})
    config = frontend_config(type='lark_group', lark_group=group)
    worker = Worker(WorkerConfig(), sample_feature_store, llm)
    server = LarkGroupServer(config, worker, api=LarkOpenApi(group.app_id, group.app_secret, group.base_url,
                                                              retry_delay=0))
    await server.warm_up()
    await server.start()
    try:
        url = f'http://127.0.0.1:{server.port}{group.path}'
        async with aiohttp.ClientSession() as http:
            for text, mid in (('周末有人一起去爬山吗？天气预报说不下雨', 'om_chat'),
                              ('飞书群应用的 encrypt_key 加密密钥应该在 config.ini 哪里配置？', 'om_question')):
                body, headers = signed_request(message_event(text, message_id=mid, token='vtoken'), KEY)
                async with http.post(url, data=body, headers=headers) as response:
                    assert response.status == 200
        await fake_lark.wait_until(lambda: len(fake_lark.replies) >= 1, timeout=60)
        await server.dispatcher.wait_idle()
    finally:
        await server.stop()
    assert [r.message_id for r in fake_lark.replies] == ['om_question']
    reply = fake_lark.replies[0].text
    assert 'encrypt_key' in reply
    assert '飞书' in reply or 'lark' in reply.lower()   # the reference list names the Lark doc
