"""run_frontend: `none` returns at once; a configured server runs until cancelled; config validation."""
from __future__ import annotations

import asyncio

import aiohttp
import pytest

from huixiangdou.config import Config, ConfigError, load_config
from huixiangdou.frontend import run_frontend
from tests.conftest import free_port


async def test_none_returns_at_once(responder):
    await asyncio.wait_for(run_frontend(Config(), responder), 5)


async def test_lark_group_serves_until_cancelled_and_keeps_its_inbox_in_workdir(responder, fake_lark, tmp_path):
    config = Config(base_dir=tmp_path)
    config.frontend.type = 'lark_group'
    group = config.frontend.lark_group
    group.app_id, group.app_secret, group.base_url = fake_lark.app_id, fake_lark.app_secret, fake_lark.base_url
    group.verification_token, group.port = 'vt', free_port()
    task = asyncio.create_task(run_frontend(config, responder))
    url = f'http://127.0.0.1:{group.port}{group.path}'
    async with aiohttp.ClientSession() as http:
        for _ in range(200):  # wait for the server to bind
            try:
                async with http.post(url, json={'type': 'url_verification', 'challenge': 'c', 'token': 'vt'}) as r:
                    assert await r.json() == {'challenge': 'c'}
                    break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.02)
        else:
            pytest.fail('lark_group server never started')
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientConnectionError):
            await http.post(url, json={})
    assert (tmp_path / 'workdir' / 'lark_group_inbox.sqlite').exists()


async def test_wkteam_keeps_history_in_workdir(responder, fake_wkteam, tmp_path):
    config = Config(base_dir=tmp_path)
    config.frontend.type = 'wechat_wkteam'
    wk = config.frontend.wechat_wkteam
    wk.base_url, wk.api_token, wk.callback_host, wk.callback_port = (
        fake_wkteam.base_url, fake_wkteam.token, '127.0.0.1', free_port())
    task = asyncio.create_task(run_frontend(config, responder))
    path = tmp_path / 'workdir' / 'wkteam.sqlite'
    for _ in range(200):
        if path.exists():
            break
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert path.exists()


def write(tmp_path, text):
    path = tmp_path / 'config.ini'
    path.write_text(text, encoding='utf-8')
    return path


def test_per_group_sections_and_new_keys_load(tmp_path):
    config = load_config(write(tmp_path, '''
[frontend]
type = "wechat_wkteam"
message_process_policy = "merge"
[frontend.wechat_personal]
path = "/hook"
reply_timeout = 30
[frontend.wechat_wkteam]
callback_path = "/secret-callback"
revoke_words = ["撤回"]
[frontend.wechat_wkteam."43925126702"]
name = "茴香豆用户群"
introduction = "安装问题"
[frontend.lark_group."oc_abc"]
name = "Lark group"
'''))
    assert config.frontend.wechat_wkteam.groups['43925126702'].name == '茴香豆用户群'
    assert config.frontend.lark_group.groups['oc_abc'].name == 'Lark group'
    assert config.frontend.wechat_personal.reply_timeout == 30.0
    assert config.frontend.wechat_wkteam.callback_path == '/secret-callback'


@pytest.mark.parametrize('text, key', [
    ('[frontend]\ntype = "lark"\n', 'webhook_url'),
    ('[frontend]\nreply_rate_per_minute = 0\n', 'reply_rate_per_minute'),
    ('[frontend.lark_group]\nport = 70000\n', 'port'),
    ('[frontend.lark_group]\npath = "event"\n', 'path'),
    ('[frontend.wechat_wkteam]\ncallback_path = "cb"\n', 'callback_path'),
    ('[frontend]\ntype = "dingtalk"\n', 'type'),
])
def test_bad_frontend_settings_name_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError, match=key):
        load_config(write(tmp_path, text))


def test_shipped_config_ini_loads(repo_root):
    assert load_config(repo_root / 'config.ini').frontend.type in ('none', 'lark', 'lark_group', 'wechat_personal',
                                                                   'wechat_wkteam')
