"""Trimming, rpm/tpm budgets, Retry-After and presets: the pure parts of the LLM service."""
from __future__ import annotations

import asyncio

import pytest

from huixiangdou.config import ConfigError, LLMServerConfig
from huixiangdou.service.llm.backend import ChatMessage, RateLimited
from huixiangdou.service.llm.presets import PRESETS
from huixiangdou.service.llm.rate_limit import RequestBudget, estimate_tokens
from huixiangdou.service.llm.stop_strings import StopScanner
from huixiangdou.service.llm.trimming import conversation_length, trim_messages


def test_trim_drops_oldest_history_first_and_keeps_the_question():
    history = [ChatMessage('user', f'旧问题{i}' * 20) for i in range(3)]
    history = [m for pair in zip(history, [ChatMessage('assistant', 'a' * 60)] * 3) for m in pair]
    messages = [ChatMessage('system', '你是助手')] + history + [ChatMessage('user', '最新的问题是什么?')]
    trimmed = trim_messages(messages, 200)
    assert conversation_length(trimmed) <= 200
    assert trimmed[0].content == '你是助手'
    assert trimmed[-1].content == '最新的问题是什么?'
    assert history[0] not in trimmed and history[-1] in trimmed  # newest turn survives


def test_trim_cuts_the_middle_of_a_long_prompt_and_keeps_its_end():
    prompt = '材料:' + '很长的上下文' * 500 + '\n问题: 如何安装 HuixiangDou?'
    trimmed = trim_messages([ChatMessage('user', prompt)], 300)
    assert len(trimmed[0].content) <= 300
    assert trimmed[0].content.endswith('问题: 如何安装 HuixiangDou?')
    assert trimmed[0].content.startswith('材料:')


def test_trim_leaves_short_conversations_alone():
    messages = [ChatMessage('user', 'hi'), ChatMessage('assistant', 'hello'), ChatMessage('user', 'bye')]
    assert trim_messages(messages, 1000) == messages


def test_token_estimate_counts_chinese_per_character():
    assert estimate_tokens('你好世界') == 4
    assert estimate_tokens('a' * 40) == 10


async def test_limiter_refuses_at_once_when_the_rpm_budget_cannot_come_back_by_the_deadline():
    limiter = RequestBudget(rpm=2, tpm=10_000)
    loop = asyncio.get_running_loop()
    await limiter.acquire(10, deadline=loop.time() + 1)
    await limiter.acquire(10, deadline=loop.time() + 1)
    started = loop.time()
    with pytest.raises(RateLimited) as info:
        await limiter.acquire(10, deadline=loop.time() + 1)
    assert loop.time() - started < 0.5  # refused at once, not after waiting out the deadline
    # A burst of rpm, then rpm per minute: the next slot is 60 / rpm seconds away.
    assert info.value.retry_after == pytest.approx(30.0, abs=0.5)


async def test_limiter_waits_for_the_budget_when_the_deadline_allows():
    limiter = RequestBudget(rpm=600, tpm=10_000)  # one request per 0.1 s after the burst
    loop = asyncio.get_running_loop()
    for _ in range(600):
        await limiter.acquire(1)
    started = loop.time()
    await limiter.acquire(1, deadline=loop.time() + 5)
    assert 0.05 < loop.time() - started < 1.0


async def test_limiter_counts_tokens_per_minute():
    limiter = RequestBudget(rpm=100, tpm=100)
    await limiter.acquire(80)
    assert limiter.wait_time(30) == pytest.approx(6.0, abs=0.1)  # 10 tokens over budget at 100 per minute
    assert limiter.wait_time(20) == 0.0


def test_every_documented_preset_exists_with_base_url_model_and_context():
    for name in ('deepseek', 'kimi', 'gpt', 'zhipuai', 'step', 'siliconcloud', 'qwen', 'internlm', 'vllm',
                 'lmdeploy', 'ollama'):
        preset = PRESETS[name]
        assert preset.base_url.startswith('http') and preset.model and preset.context_length > 0


def test_config_rejects_an_unknown_remote_type():
    with pytest.raises(ConfigError, match='remote_type'):
        LLMServerConfig(remote_type='nope').validate()


@pytest.mark.parametrize('pieces, stops, sent', [
    (['Paris.\n', 'Q: next'], ['\nQ:'], 'Paris.'),           # stop split across pieces
    (['ab', 'cSTO', 'Pdef'], ['STOP'], 'abc'),
    (['no stop ', 'here', ' S'], ['STOP'], 'no stop here S'),  # held text comes back at the end
    (['x', 'y'], [], 'xy'),
    (['a, b', '. c'], [',', '.'], 'a'),                      # the first of several stops wins
])
def test_stop_scanner_cuts_at_the_first_stop_even_when_split(pieces, stops, sent):
    scanner = StopScanner(stops)
    out = ''.join(scanner.feed(p) for p in pieces) + scanner.flush()
    assert out == sent
    assert scanner.stopped == (sent != ''.join(pieces))


def test_stop_scanner_holds_back_only_what_could_still_become_a_stop():
    scanner = StopScanner(['</s>'])
    assert scanner.feed('answer <') == 'answer '
    assert scanner.feed('b>') == '<b>'


async def test_limiter_refund_gives_a_refused_request_back():
    """aiolimiter has no refund: ours reads its bucket level, so this guards an aiolimiter upgrade too."""
    loop = asyncio.get_running_loop()
    limiter = RequestBudget(rpm=1, tpm=10_000)
    ticket = await limiter.acquire(10, deadline=loop.time() + 1)
    limiter.refund(ticket)
    await limiter.acquire(10, deadline=loop.time() + 1)  # fits again at once
    with pytest.raises(RateLimited):
        await limiter.acquire(10, deadline=loop.time() + 1)


async def test_a_refund_wakes_a_waiting_request():
    loop = asyncio.get_running_loop()
    limiter = RequestBudget(rpm=1, tpm=10_000)
    ticket = await limiter.acquire(10)
    waiter = asyncio.create_task(limiter.acquire(10, deadline=loop.time() + 120))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    limiter.refund(ticket)
    await asyncio.wait_for(waiter, 2)
