"""Several knowledge bases in the real console (sample store as "default", the real worker, the fake LLM
upstream): one created from the console answers from its own documents, operators reach only theirs, deletes
need confirmation, and what the console wrote is what load_config reads."""
from __future__ import annotations

import json
import time
import tomllib
from pathlib import Path

import aiohttp
import pytest

from tests.web.conftest import ON_TOPIC, outcome
from tests.web.test_api import form, parse_sse

COFFEE_DOC = ('# Espresso machine care\n\nThe Brevanta espresso machine steam wand is cleaned after every latte: '
              'purge the steam wand for two seconds, wipe the steam wand with a damp cloth, and soak the steam '
              'wand tip in Brevanta descaler every Friday. The Brevanta grinder burr dial goes to setting 7 for '
              'espresso and setting 22 for pour-over coffee.\n') * 3
COFFEE_QUESTION = 'How do I clean the Brevanta espresso machine steam wand after a latte?'
PASSWORD = 'coffee-operator-pw'


def wait_for_build(server, kb: str, timeout: float = 300) -> dict:
    import urllib.request
    deadline = time.monotonic() + timeout
    while True:
        request = urllib.request.Request(f'{server.base_url}/api/rebuild?kb={kb}', headers=server.auth)
        with urllib.request.urlopen(request) as response:
            status = json.loads(response.read())
        if status['state'] != 'running' or time.monotonic() > deadline:
            return status
        time.sleep(0.2)


async def ask(http, server, query: str, kb: str) -> dict:
    async with http.post(f'{server.base_url}/api/ask', params={'kb': kb}, json={'query': query}) as r:
        assert r.status == 200, await r.text()
        return parse_sse(await r.text())[-1][1]


async def operator_session(server, kb: str = 'coffee', password: str = PASSWORD) -> aiohttp.ClientSession:
    http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))   # the cookie of 127.0.0.1
    async with http.post(f'{server.base_url}/api/login', json={'kb': kb, 'password': password}) as r:
        assert r.status == 200, await r.text()
        body = await r.json()
    assert body['role'] == 'operator' and body['kb'] == kb
    http.headers['X-CSRF-Token'] = body['csrf']
    return http


