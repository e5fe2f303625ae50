"""Group replies with the real worker: every [n] in the answer names a reference listed under it as
"[n] …", and every listed reference is cited (Lark group app; the wkteam reply text)."""
from __future__ import annotations

import re

import aiohttp

from huixiangdou.config import GroupConfig, LarkGroupConfig, WorkerConfig
from huixiangdou.frontend.lark_group import LarkGroupServer
from huixiangdou.frontend.lark_open_api import LarkOpenApi
from huixiangdou.frontend.wechat_wkteam import format_reply
from huixiangdou.service.worker.pipeline import Worker
from huixiangdou.service.worker.session import ErrorCode, Session
from tests.frontend.conftest import frontend_config
from tests.frontend.lark_events import message_event, signed_request

KEY = 'citation-key'
QUESTION = '飞书群应用的 encrypt_key 加密密钥应该在 config.ini 哪里配置？'
# The second passage first, then both, then one the prompt never had.
ANSWER = '在 [frontend.lark_group] 段填写 encrypt_key [2]，重启服务后生效 [1][2]，详见 [5]。'
HEADING = '参考资料 References:'
LISTED = re.compile(r'^\[(\d+)\] (.+)$')


def check_reply_text(text: str) -> tuple[str, dict[int, str]]:
    """The answer part and the listed references by number; fails unless they match exactly."""
    answer, _, listing = text.partition(HEADING)
    listed = {}
    for line in listing.strip().splitlines():
        match = LISTED.match(line)
        assert match, f'reference line {line!r} does not carry its number'
        listed[int(match.group(1))] = match.group(2)
    cited = {int(n) for n in re.findall(r'\[(\d+)\]', answer)}
    assert cited and cited == set(listed) == set(range(1, len(listed) + 1)), text
    return answer, listed


async def test_a_lark_group_reply_lists_its_references_by_the_numbers_it_cites(fake_lark, fake_openai, llm,
                                                                               sample_feature_store):
    fake_openai.responder = lambda m: ANSWER
    group = LarkGroupConfig(app_id=fake_lark.app_id, app_secret=fake_lark.app_secret, encrypt_key=KEY,
                            verification_token='vtoken', host='127.0.0.1', port=0, base_url=fake_lark.base_url,
                            groups={'oc_group1': GroupConfig(name='茴香豆用户群')})
    worker = Worker(WorkerConfig(), sample_feature_store, llm)
    server = LarkGroupServer(frontend_config(type='lark_group', lark_group=group), worker,
                             api=LarkOpenApi(group.app_id, group.app_secret, group.base_url, retry_delay=0))
    await server.warm_up()
    await server.start()
    try:
        body, headers = signed_request(message_event(QUESTION, message_id='om_q', token='vtoken'), KEY)
        async with aiohttp.ClientSession() as http:
            async with http.post(f'http://127.0.0.1:{server.port}{group.path}', data=body, headers=headers) as r:
                assert r.status == 200
        await fake_lark.wait_until(lambda: fake_lark.replies, timeout=60)
        await server.dispatcher.wait_idle()
    finally:
        await server.stop()
    answer, listed = check_reply_text(fake_lark.replies[0].text)
    assert '[5]' not in answer and '[frontend.lark_group]' in answer


async def test_a_wkteam_reply_lists_its_references_by_the_numbers_it_cites(fake_openai, llm, sample_feature_store):
    fake_openai.responder = lambda m: ANSWER
    session = await Worker(WorkerConfig(), sample_feature_store, llm).run(Session(query=QUESTION, group_id='g'))
    assert session.code is ErrorCode.SUCCESS, session.debug
    _, listed = check_reply_text(format_reply(QUESTION, session.reply, session.references))
    assert list(listed.values()) == session.references
    # The source cited first is [1]: the prompt's second passage.
    assert session.references[0] == session.passages[1].reference or session.passages[0].reference == \
        session.passages[1].reference
