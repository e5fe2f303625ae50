"""Several knowledge bases from the console's pages, in a real browser (Debian's Chromium through
Playwright) against the real console: an admin creates one, uploads into it, builds it and asks from
Try it; binds a group to it; deletes one after typing its name; an operator sees only their own, and
a change to another one is refused with a message that says why.

These run once the console serves GET /api/knowledge-bases; on a console without it they are skipped.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from playwright.sync_api import expect

from tests.conftest import write_config
from tests.web.browser import VIEWPORT, login, open_page
from tests.web.conftest import copy_knowledge_base, start_console

FACT = '人事问答：年假申请需要提前 5 个工作日在 OA 系统提交，由直属经理审批。'
QUESTION = '年假申请需要提前几天在 OA 系统提交？'
BUILD_TIMEOUT = 180_000


def _console_lists_knowledge_bases() -> bool:
    """Whether this checkout's console has the route (its app is built, not started)."""
    import tempfile
    from pathlib import Path

    from huixiangdou.config import load_config
    from huixiangdou.web.app import create_app

    with tempfile.TemporaryDirectory() as folder:
        app = create_app(load_config(write_config(Path(folder) / 'config.ini',
                                                  feature_store={'embedding_model_path': ''})))
        return any(getattr(r, 'canonical', '') == '/api/knowledge-bases' for r in app.router.resources())


pytestmark = pytest.mark.skipif(not _console_lists_knowledge_bases(),
                                reason='the console does not serve /api/knowledge-bases yet')


def call(server, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    """The JSON API as a script calls it, with the admin token."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f'{server.base_url}{path}', data=data, method=method,
                                     headers={**server.auth, 'Content-Type': 'application/json'})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read() or b'{}')
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b'{}')


@pytest.fixture(scope='module')
def web_server(tmp_path_factory, sample_store, embedder):
    root = tmp_path_factory.mktemp('console_kbs')
    copy_knowledge_base(root, sample_store)
    server, stop = start_console(root, embedder)
    try:
        status, _ = call(server, 'GET', '/api/knowledge-bases')
        if status == 404:
            pytest.skip('the running console does not serve /api/knowledge-bases')
        yield server
    finally:
        stop()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=VIEWPORT, locale='en-US')
    page = context.new_page()
    errors = []
    page.on('pageerror', lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f'the page threw: {errors}'


def test_admin_creates_a_knowledge_base_uploads_builds_and_asks_from_it(page, web_server, tmp_path):
    requested = []
    page.on('request', lambda request: requested.append(request.url))
    login(page, web_server.base_url, web_server.admin_token)
    page.fill('#new-kb-name', 'hr_faq')
    page.click('#create-kb-button')
    expect(page.locator('#kb-select')).to_have_value('hr_faq')
    page.wait_for_selector('body[data-ready="kb"]')
    expect(page.locator('#files-table tbody tr[data-path]')).to_have_count(0)

    note = tmp_path / '年假.md'
    note.write_text(f'# 年假\n\n{FACT}\n', encoding='utf-8')
    page.set_input_files('#file-input', str(note))
    page.click('#upload-button')
    row = page.locator('#files-table tr[data-path="年假.md"]')
    expect(row.locator('.status')).to_contain_text('pending')
    page.click('#rebuild-button')
    expect(page.locator('#build-progress')).to_have_attribute('data-state', 'done', timeout=BUILD_TIMEOUT)
    expect(row.locator('.status')).to_contain_text('indexed', timeout=10_000)

    web_server.fake.responder = lambda messages: '需要提前 5 个工作日在 OA 系统提交 [1]。'
    open_page(page, web_server.base_url, 'try')
    expect(page.locator('#kb-select')).to_have_value('hr_faq')
    page.fill('#ask-input', QUESTION)
    page.click('#ask-button')
    expect(page.locator('#answer')).to_have_attribute('data-done', 'answered', timeout=60_000)
    expect(page.locator('#citations')).to_contain_text('年假.md')

    scoped = [url for url in requested if '/api/' in url and any(
        f'/api/{name}' in url for name in ('kb', 'files', 'rebuild', 'ask', 'chunks'))]
    assert scoped and all('kb=hr_faq' in url for url in scoped[-6:]), scoped[-6:]
    page.reload()
    page.wait_for_selector('body[data-ready="try"]')
    expect(page.locator('#kb-select')).to_have_value('hr_faq')  # remembered


def test_admin_binds_a_group_to_a_knowledge_base(page, web_server):
    call(web_server, 'POST', '/api/knowledge-bases', {'name': 'ops'})
    login(page, web_server.base_url, web_server.admin_token)
    open_page(page, web_server.base_url, 'integrations')
    page.fill('#bind-group', 'oc_ops_room')
    page.select_option('#bind-kb', 'ops')
    page.click('#bind-button')
    page.wait_for_selector('body[data-ready="integrations"]')
    expect(page.locator('#group-bindings tr[data-group="oc_ops_room"]')).to_contain_text('ops')


def test_deleting_a_knowledge_base_needs_its_name_typed(page, web_server):
    call(web_server, 'POST', '/api/knowledge-bases', {'name': 'scratch'})
    login(page, web_server.base_url, web_server.admin_token)
    row = page.locator('#kb-table tr[data-kb="scratch"]')
    row.locator('.delete-kb').click()
    confirm = row.locator('.confirm-delete-kb')
    expect(confirm).to_be_disabled()
    row.locator('.confirm-kb-name').fill('scratc')
    expect(confirm).to_be_disabled()
    row.locator('.confirm-kb-name').fill('scratch')
    confirm.click()
    expect(page.locator('#kb-table tr[data-kb="scratch"]')).to_have_count(0)
    names = [kb['name'] for kb in call(web_server, 'GET', '/api/knowledge-bases')[1]['knowledge_bases']]
    assert 'scratch' not in names


def test_an_operator_sees_only_their_knowledge_base_and_another_is_refused_clearly(page, web_server):
    status, _ = call(web_server, 'POST', '/api/knowledge-bases', {'name': 'support', 'password': 'support-pass-123'})
    assert status in (201, 409)
    open_page(page, web_server.base_url, 'login')
    page.fill('#login-kb', 'support')
    page.fill('#login-password', 'support-pass-123')
    page.click('#login-operator-button')
    page.wait_for_selector('body[data-role="operator"]')
    page.wait_for_selector('body[data-ready="kb"]')
    expect(page.locator('#kb-select')).to_have_value('support')
    expect(page.locator('#kb-select')).to_be_disabled()
    expect(page.locator('#kb-select option')).to_have_count(1)
    expect(page.locator('#kb-admin')).to_have_count(0)
    open_page(page, web_server.base_url, 'integrations')
    expect(page.locator('#bind-button')).to_have_count(0)

    refused = page.evaluate("""async () => {
        const { api, setKnowledgeBase } = await import('/static/api.js');
        setKnowledgeBase('default');
        try { await api.post('/api/rebuild', { full: false }); return null; }
        catch (err) { return { status: err.status, code: err.code, message: err.message }; }
        finally { setKnowledgeBase('support'); }
    }""")
    assert refused and refused['status'] == 403 and refused['code'] == 'forbidden_knowledge_base', refused
    assert 'may not change the knowledge base “default”' in refused['message']
