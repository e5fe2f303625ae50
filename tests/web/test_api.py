"""The console's JSON API against the real running console (sample store, real worker, fake LLM upstream):
what a page or a script sees when it uploads, rebuilds, edits examples, asks and reviews messages."""
from __future__ import annotations

import io
import json

import aiohttp
import pytest

from tests.web.conftest import CHATTER, ON_TOPIC, outcome

UNIQUE = '蓝鲸备份口令'


def docx_bytes(paragraphs: list[str]) -> bytes:
    import docx
    document = docx.Document()
    for text in paragraphs:
        document.add_paragraph(text)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def form(files: list[tuple[str, bytes]], folder: str | None = None) -> aiohttp.FormData:
    # Names as browsers and curl send them (UTF-8 as is), not percent-encoded as aiohttp does by default.
    data = aiohttp.FormData(quote_fields=False)
    if folder is not None:
        data.add_field('folder', folder)
    for name, content in files:
        data.add_field('file', content, filename=name, content_type='application/octet-stream')
    return data


def parse_sse(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.strip().split('\n\n'):
        lines = dict(line.split(': ', 1) for line in block.splitlines() if ': ' in line)
        events.append((lines['event'], json.loads(lines['data'])))
    return events


async def kb_files(http, server) -> dict[str, dict]:
    async with http.get(f'{server.base_url}/api/kb') as r:
        assert r.status == 200
        return {f['path']: f for f in (await r.json())['files']}


async def test_knowledge_base_lists_every_file_with_its_status_and_the_store_facts(web_server):
    async with aiohttp.ClientSession() as http:
        async with http.get(f'{web_server.base_url}/api/kb') as r:
            body = await r.json()
    store = body['store']
    assert store['chunks'] > 100 and store['files'] >= 10
    assert store['threshold'] is not None and store['calibrated_at']
    files = {f['path']: f for f in body['files']}
    assert files['zh/安装.md']['status'] == 'indexed' and files['zh/安装.md']['chunks'] >= 1
    # The build the store came from (before the console started) is the last build, not "none yet".
    assert body['build']['state'] == 'done' and body['build']['origin'] == 'earlier'


async def test_upload_rebuild_indexes_the_docx_skips_the_corrupt_file_and_the_worker_holds_it(web_server):
    new_doc = docx_bytes([f'{UNIQUE}：每周日凌晨三点自动备份知识库，恢复时在控制台输入备份口令。',
                          '备份文件保存在 workdir 的 backups 文件夹下，保留最近七份。' * 3])
    async with aiohttp.ClientSession(headers=web_server.auth) as http:
        async with http.post(f'{web_server.base_url}/api/files',
                             data=form([('备份说明.docx', new_doc), ('损坏.docx', b'this is not a zip file')],
                                       folder='zh/运维')) as r:
            assert r.status == 201, await r.text()
            body = await r.json()
        assert {s['path'] for s in body['saved']} == {'zh/运维/备份说明.docx', 'zh/运维/损坏.docx'}
        files = await kb_files(http, web_server)
        assert files['zh/运维/备份说明.docx']['status'] == 'pending'
        assert files['zh/运维/损坏.docx']['status'] == 'pending'

        async with http.post(f'{web_server.base_url}/api/rebuild', json={'full': False}) as r:
            assert r.status == 202
            assert (await r.json())['state'] == 'running'
        async with http.post(f'{web_server.base_url}/api/rebuild', json={}) as r:
            # Unless the build already finished, a second one is refused while the first runs.
            assert r.status in (202, 409)
            if r.status == 409:
                assert (await r.json())['error']['code'] == 'build_running'
        status = web_server.wait_for_build()
        assert status['state'] == 'done', status
        assert 'zh/运维/备份说明.docx' in status['report']['indexed']
        assert 'zh/安装.md' in status['report']['reused']

        files = await kb_files(http, web_server)
        indexed = files['zh/运维/备份说明.docx']
        assert indexed['status'] == 'indexed' and indexed['chunks'] >= 1
        broken = files['zh/运维/损坏.docx']
        assert broken['status'] == 'skipped' and 'docx' in broken['reason'].lower()

        # The worker answering now holds the new store.
        async with http.get(f'{web_server.base_url}/api/chunks', params={'path': 'zh/运维/备份说明.docx'}) as r:
            chunks = (await r.json())['chunks']
        assert any(UNIQUE in c['text'] for c in chunks)

        async with http.delete(f'{web_server.base_url}/api/files', params={'path': 'zh/运维/损坏.docx'}) as r:
            assert r.status == 200 and (await r.json())['deleted'] == 'zh/运维/损坏.docx'
        assert not (web_server.repo_dir / 'zh/运维/损坏.docx').exists()
        async with http.delete(f'{web_server.base_url}/api/files', params={'path': 'zh/运维/损坏.docx'}) as r:
            assert r.status == 404 and (await r.json())['error']['code'] == 'not_found'
        assert 'zh/运维/损坏.docx' not in await kb_files(http, web_server)


async def test_upload_names_never_leave_repo_dir(web_server):
    root = web_server.repo_dir.parent
    before = {p for p in root.rglob('*') if not p.is_relative_to(web_server.repo_dir)}
    names = ['../逃逸.md', '/etc/passwd.md', '..\\\\windows.md', 'C:\\\\temp\\\\盘符.md', '.hidden.md', '..']
    async with aiohttp.ClientSession(headers=web_server.auth) as http:
        async with http.post(f'{web_server.base_url}/api/files',
                             data=form([(n, b'# title\n\ntext') for n in names])) as r:
            assert r.status == 201, await r.text()
            body = await r.json()
        for saved in body['saved']:
            assert (web_server.repo_dir / saved['path']).resolve().is_relative_to(web_server.repo_dir.resolve())
            assert '/' not in saved['path']   # only the file's own name is kept
        assert {r['name'] for r in body['refused']} == {'.hidden.md', '..'}
        for folder in ('../outside', '/tmp', 'zh/../../x', '.git', 'zh/安装.md/sub'):
            async with http.post(f'{web_server.base_url}/api/files', data=form([('a.md', b'x')], folder)) as r:
                assert r.status == 400, folder
                assert (await r.json())['error']['code'] == 'bad_folder'
        # Links inside repo_dir that lead out of it are never written through.
        outside = root / 'outside'
        outside.mkdir(exist_ok=True)
        (web_server.repo_dir / 'linked').symlink_to(outside, target_is_directory=True)
        (web_server.repo_dir / 'linked.md').symlink_to(outside / 'target.md')
        try:
            async with http.post(f'{web_server.base_url}/api/files', data=form([('a.md', b'x')], 'linked')) as r:
                assert r.status == 400
            async with http.post(f'{web_server.base_url}/api/files', data=form([('linked.md', b'x')])) as r:
                assert r.status == 400 and 'in the way' in (await r.json())['error']['message']
        finally:
            (web_server.repo_dir / 'linked').unlink()
            (web_server.repo_dir / 'linked.md').unlink()
        assert list(outside.iterdir()) == []
        outside.rmdir()
        for path in ('../config.ini', '/etc/hostname', 'zh/../../config.ini'):
            async with http.delete(f'{web_server.base_url}/api/files', params={'path': path}) as r:
                assert r.status in (400, 404), path
    after = {p for p in root.rglob('*') if not p.is_relative_to(web_server.repo_dir)}
    assert after == before
    assert (root / 'config.ini').is_file()


async def test_oversize_and_unsupported_uploads_are_refused_and_nothing_is_stored(web_server):
    big = b'a' * int(2.5 * 1024 * 1024)   # the fixture's limit is 2 MB
    async with aiohttp.ClientSession(headers=web_server.auth) as http:
        async with http.post(f'{web_server.base_url}/api/files',
                             data=form([('小文件.md', b'# ok'), ('大文件.md', big)])) as r:
            assert r.status == 413
            assert (await r.json())['error']['code'] == 'too_large'
        async with http.post(f'{web_server.base_url}/api/files', data=form([('巨大.md', big * 2)])) as r:
            assert r.status == 413
        assert not (web_server.repo_dir / '小文件.md').exists()
        assert not list(web_server.repo_dir.glob('.upload-*'))

        async with http.post(f'{web_server.base_url}/api/files', data=form([('setup.exe', b'MZ')])) as r:
            assert r.status == 415
            assert 'unsupported file type .exe' in (await r.json())['error']['message']
        async with http.post(f'{web_server.base_url}/api/files',
                             data=form([('说明.txt', '纯文本'.encode()), ('photo.heic', b'x')])) as r:
            body = await r.json()
            assert r.status == 201
        assert [s['path'] for s in body['saved']] == ['说明.txt']
        assert body['refused'][0]['name'] == 'photo.heic'
        assert not (web_server.repo_dir / 'setup.exe').exists()


async def test_examples_add_edit_delete_import_and_recalibrate(web_server):
    url = web_server.base_url
    async with aiohttp.ClientSession(headers=web_server.auth) as http:
        async with http.get(f'{url}/api/examples') as r:
            before = await r.json()
        async with http.get(f'{url}/api/calibration') as r:
            old = await r.json()
        assert old['metrics']['f1'] > 0.5 and old['rule'] is False
        assert old['good_scores'] and old['bad_scores']

        async with http.post(f'{url}/api/examples', json={'kind': 'good', 'text': '备份口令在哪里输入？'}) as r:
            assert r.status == 201
            new_id = (await r.json())['id']
        async with http.post(f'{url}/api/examples', json={'kind': 'good', 'text': ' 备份口令在哪里输入？ '}) as r:
            assert r.status == 409 and (await r.json())['error']['code'] == 'duplicate'
        async with http.put(f'{url}/api/examples/good/{new_id}', json={'text': '备份口令应该在哪里输入？'}) as r:
            assert r.status == 200
        good = json.loads(web_server.good_path.read_text(encoding='utf-8'))
        assert good[new_id] == '备份口令应该在哪里输入？' and len(good) == len(before['good']) + 1

        async with http.delete(f'{url}/api/examples/bad/0') as r:
            assert r.status == 200
        async with http.delete(f'{url}/api/examples/bad/100000') as r:
            assert r.status == 404
        async with http.post(f'{url}/api/examples', json={'kind': 'neutral', 'text': 'x'}) as r:
            assert r.status == 400

        data = aiohttp.FormData()
        data.add_field('kind', 'bad')
        data.add_field('file', '今晚吃火锅吗\n下班一起打球\n今晚吃火锅吗\n'.encode(), filename='chat.txt')
        async with http.post(f'{url}/api/examples/import', data=data) as r:
            assert r.status == 200
            assert await r.json() == {'added': 2, 'duplicates': 1}
        async with http.get(f'{url}/api/examples') as r:
            after = await r.json()
        assert len(after['bad']) == len(before['bad']) - 1 + 2
        assert after['bad'][-1]['text'] == '下班一起打球'

        async with http.post(f'{url}/api/calibrate') as r:
            assert r.status == 202
        status = web_server.wait_for_build()
        assert status['state'] == 'done', status
        async with http.get(f'{url}/api/calibration') as r:
            new = await r.json()
    assert new['calibrated_at'] and new['calibrated_at'] >= old['calibrated_at']
    assert new['examples'] == {'good': len(after['good']), 'bad': len(after['bad'])}
    assert len(new['good_scores']) == len(after['good']) and len(new['bad_scores']) == len(after['bad'])
    assert 0 < new['threshold'] < 1


async def ask(http, server, query: str) -> list[tuple[str, dict]]:
    async with http.post(f'{server.base_url}/api/ask', json={'query': query}) as r:
        assert r.status == 200
        assert r.headers['Content-Type'].startswith('text/event-stream')
        return parse_sse(await r.text())


async def test_ask_streams_stages_tokens_and_the_answer_with_citations(web_server):
    web_server.fake.responder = lambda messages: '在 config.ini 的 [frontend.lark_group] 段填写 encrypt_key [1]。'
    async with aiohttp.ClientSession() as http:   # asking needs no login
        events = await ask(http, web_server, ON_TOPIC)
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == 'done' and 'token' in kinds
    stages = [d['stage'] for k, d in events if k == 'stage']
    assert stages.index('reject') < stages.index('retrieve') < stages.index('generate')
    streamed = ''.join(d['text'] for k, d in events if k == 'token')
    done = events[-1][1]
    assert done['outcome'] == 'answered' and done['code'] == 'SUCCESS'
    assert 'encrypt_key' in streamed and done['reply'].startswith(streamed.strip()[:10])
    assert done['references'] and done['passages']
    # The answer cites [1]: its reference is the first passage's, and the passage text is there to read.
    assert done['references'][0] == done['passages'][0]['reference'] and done['passages'][0]['text']
    assert done['reject']['reject_score'] >= done['reject']['threshold']


async def test_an_answer_in_progress_finishes_when_a_rebuilt_store_replaces_the_worker(web_server):
    import asyncio

    from huixiangdou.web.console import CONSOLE
    from huixiangdou.web.worker_slot import load_worker

    answer = '在 config.ini 的 [frontend.lark_group] 段填写 encrypt_key 和 verification_token [1]。'
    web_server.fake.responder = lambda messages: answer
    web_server.fake.stream_delay = 0.05
    console = web_server.app[CONSOLE]
    old = console.slot.worker

    async def replace_worker():   # what a finished rebuild does, on the server's loop
        console.slot.swap(await asyncio.to_thread(load_worker, console.config, console.build.shared_embedder()))

    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f'{web_server.base_url}/api/ask', json={'query': ON_TOPIC}) as r:
                async for line in r.content:
                    if line.startswith(b'event: token'):
                        break
                web_server.run(replace_worker())
                events = parse_sse('event: token\n' + (await r.text()))
    finally:
        web_server.fake.stream_delay = 0
    done = events[-1][1]
    assert done['outcome'] == 'answered' and done['reply'] == answer
    assert console.slot.worker is not old
    async with aiohttp.ClientSession() as http:   # and the next question is answered by the new worker
        assert (await ask(http, web_server, ON_TOPIC))[-1][1]['outcome'] == 'answered'


