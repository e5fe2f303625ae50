"""The console's pages in a real browser (Debian's Chromium through Playwright) against the real
console: upload and index a Word file, add an example and recalibrate, ask and watch the answer
stream in with its citation, see why chatter is ignored, label a group message, and a change
refused without the admin token. Each page's screenshot is saved to logs/screenshots/ (to
docs/images/web/ for docs/web.md with HUIXIANGDOU_UPDATE_SCREENSHOTS=1).
"""
from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from tests.web.browser import VIEWPORT, login, open_page, screenshot, watch, watched
from tests.web.conftest import CHATTER, ON_TOPIC, copy_knowledge_base, outcome, start_console

# A fact no shipped document holds, so finding it proves the uploaded file was parsed and indexed.
DOCX_NAME = '值班手册.docx'
DOCX_FACT = '茴香豆机器人的值班电话是 0571-86861234，每周三下午由李雷负责。'
BUILD_TIMEOUT = 180_000


@pytest.fixture(scope='module')
def web_server(tmp_path_factory, sample_store, embedder):
    """The console as tests/web/conftest.py runs it, with a Lark group app configured, so the
    Integrations page has a callback URL to show (nothing here calls the Lark Open Platform)."""
    root = tmp_path_factory.mktemp('console_pages')
    copy_knowledge_base(root, sample_store)
    server, stop = start_console(root, embedder, frontend={'type': 'lark_group'},
                                 **{'frontend.lark_group': {'app_id': 'cli_a1b2c3d4e5f6', 'app_secret': 'secret',
                                                            'encrypt_key': 'key', 'verification_token': 'token',
                                                            'host': '0.0.0.0', 'port': 6666, 'path': '/event'}})
    try:
        yield server
    finally:
        stop()


