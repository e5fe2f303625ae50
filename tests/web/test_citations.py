"""Every output path numbers references exactly as the answer cites them: the console's Try it (streamed
and final), /v1 (plain and streamed), the saved outcome and main's CLI line. [n] is references[n - 1]."""
from __future__ import annotations

import json
import re

import aiohttp
import openai
import pytest

from huixiangdou.main import answer as main_answer
from tests.web.conftest import ON_TOPIC
from tests.web.test_api import ask

# The prompt's second passage first, then the first, then a number the prompt never had.
LLM_ANSWER = '在 [frontend.lark_group] 段填写 encrypt_key [2]，然后重启服务 [1][2]，见 [7]。'
CITE = re.compile(r'\[(\d+)\]')


def assert_numbered_as_cited(reply: str, references: list[str]) -> None:
    cited = {int(n) for n in CITE.findall(reply)}
    assert cited and cited == set(range(1, len(references) + 1)), (reply, references)
    assert len(set(references)) == len(references)


@pytest.fixture
def answering(web_server):
    web_server.fake.responder = lambda messages: LLM_ANSWER
    return web_server


async def test_try_it_shows_the_numbers_the_references_carry(answering):
    async with aiohttp.ClientSession() as http:
        events = await ask(http, answering, ON_TOPIC)
    done = events[-1][1]
    assert done['code'] == 'SUCCESS'
    assert_numbered_as_cited(done['reply'], done['references'])
    assert '[7]' not in done['reply']
    # The streamed pieces already carry the final numbers.
    assert ''.join(d['text'] for k, d in events if k == 'token').strip() == done['reply']
    # The passages the page links [n] to are numbered alike: [n] opens a passage of references[n - 1].
    by_n = {p['n']: p['reference'] for p in done['passages']}
    assert all(by_n[n] == reference for n, reference in enumerate(done['references'], 1))
    assert sorted(by_n) == list(range(1, len(by_n) + 1))
    # The saved outcome (Group messages page, save_path) holds the same reply and references.
    record = json.loads(answering.save_path.read_text(encoding='utf-8').splitlines()[-1])
    assert (record['reply'], record['references']) == (done['reply'], done['references'])


def test_v1_references_are_numbered_as_the_answer_cites_them(answering):
    with openai.OpenAI(base_url=f'{answering.base_url}/v1', api_key='unused', max_retries=0) as sdk:
        plain = sdk.chat.completions.create(model='huixiangdou', messages=[{'role': 'user', 'content': ON_TOPIC}])
        assert_numbered_as_cited(plain.choices[0].message.content, plain.model_extra['huixiangdou']['references'])
        chunks = list(sdk.chat.completions.create(model='huixiangdou', stream=True,
                                                  messages=[{'role': 'user', 'content': ON_TOPIC}]))
    extra = chunks[-1].model_extra['huixiangdou']
    streamed = ''.join(c.choices[0].delta.content or '' for c in chunks)
    assert extra['replaced'] is False   # the pieces were already renumbered: nothing to take back
    assert_numbered_as_cited(streamed, extra['references'])
    assert streamed.strip() == plain.choices[0].message.content


async def test_mains_line_lists_references_with_the_numbers_it_cites(answering, capsys):
    from huixiangdou.config import load_config

    await main_answer(load_config(answering.config_path), [ON_TOPIC])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    reply = line.split('| Reply: ')[1].split(' | References: ')[0]
    listed = line.split(' | References: ')[1].split(', ')
    numbers = [int(CITE.match(item).group(1)) for item in listed]
    assert numbers == list(range(1, len(listed) + 1))
    assert_numbered_as_cited(reply, [item.split('] ', 1)[1] for item in listed])