async def test_ask_about_chatter_says_why_it_is_ignored(web_server):
    async with aiohttp.ClientSession() as http:
        events = await ask(http, web_server, CHATTER)
    done = events[-1][1]
    assert done['outcome'] == 'ignored' and done['code'] == 'UNRELATED'
    assert 'not about the documents' in done['reason'] and 'below the threshold' in done['reason']
    assert done['reply'] == '' and not [k for k, _ in events if k == 'token']
    assert done['reject']['reject_score'] < done['reject']['threshold']


async def test_messages_are_listed_filtered_and_labels_become_examples(web_server):
    web_server.seed_messages([
        outcome('怎么配置飞书？', reply='在 config.ini 里 [1]', references=['zh/飞书接入.md'], time='2026-01-01T09:00:00'),
        outcome('中午吃啥', code='UNRELATED', group='oc_other', time='2026-01-01T10:00:00',
                reject={'reject_score': 0.03, 'threshold': 0.41}),
        outcome('模型为什么没有回答', code='LLM_ERROR', time='2026-01-01T11:00:00'),
    ])
    with open(web_server.save_path, 'a', encoding='utf-8') as f:
        f.write('{"time": "2026-01-01T12:00:00", "query": "cut by a cra')   # a line cut by a crash
    url = f'{web_server.base_url}/api/messages'
    async with aiohttp.ClientSession(headers=web_server.auth) as http:
        async with http.get(url) as r:
            body = await r.json()
        assert body['total'] == 3 and body['groups'] == ['oc_group1', 'oc_other']
        assert [m['query'] for m in body['messages']] == ['模型为什么没有回答', '中午吃啥', '怎么配置飞书？']
        assert [m['outcome'] for m in body['messages']] == ['failed', 'ignored', 'answered']
        ignored = body['messages'][1]
        assert '0.03 below the threshold 0.41' in ignored['reason']
        async with http.get(url, params={'group': 'oc_group1', 'outcome': 'answered'}) as r:
            only = (await r.json())['messages']
        assert [m['query'] for m in only] == ['怎么配置飞书？']
        async with http.get(url, params={'outcome': 'maybe'}) as r:
            assert r.status == 400

        async with http.post(f'{url}/{ignored["id"]}/label', json={'label': 'should_answer'}) as r:
            assert r.status == 200
            assert await r.json() == {'label': 'should_answer', 'added_to': 'good', 'duplicate': False}
        assert '中午吃啥' in json.loads(web_server.good_path.read_text(encoding='utf-8'))
        # Changed mind: the latest label wins and the question moves to the other list.
        async with http.post(f'{url}/{ignored["id"]}/label', json={'label': 'should_ignore'}) as r:
            assert (await r.json())['added_to'] == 'bad'
        assert '中午吃啥' not in json.loads(web_server.good_path.read_text(encoding='utf-8'))
        assert '中午吃啥' in json.loads(web_server.bad_path.read_text(encoding='utf-8'))
        async with http.get(url) as r:
            labels = {m['query']: m['label'] for m in (await r.json())['messages']}
        assert labels == {'模型为什么没有回答': None, '中午吃啥': 'should_ignore', '怎么配置飞书？': None}
        async with http.post(f'{url}/nope/label', json={'label': 'should_answer'}) as r:
            assert r.status == 404