async def test_the_build_before_the_console_started_is_reported_as_the_last_build(web_server):
    """Right after startup (the store built by `python -m huixiangdou.web` or the command line), the Build card
    has the last build to show, not "no build has run"."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f'{web_server.base_url}/api/rebuild') as r:
            status = await r.json()
    assert status['state'] == 'done' and status['origin'] == 'earlier' and status['finished_at']
    assert status['report']['chunks'] > 100 and 'zh/安装.md' in status['report']['indexed']


@pytest.fixture(scope='module')
def coffee(web_server):
    """The console with a second knowledge base "coffee" made from the console (operator password set), one
    document uploaded into it and built."""
    import asyncio

    async def make():
        async with aiohttp.ClientSession(headers=web_server.auth) as http:
            async with http.post(f'{web_server.base_url}/api/knowledge-bases',
                                 json={'name': 'coffee', 'password': PASSWORD}) as r:
                assert r.status == 201, await r.text()
            async with http.post(f'{web_server.base_url}/api/files', params={'kb': 'coffee'},
                                 data=form([('espresso.md', COFFEE_DOC.encode())])) as r:
                assert r.status == 201, await r.text()
            async with http.post(f'{web_server.base_url}/api/rebuild', params={'kb': 'coffee'}, json={}) as r:
                assert r.status == 202, await r.text()

    asyncio.run(make())
    status = wait_for_build(web_server, 'coffee')
    assert status['state'] == 'done', status
    return web_server


async def test_a_knowledge_base_made_in_the_console_answers_from_its_own_documents(coffee):
    root = coffee.config_path.parent
    assert (root / 'knowledge_bases/coffee/repodir/espresso.md').is_file()
    assert json.loads((root / 'knowledge_bases/coffee/good_questions.json').read_text()) == []
    async with aiohttp.ClientSession(headers=coffee.auth) as http:
        async with http.get(f'{coffee.base_url}/api/kb', params={'kb': 'coffee'}) as r:
            body = await r.json()
        assert body['knowledge_base'] == 'coffee'
        assert [f['path'] for f in body['files']] == ['espresso.md'] and body['files'][0]['status'] == 'indexed'
        async with http.get(f'{coffee.base_url}/api/kb') as r:   # the default one does not hold it
            assert 'espresso.md' not in {f['path'] for f in (await r.json())['files']}

        coffee.fake.responder = lambda messages: 'Purge and wipe the steam wand after every latte [1].'
        done = await ask(http, coffee, COFFEE_QUESTION, 'coffee')
        assert done['outcome'] == 'answered', done
        assert [r.split('#')[0] for r in done['references']] == ['espresso.md']
        assert 'steam wand' in done['passages'][0]['text']
        coffee.fake.responder = lambda messages: '在 config.ini 的 [frontend.lark_group] 段填写 encrypt_key [1]。'
        done = await ask(http, coffee, ON_TOPIC, 'default')
        assert done['outcome'] == 'answered' and done['references']
        assert not [r for r in done['references'] if r.startswith('espresso.md')]

        async with http.get(f'{coffee.base_url}/api/knowledge-bases') as r:
            listed = await r.json()
        assert listed['role'] == 'admin' and listed['kb'] is None
        entries = {e['name']: e for e in listed['knowledge_bases']}
        assert entries['coffee'] | {'chunks': None} == {'name': 'coffee', 'groups': [], 'source': 'console',
                                                        'has_operator': True, 'files': 1, 'chunks': None}
        assert entries['coffee']['chunks'] >= 1 and entries['default']['chunks'] > entries['coffee']['chunks']
        assert entries['default']['source'] == 'config' and not entries['default']['has_operator']

        # Each asked question shows among its own knowledge base's messages only.
        async with http.get(f'{coffee.base_url}/api/messages', params={'kb': 'coffee'}) as r:
            mine = [m['query'] for m in (await r.json())['messages']]
        async with http.get(f'{coffee.base_url}/api/messages') as r:
            default = [m['query'] for m in (await r.json())['messages']]
        assert COFFEE_QUESTION in mine and ON_TOPIC not in mine
        assert ON_TOPIC in default and COFFEE_QUESTION not in default

        async with http.get(f'{coffee.base_url}/api/kb', params={'kb': 'tea'}) as r:
            assert r.status == 404 and (await r.json())['error']['code'] == 'unknown_knowledge_base'


async def test_an_operator_reaches_only_their_own_knowledge_base(coffee):
    coffee.seed_messages([outcome('default group question', group='oc_default_group'),
                          outcome('coffee group question', group='oc_coffee_group', knowledge_base='coffee')])
    http = await operator_session(coffee)
    try:
        async with http.get(f'{coffee.base_url}/api/session') as r:
            session = await r.json()
        assert session['role'] == 'operator' and session['kb'] == 'coffee' and not session['admin']
        async with http.get(f'{coffee.base_url}/api/kb', params={'kb': 'coffee'}) as r:
            assert r.status == 200
        for path in ('/api/kb', '/api/messages', '/api/examples', '/api/rebuild'):
            async with http.get(f'{coffee.base_url}{path}', params={'kb': 'default'}) as r:
                assert r.status == 403, path
                assert (await r.json())['error']['code'] == 'forbidden_knowledge_base'
        async with http.get(f'{coffee.base_url}/api/kb', params={'kb': 'no_such'}) as r:
            assert r.status == 403   # not 404: an operator cannot probe for names
        async with http.get(f'{coffee.base_url}/api/messages', params={'kb': 'coffee'}) as r:
            assert [m['query'] for m in (await r.json())['messages']] == ['coffee group question']
        async with http.get(f'{coffee.base_url}/api/knowledge-bases') as r:
            listed = await r.json()
        assert [e['name'] for e in listed['knowledge_bases']] == ['coffee'] and listed['role'] == 'operator'
        # They change their own knowledge base ...
        async with http.post(f'{coffee.base_url}/api/examples', params={'kb': 'coffee'},
                             json={'kind': 'good', 'text': 'How often do I descale the Brevanta?'}) as r:
            assert r.status == 201, await r.text()
        async with http.post(f'{coffee.base_url}/api/examples', params={'kb': 'default'},
                             json={'kind': 'good', 'text': 'sneaky'}) as r:
            assert r.status == 403
        # ... and nothing of the admin's.
        admin_only = [('POST', '/api/knowledge-bases', {'name': 'mine'}),
                      ('PUT', '/api/knowledge-bases/coffee/password', {'password': 'another-password'}),
                      ('DELETE', '/api/knowledge-bases/coffee', {'confirm': 'coffee'}),
                      ('PUT', '/api/groups/oc_x', {'knowledge_base': 'coffee', 'frontend': 'lark_group'}),
                      ('POST', '/api/integrations/test', {'target': 'llm'})]
        for method, path, body in admin_only:
            async with http.request(method, f'{coffee.base_url}{path}', json=body) as r:
                assert r.status == 403, path
                assert (await r.json())['error']['code'] == 'admin_only'
        async with http.post(f'{coffee.base_url}/v1/chat/completions',
                             json={'messages': [{'role': 'user', 'content': 'hi'}]}) as r:
            assert r.status == 403
    finally:
        await http.close()
    # With an operator anywhere, reading needs credentials: another operator's messages are not one
    # logged-out request away.
    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.get(f'{coffee.base_url}/api/messages', params={'kb': 'coffee'}) as r:
            assert r.status == 401
        async with anonymous.get(f'{coffee.base_url}/api/session') as r:
            assert (await r.json())['protect_api'] is True


async def test_a_group_bound_in_the_console_is_routed_to_its_knowledge_base_by_the_loader(coffee):
    from huixiangdou.config import load_config

    async with aiohttp.ClientSession(headers=coffee.auth) as http:
        async with http.put(f'{coffee.base_url}/api/groups/oc_coffee_group',
                            json={'knowledge_base': 'coffee', 'frontend': 'lark_group'}) as r:
            assert r.status == 200, await r.text()
        async with http.put(f'{coffee.base_url}/api/groups/oc_other',
                            json={'knowledge_base': 'tea', 'frontend': 'lark_group'}) as r:
            assert r.status == 400 and (await r.json())['error']['code'] == 'unknown_knowledge_base'
        async with http.get(f'{coffee.base_url}/api/knowledge-bases') as r:
            entries = {e['name']: e for e in (await r.json())['knowledge_bases']}
        assert entries['coffee']['groups'] == ['oc_coffee_group']
        async with http.get(f'{coffee.base_url}/api/integrations', params={'kb': 'coffee'}) as r:
            assert (await r.json())['knowledge_base'] == {'name': 'coffee', 'groups': ['oc_coffee_group']}

    # What `main` and `python -m huixiangdou.service.feature_store --kb coffee` load.
    config = load_config(coffee.config_path)
    assert list(config.knowledge_bases()) == ['default', 'coffee']
    assert config.knowledge_base_for('oc_coffee_group') == 'coffee'
    assert config.knowledge_base_for('oc_anything_else') == 'default'
    assert config.path(config.for_knowledge_base('coffee').feature_store.work_dir) == \
        coffee.config_path.parent / 'knowledge_bases/coffee/workdir'
    stored = tomllib.loads(config.console_file.read_text(encoding='utf-8'))
    assert stored['operators']['coffee'].startswith('scrypt$') and PASSWORD not in config.console_file.read_text()
    assert config.console_file.stat().st_mode & 0o077 == 0


async def test_builds_of_two_knowledge_bases_take_turns_and_both_stores_stay_whole(coffee):
    async with aiohttp.ClientSession(headers=coffee.auth) as http:
        async with http.post(f'{coffee.base_url}/api/rebuild', params={'kb': 'coffee'}, json={'full': True}) as r:
            assert r.status == 202
        async with http.post(f'{coffee.base_url}/api/calibrate') as r:
            assert r.status == 202
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            states = {}
            for kb in ('coffee', 'default'):
                async with http.get(f'{coffee.base_url}/api/rebuild', params={'kb': kb}) as r:
                    states[kb] = await r.json()
            # Loading a finished store into its worker ('load') reads only that knowledge base's own files.
            active = [kb for kb, s in states.items() if s['state'] == 'running' and s['phase'] not in ('queued', 'load')]
            assert len(active) <= 1, states   # never two builds at once
            if all(s['state'] != 'running' for s in states.values()):
                break
        assert [s['state'] for s in states.values()] == ['done', 'done'], states
        coffee.fake.responder = lambda messages: 'Purge the steam wand [1].'
        references = (await ask(http, coffee, COFFEE_QUESTION, 'coffee'))['references']
        assert [r.split('#')[0] for r in references] == ['espresso.md']
        async with http.get(f'{coffee.base_url}/api/kb') as r:
            assert (await r.json())['store']['files'] >= 10


async def test_deleting_needs_the_name_confirmed_and_moves_the_folders_aside(coffee):
    root = coffee.config_path.parent
    async with aiohttp.ClientSession(headers=coffee.auth) as http:
        async with http.post(f'{coffee.base_url}/api/knowledge-bases', json={'name': 'tea'}) as r:
            assert r.status == 201
        for name, status in (('tea', 409), ('Tea', 400), ('1tea', 400), ('default', 409), ('t' * 33, 400)):
            async with http.post(f'{coffee.base_url}/api/knowledge-bases', json={'name': name}) as r:
                assert r.status == status, name
        async with http.post(f'{coffee.base_url}/api/knowledge-bases', json={'name': 'herb', 'password': 'short'}) as r:
            assert r.status == 400 and (await r.json())['error']['code'] == 'bad_password'
        async with http.delete(f'{coffee.base_url}/api/knowledge-bases/tea', json={'confirm': 'coffee'}) as r:
            assert r.status == 400
        async with http.delete(f'{coffee.base_url}/api/knowledge-bases/default', json={'confirm': 'default'}) as r:
            assert r.status == 409
        async with http.delete(f'{coffee.base_url}/api/knowledge-bases/tea', json={'confirm': 'tea'}) as r:
            assert r.status == 200, await r.text()
            moved = (await r.json())['moved_to']
        async with http.get(f'{coffee.base_url}/api/knowledge-bases') as r:
            assert 'tea' not in {e['name'] for e in (await r.json())['knowledge_bases']}
        async with http.get(f'{coffee.base_url}/api/kb', params={'kb': 'tea'}) as r:
            assert r.status == 404
    assert not (root / 'knowledge_bases/tea').exists()
    assert Path(moved).parent == root / 'knowledge_bases/.deleted' and Path(moved, 'repodir').is_dir()
    from huixiangdou.config import load_config
    assert 'tea' not in load_config(coffee.config_path).knowledge_bases()


async def test_a_changed_operator_password_ends_the_old_sessions(coffee):
    http = await operator_session(coffee)
    try:
        async with aiohttp.ClientSession(headers=coffee.auth) as admin:
            async with admin.put(f'{coffee.base_url}/api/knowledge-bases/coffee/password',
                                 json={'password': 'brand-new-password'}) as r:
                assert r.status == 200
            async with admin.put(f'{coffee.base_url}/api/knowledge-bases/coffee/password',
                                 json={'password': 'short'}) as r:
                assert r.status == 400
        async with http.get(f'{coffee.base_url}/api/kb', params={'kb': 'coffee'}) as r:
            assert r.status == 401
    finally:
        await http.close()
    await (await operator_session(coffee, password='brand-new-password')).close()


async def test_wrong_operator_passwords_are_throttled_like_the_admin_token(bare_console):
    from tests.web.conftest import ADMIN_TOKEN

    url = await bare_console()
    async with aiohttp.ClientSession() as http:
        async with http.post(f'{url}/api/knowledge-bases', json={'name': 'coffee', 'password': PASSWORD},
                             headers={'Authorization': f'Bearer {ADMIN_TOKEN}'}) as r:
            assert r.status == 201, await r.text()

        async def login(kb: str, password: str) -> int:
            async with http.post(f'{url}/api/login', json={'kb': kb, 'password': password}) as r:
                return r.status

        statuses = [await login('coffee', f'guess-{i}') for i in range(5)] + [await login('nothere', 'guess-5')]
        assert statuses == [401] * 6
        assert await login('coffee', PASSWORD) == 429            # the right password waits out the lockout too
        async with http.post(f'{url}/api/login', json={'token': ADMIN_TOKEN}) as r:
            assert r.status == 429 and int(r.headers['Retry-After']) >= 1   # one count for tokens and passwords


def test_calibration_reports_progress_by_fold_with_an_estimate_of_the_time_left(sample_feature_store, tmp_path):
    """The builder's calibrate phase moves per fold (the fit on all, then each cross-validation fold), and the
    build status carries the estimate of what is left once a step of a phase is done."""
    from huixiangdou.config import Config
    from huixiangdou.service.feature_store.calibration import load_questions
    from huixiangdou.service.feature_store.reject_model import calibrate_reject_model
    from huixiangdou.web.build_job import BuildJob
    from huixiangdou.web.worker_slot import WorkerSlot
    from tests.conftest import REPO_ROOT

    good = sample_feature_store.evidence(load_questions(REPO_ROOT / 'resource/good_questions.json')[:40])
    bad = sample_feature_store.evidence(load_questions(REPO_ROOT / 'resource/bad_questions.json')[:40])
    steps = []
    calibrate_reject_model(good, bad, on_fold=lambda done, total: steps.append((done, total)))
    assert steps == [(i, 6) for i in range(1, 7)]

    job = BuildJob(Config(base_dir=tmp_path), WorkerSlot(), embedder=lambda: None, load=lambda: None)
    assert job.snapshot()['state'] == 'idle' and job.snapshot()['origin'] == 'console'   # no build yet
    job._progress('calibrate', 0, 6)
    assert job.snapshot()['eta_s'] is None   # nothing done: no pace to tell from
    job._progress('calibrate', 2, 6)
    status = job.snapshot()
    assert (status['phase'], status['done'], status['total']) == ('calibrate', 2, 6) and status['eta_s'] >= 0
    job._progress('save', 0, 1)
    assert job.snapshot()['eta_s'] is None



async def test_a_group_bound_in_the_console_gets_answers_from_that_knowledge_base_through_wechat(coffee):
    """The whole loop as an operator runs it: bind a group in the console, start the frontend from the same
    config (as `main` would), and a message from that group, posted in the WeChat JSON format, is answered
    from the console-made knowledge base's document, while another group's is answered from the default."""
    import asyncio

    from huixiangdou.config import load_config
    from huixiangdou.frontend.wechat_personal import WechatPersonalServer
    from huixiangdou.service.worker.pipeline import Worker

    async with aiohttp.ClientSession(headers=coffee.auth) as http:
        async with http.put(f'{coffee.base_url}/api/groups/wx_coffee_room',
                            json={'knowledge_base': 'coffee', 'frontend': 'wechat_personal'}) as r:
            assert r.status == 200, await r.text()
    config = load_config(coffee.config_path)
    config.frontend.type = 'wechat_personal'
    config.frontend.wechat_personal.host = '127.0.0.1'
    config.frontend.wechat_personal.token = 'helper-app-token'
    worker = await asyncio.to_thread(Worker.from_config, config)
    server = WechatPersonalServer(config.frontend, worker, port=0)
    await server.start()
    try:
        url = f'http://127.0.0.1:{server.port}{config.frontend.wechat_personal.path}'
        coffee.fake.responder = lambda messages: 'Purge and wipe the steam wand after every latte [1].'
        async with aiohttp.ClientSession(headers={'Authorization': 'Bearer helper-app-token'}) as http:
            async with http.post(url, json={'group_id': 'wx_coffee_room', 'sender': '小王',
                                            'content': COFFEE_QUESTION, 'message_id': 'm-1'}) as r:
                coffee_reply = await r.json()
            coffee.fake.responder = lambda messages: '在 config.ini 的 [frontend.lark_group] 段填写 encrypt_key [1]。'
            async with http.post(url, json={'group_id': 'wx_other_room', 'sender': '小李',
                                            'content': ON_TOPIC, 'message_id': 'm-2'}) as r:
                default_reply = await r.json()
    finally:
        await server.stop()
    assert coffee_reply['status'] == 'answered', coffee_reply
    assert [ref.split('#')[0] for ref in coffee_reply['references']] == ['espresso.md']
    assert default_reply['status'] == 'answered', default_reply
    assert not [ref for ref in default_reply['references'] if ref.startswith('espresso.md')]