@pytest.fixture
def page(browser):
    """A fresh browser profile per test: no cookie, so no login, carries over. English (en-US): these
    tests read the English catalogue's words; tests/web/test_browser_console.py covers Chinese."""
    context = browser.new_context(viewport=VIEWPORT, locale='en-US')
    page = context.new_page()
    errors = []
    page.on('pageerror', lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f'the page threw: {errors}'


@pytest.fixture
def admin(page, web_server):
    login(page, web_server.base_url, web_server.admin_token)
    return page


def write_docx(path):
    import docx

    document = docx.Document()
    document.add_heading('值班安排', level=1)
    document.add_paragraph(DOCX_FACT)
    document.add_paragraph('遇到部署问题，请先查看 config.ini 的 [feature_store] 配置，再联系值班人员。')
    document.save(path)
    return path


def test_every_page_loads_only_from_the_console_itself(page, web_server):
    requested = []
    page.on('request', lambda request: requested.append(request.url))
    for route in ('kb', 'examples', 'try', 'messages', 'integrations'):
        open_page(page, web_server.base_url, route)
        expect(page.locator(f'#nav-{route}')).to_have_class('active')
    elsewhere = [url for url in requested if not url.startswith((web_server.base_url + '/', 'data:'))]
    assert not elsewhere, f'the console fetched from elsewhere (it must work offline): {elsewhere}'
    assert any(url.endswith('/static/style.css') for url in requested)


def test_without_login_a_change_is_refused_and_the_toast_says_to_log_in(page, web_server, tmp_path):
    before = web_server.good_path.read_text(encoding='utf-8')
    open_page(page, web_server.base_url, 'examples')
    expect(page.locator('#admin-state')).to_have_text('read-only')
    page.fill('#example-text', '未登录时添加的例子不应保存')
    page.click('#add-good')
    expect(page.locator('#toast')).to_be_visible()
    expect(page.locator('#toast')).to_contain_text('log in')
    assert web_server.good_path.read_text(encoding='utf-8') == before

    open_page(page, web_server.base_url, 'kb')
    note = tmp_path / 'note.md'
    note.write_text('# 未登录上传\n不应出现在知识库里。', encoding='utf-8')
    page.set_input_files('#file-input', str(note))
    page.click('#upload-button')
    expect(page.locator('#toast')).to_contain_text('log in')
    assert not (web_server.repo_dir / 'note.md').exists()


def test_uploaded_word_file_is_indexed_after_a_rebuild_with_live_progress(admin, web_server, tmp_path):
    page = admin
    page.fill('#upload-folder', '运维')
    page.set_input_files('#file-input', str(write_docx(tmp_path / DOCX_NAME)))
    page.click('#upload-button')
    row = page.locator(f'#files-table tr[data-path="运维/{DOCX_NAME}"]')
    expect(row.locator('.status')).to_contain_text('pending')

    watch(page, '#build-progress', 'data-state')
    page.click('#rebuild-button')
    # The card already says "done" for the startup build: wait for this build's running, then done.
    page.wait_for_function("(sel) => { const seen = (window.__watched || {})[sel] || []; "
                           "const at = seen.indexOf('running'); return at >= 0 && seen.slice(at).includes('done'); }",
                           arg='#build-progress', timeout=BUILD_TIMEOUT)
    assert 'running' in watched(page, '#build-progress'), 'the page never showed the build running'
    expect(page.locator('#build-progress')).to_have_attribute('data-state', 'done')
    expect(row.locator('.status')).to_contain_text('indexed', timeout=10_000)
    expect(row.locator('.status')).to_contain_text('chunk')
    assert '0571-86861234' not in row.inner_text()  # the row shows its status, the chunks open below

    row.locator('button.link').click()
    expect(page.locator('#chunk-panel')).to_contain_text('0571-86861234')
    expect(page.locator('#store-facts')).to_contain_text('Chunks')
    screenshot(page, 'knowledge_base')


def test_added_example_is_saved_and_recalibration_redraws_the_chart(admin, web_server):
    page = admin
    open_page(page, web_server.base_url, 'examples')
    metrics = page.locator('#calibration-metrics')
    before = metrics.get_attribute('data-calibrated-at')
    bars_before = page.locator('#calibration-chart rect.bar-good').count()
    assert bars_before > 0, 'the chart shows no on-topic scores for a calibrated store'

    example = 'lark_group 的 verification_token 填错了会怎样？'
    page.fill('#example-text', example)
    page.click('#add-good')
    expect(page.locator('#good-list li', has_text=example)).to_have_count(1)
    assert example in json.loads(web_server.good_path.read_text(encoding='utf-8'))

    page.click('#calibrate-button')
    # The bar may still say "done" from an earlier build of this module's console until the first poll:
    # what proves the recalibration is the new time on the metrics, however long a loaded machine takes.
    expect(metrics).not_to_have_attribute('data-calibrated-at', before or '', timeout=BUILD_TIMEOUT)
    expect(page.locator('#build-progress')).to_have_attribute('data-state', 'done', timeout=BUILD_TIMEOUT)
    expect(metrics).to_contain_text('Precision')
    expect(page.locator('#calibration-chart line.threshold')).to_have_count(1)
    legend = page.locator('#calibration-chart text.legend').first.text_content()
    count = len(json.loads(web_server.good_path.read_text(encoding='utf-8')))
    assert f'({count})' in legend, f'the chart should count {count} on-topic examples, says {legend!r}'
    screenshot(page, 'examples')


def test_on_topic_question_streams_an_answer_with_a_citation_that_opens_its_chunk(page, web_server):
    answer = ('在 config.ini 的 [frontend.lark_group] 段里填写 encrypt_key，和飞书开放平台“事件订阅”'
              '页面的加密策略保持一致 [1]。修改后重启服务即可生效。')
    web_server.fake.responder = lambda messages: answer
    web_server.fake.stream_delay = 0.03
    try:
        open_page(page, web_server.base_url, 'try')
        watch(page, '#answer', 'text')
        page.fill('#ask-input', ON_TOPIC)
        page.click('#ask-button')
        expect(page.locator('#answer')).to_have_attribute('data-done', 'answered', timeout=60_000)
    finally:
        web_server.fake.stream_delay = 0.0
    final = page.locator('#answer').inner_text()
    assert 'encrypt_key' in final
    partial = [text for text in watched(page, '#answer') if text and len(text) < len(final) - 5]
    assert len(partial) >= 3, f'the answer did not stream in (intermediate states: {partial})'
    assert all(final.startswith(text[:10]) for text in partial)

    citation = page.locator('#citations .citation').first
    expect(citation).to_be_visible()
    citation.click()
    expect(page.locator('#chunk-view')).to_be_visible()
    assert len(page.locator('#chunk-view pre').inner_text().strip()) > 20
    screenshot(page, 'try')


def test_chatter_is_ignored_and_the_page_shows_why(page, web_server):
    open_page(page, web_server.base_url, 'try')
    page.fill('#ask-input', CHATTER)
    page.click('#ask-button')
    expect(page.locator('#answer')).to_have_attribute('data-done', 'ignored', timeout=60_000)
    why = page.locator('#why')
    expect(why).to_be_visible()
    expect(why).to_contain_text('ignored')
    expect(why).to_contain_text('threshold')
    expect(why).to_contain_text('Nearest chatter examples')
    assert page.locator('#citations .citation').count() == 0


def test_marking_a_group_message_should_have_answered_adds_it_to_the_examples(admin, web_server):
    page = admin
    missed = '请问知识库重建以后需要重启 lark_group 服务吗？'
    web_server.seed_messages([
        outcome('哈哈哈今天食堂的红烧肉不错', code='UNRELATED', group='oc_chat', time='2026-01-02T10:00:00'),
        outcome(missed, code='UNRELATED', group='oc_ops', time='2026-01-02T10:05:00'),
        outcome('飞书 encrypt_key 在哪里配置？', code='SUCCESS', group='oc_ops', reply='在 config.ini 里配置 [1]。',
                references=['zh/飞书.md'], time='2026-01-02T10:10:00'),
    ])
    open_page(page, web_server.base_url, 'messages')
    page.select_option('#group-filter', 'oc_ops')
    row = page.locator('#messages-table tr[data-id]', has_text=missed)
    expect(page.locator('#messages-table tr[data-id]')).to_have_count(2)
    expect(row).to_have_count(1)
    row.locator('.mark-answer').click()
    expect(row.locator('.label')).to_contain_text('should have answered')
    screenshot(page, 'messages')

    assert missed in json.loads(web_server.good_path.read_text(encoding='utf-8'))
    open_page(page, web_server.base_url, 'examples')
    expect(page.locator('#good-list li', has_text=missed)).to_have_count(1)


def test_integrations_page_shows_the_backends_and_tests_the_llm(admin, web_server):
    page = admin
    open_page(page, web_server.base_url, 'integrations')
    expect(page.locator('#frontend-info')).to_contain_text('lark_group')
    expect(page.locator('#callback-url')).to_contain_text(':6666/event')
    expect(page.locator('#llm-backends tbody tr').first).to_be_visible()
    page.click('#test-llm')
    expect(page.locator('#test-llm-result')).to_have_attribute('data-ok', 'true', timeout=30_000)
    screenshot(page, 'integrations')