async def test_integrations_show_the_setup_and_test_the_llm(web_server):
    async with aiohttp.ClientSession(headers=web_server.auth) as http:
        async with http.get(f'{web_server.base_url}/api/integrations') as r:
            body = await r.json()
        assert body['frontend'] == {'type': 'none', 'callback_url': None,
                                    'details': {'message_process_policy': 'immediate'}}
        assert body['assistant_api'] == {'base_url': f'{web_server.base_url}/v1', 'model': 'huixiangdou'}
        assert body['llm']['backends'] and all(b['healthy'] for b in body['llm']['backends'])
        assert body['web_search'] == {'enabled': False, 'engine': 'serper'}
        web_server.fake.responder = lambda messages: 'OK'
        async with http.post(f'{web_server.base_url}/api/integrations/test', json={'target': 'llm'}) as r:
            result = await r.json()
        assert result['ok'] is True and 'OK' in result['detail']
        async with http.post(f'{web_server.base_url}/api/integrations/test', json={'target': 'frontend'}) as r:
            result = await r.json()
        assert result['ok'] is False and 'type = "none"' in result['detail']
        async with http.post(f'{web_server.base_url}/api/integrations/test', json={'target': 'moon'}) as r:
            assert r.status == 400


@pytest.mark.parametrize('body', ['not json', '[1, 2]'])
async def test_bad_json_gets_a_400_with_a_message(web_server, body):
    async with aiohttp.ClientSession(headers=web_server.auth) as http:
        async with http.post(f'{web_server.base_url}/api/examples', data=body,
                             headers={'Content-Type': 'application/json'}) as r:
            assert r.status == 400
            error = (await r.json())['error']
    assert error['code'] == 'bad_json' and 'JSON object' in error['message']


async def test_the_lark_connection_test_posts_to_the_group_and_shows_the_setup(bare_console):
    from tests.conftest import free_port
    from tests.fakes.fake_lark import FakeLark

    fake = FakeLark(webhook_secret='hook-secret')
    await fake.start(free_port())
    try:
        url = await bare_console(frontend={'type': 'lark', 'webhook_url': fake.webhook_url,
                                           'webhook_secret': 'hook-secret'})
        async with aiohttp.ClientSession(headers={'Authorization': 'Bearer test-admin-token-0123456789'}) as http:
            async with http.get(f'{url}/api/integrations') as r:
                frontend = (await r.json())['frontend']
            assert frontend['type'] == 'lark' and frontend['callback_url'] is None
            assert frontend['details']['signed'] is True
            assert fake.webhook_url not in json.dumps(frontend)   # the hook id is a secret
            async with http.post(f'{url}/api/integrations/test', json={'target': 'frontend'}) as r:
                result = await r.json()
            assert result['ok'] is True, result
            assert len(fake.webhook_posts) == 1 and 'huixiangdou' in json.dumps(fake.webhook_posts[0],
                                                                               ensure_ascii=False).lower()
            fake.fail('webhook', status=400,
                      body={'code': 19001, 'msg': 'param invalid: incoming webhook access token invalid'})
            async with http.post(f'{url}/api/integrations/test', json={'target': 'frontend'}) as r:
                result = await r.json()
            assert result['ok'] is False and 'access token invalid' in result['detail']
    finally:
        await fake.stop()


async def test_a_lark_group_app_shows_the_callback_url_to_paste(bare_console):
    url = await bare_console(**{'frontend': {'type': 'lark_group'},
                                'frontend.lark_group': {'app_id': 'cli_x', 'app_secret': 's', 'host': '0.0.0.0',
                                                        'port': 6666, 'path': '/event'}})
    async with aiohttp.ClientSession() as http:
        async with http.get(f'{url}/api/integrations') as r:
            frontend = (await r.json())['frontend']
    # A wildcard bind is shown as the address the console was reached at.
    assert frontend['callback_url'] == 'http://127.0.0.1:6666/event'
    assert frontend['details']['app_id'] == 'cli_x' and 's' not in frontend['details'].values()


async def test_a_failed_rebuild_says_why_and_the_old_store_keeps_answering(tmp_path, sample_store, embedder):
    from tests.web.conftest import copy_knowledge_base, start_console

    copy_knowledge_base(tmp_path, sample_store)
    server, stop = start_console(tmp_path, embedder)
    try:
        for path in server.repo_dir.rglob('*'):
            if path.is_file():
                path.unlink()
        async with aiohttp.ClientSession(headers=server.auth) as http:
            async with http.post(f'{server.base_url}/api/rebuild', json={}) as r:
                assert r.status == 202
            status = server.wait_for_build()
            assert status['state'] == 'failed' and 'no supported documents' in status['message']
            server.fake.responder = lambda messages: '在 [frontend.lark_group] 段填写 encrypt_key [1]。'
            events = await ask(http, server, ON_TOPIC)
        assert events[-1][1]['outcome'] == 'answered'
    finally:
        stop()
