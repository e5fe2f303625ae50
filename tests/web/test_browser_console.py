"""The console's pages in Chinese and English and on a phone, in a real browser (Debian's Chromium through
Playwright) against the real console: every visible word comes from the active catalogue, no page is
wider than a 390-px phone, answers are rendered as Markdown that cannot run script, a withheld answer
says so, the reject explanation names words, and every wait shows something that moves.

Screenshots of every page at 390×844 and 1400×900 in both languages go to $HUIXIANGDOU_CONSOLE_SHOTS
(default /tmp/console-shots).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.web.browser import login, open_page, watch, watched
from tests.web.conftest import CHATTER, ON_TOPIC, copy_knowledge_base, outcome, start_console

PAGES = ('kb', 'examples', 'try', 'messages', 'integrations', 'login')
LANGS = {'zh-CN': 'zh-CN', 'en': 'en-US'}
PHONE = {'width': 390, 'height': 844}
DESKTOP = {'width': 1400, 'height': 900}
SHOTS = Path(os.environ.get('HUIXIANGDOU_CONSOLE_SHOTS', '/tmp/console-shots'))
# A loop: the worker's degenerate-answer guard stops it, and in "generate" mode nothing is posted.
LOOP = '请重启服务。' * 40
HOSTILE = '\n'.join([
    '> 在 config.ini 的 [frontend.lark_group] 段填写 encrypt_key [1]。',
    '',
    '步骤如下：',
    '- 打开 `config.ini`',
    '- 填写 **encrypt_key** 并保存',
    '',
    '```',
    'python -m huixiangdou.main --standalone',
    '```',
    '',
    '注意 <script>window.__xss = "script"</script> 与 <img src=x onerror="window.__xss = \'img\'"> 都不应执行，',
    '[点这里](javascript:window.__xss=\'link\') 也不行，[官方文档](https://github.com/InternLM/HuixiangDou) 可以。',
])

# Every visible text node outside [data-data] must be one of the active catalogue's messages (with any
# {param} standing for anything); so must every visible placeholder. Returns what is not.
UNTRANSLATED = r"""async (lang) => {
  const catalogue = (await import(`/static/i18n/${lang}.js`)).default;
  const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const patterns = Object.values(catalogue).map((v) => new RegExp(
    '^' + v.trim().split(/\{\w+\}/).map(escape).join('[\\s\\S]*') + '$'));
  const known = (text) => patterns.some((p) => p.test(text));
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  let seen = 0;
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const text = node.data.trim();
    const parent = node.parentElement;
    if (!/\p{L}/u.test(text) || !parent || parent.closest('[data-data], script, style, noscript, title')) continue;
    if (!parent.checkVisibility({ checkOpacity: true, checkVisibilityCSS: true })) continue;
    seen += 1;
    if (!known(text)) out.push(`${text} (in ${parent.outerHTML.slice(0, 160)})`);
  }
  for (const input of document.querySelectorAll('input[placeholder], textarea[placeholder]')) {
    if (input.closest('[data-data]') || !input.checkVisibility()) continue;
    if (!known(input.placeholder.trim())) out.push(`placeholder: ${input.placeholder}`);
  }
  if (!known(document.title.split(' · ')[0])) out.push(`title: ${document.title}`);
  return { untranslated: out, seen, lang: document.documentElement.lang };
}"""


@pytest.fixture(scope='module')
def web_server(tmp_path_factory, sample_store, embedder):
    """The console on the sample knowledge base; "generate" answers, so a degenerate one is withheld."""
    root = tmp_path_factory.mktemp('console_browser')
    copy_knowledge_base(root, sample_store)
    server, stop = start_console(root, embedder, worker={'answer_mode': 'generate'})
    server.seed_messages([
        outcome('哈哈哈今天食堂的红烧肉不错', code='UNRELATED', group='oc_chat', time='2026-01-02T10:00:00',
                reason='ignored: not about the documents (P(on-topic) 0.03 below the threshold 0.41)'),
        outcome('飞书 encrypt_key 在哪里配置？一个很长的问题，用来检查手机上的表格会不会把页面撑宽' * 3,
                code='SUCCESS', group='oc_ops_group_with_a_rather_long_identifier_0123456789',
                reply='> 在 config.ini 里配置 [1]。\n\n- 第一步\n- 第二步', references=['zh/飞书.md'],
                time='2026-01-02T10:10:00'),
    ])
    try:
        yield server
    finally:
        stop()


def new_page(browser, locale='en-US', viewport=None):
    context = browser.new_context(viewport=viewport or DESKTOP, locale=locale)
    page = context.new_page()
    page.errors = []
    page.on('pageerror', lambda exc: page.errors.append(str(exc)))
    return page


def fill_try(page, web_server, answer: str = '在 config.ini 的 [frontend.lark_group] 段填写 encrypt_key [1]。'):
    """Ask on the Try it page and wait for the answer, so its answer, citations and reasons show too."""
    web_server.fake.responder = lambda messages: answer
    page.fill('#ask-input', ON_TOPIC)
    page.click('#ask-button')
    expect(page.locator('#answer')).to_have_attribute('data-done', 'answered', timeout=60_000)


def show_everything(page, web_server, route):
    """Bring a page to the state that shows most of its words (answers, results, chunks)."""
    if route == 'try':
        page.fill('#ask-input', CHATTER)
        page.click('#ask-button')
        expect(page.locator('#why')).to_be_visible(timeout=60_000)
    elif route == 'integrations':
        page.click('#test-llm')
        expect(page.locator('#test-llm-result')).to_have_attribute('data-ok', 'true', timeout=60_000)
    elif route == 'kb':
        page.locator('#files-table button.link').first.click()
        expect(page.locator('#chunk-panel')).to_be_visible()


@pytest.mark.parametrize('lang', list(LANGS))
def test_every_visible_word_comes_from_the_active_catalogue(browser, web_server, lang):
    page = new_page(browser, locale=LANGS[lang])
    try:
        login(page, web_server.base_url, web_server.admin_token)
        for route in PAGES:
            open_page(page, web_server.base_url, route)
            show_everything(page, web_server, route)
            result = page.evaluate(UNTRANSLATED, lang)
            assert result['lang'] == lang
            assert result['seen'] > 5, f'{route}: hardly any text was checked ({result})'
            assert not result['untranslated'], f'{route} in {lang} shows text not from its catalogue: {result["untranslated"]}'
        assert not page.errors, f'the page threw: {page.errors}'
    finally:
        page.context.close()


def test_both_catalogues_have_the_same_keys_and_the_switch_is_remembered(browser, web_server):
    page = new_page(browser, locale='en-US')
    try:
        open_page(page, web_server.base_url, 'kb')
        keys = page.evaluate("""async () => {
            const en = (await import('/static/i18n/en.js')).default;
            const zh = (await import('/static/i18n/zh-CN.js')).default;
            const params = (s) => (s.match(/\\{\\w+\\}/g) || []).sort().join();
            return { onlyEn: Object.keys(en).filter((k) => !(k in zh)), onlyZh: Object.keys(zh).filter((k) => !(k in en)),
                     paramsDiffer: Object.keys(en).filter((k) => k in zh && params(en[k]) !== params(zh[k])) };
        }""")
        assert keys == {'onlyEn': [], 'onlyZh': [], 'paramsDiffer': []}
        assert page.evaluate('document.documentElement.lang') == 'en'
        expect(page.locator('#nav-kb')).to_have_text('Knowledge base')
        page.select_option('#lang-select', 'zh-CN')
        expect(page.locator('#nav-kb')).to_have_text('知识库')
        page.wait_for_selector('body[data-ready="kb"]')
        expect(page.locator('#rebuild-button')).to_have_text('重新构建（增量）')
        page.reload()
        page.wait_for_selector('body[data-ready="kb"]')
        assert page.evaluate('document.documentElement.lang') == 'zh-CN', 'the choice was not remembered'
        expect(page.locator('#nav-kb')).to_have_text('知识库')
    finally:
        page.context.close()


@pytest.mark.parametrize('lang', list(LANGS))
def test_every_page_fits_a_phone_and_screenshots_are_taken(browser, web_server, lang):
    SHOTS.mkdir(parents=True, exist_ok=True)
    for size, viewport in (('phone', PHONE), ('desktop', DESKTOP)):
        page = new_page(browser, locale=LANGS[lang], viewport=viewport)
        try:
            login(page, web_server.base_url, web_server.admin_token)
            for route in PAGES:
                open_page(page, web_server.base_url, route)
                if route == 'try':
                    fill_try(page, web_server, HOSTILE)
                else:
                    show_everything(page, web_server, route)
                page.evaluate("document.getElementById('toast').hidden = true")
                page.screenshot(path=str(SHOTS / f'{route}-{lang}-{size}.png'), full_page=True)
                if size == 'phone':
                    width = page.evaluate('document.documentElement.scrollWidth')
                    assert width <= PHONE['width'], f'{route} ({lang}) is {width} px wide on a 390-px phone'
            if size == 'phone':
                expect(page.locator('#nav-messages')).to_be_hidden()
                page.click('#menu-button')
                expect(page.locator('#nav-messages')).to_be_visible()
                page.screenshot(path=str(SHOTS / f'menu-{lang}-phone.png'))
                page.click('#nav-messages')
                page.wait_for_selector('body[data-ready="messages"]')
                expect(page.locator('#nav-messages')).to_be_hidden()
            assert not page.errors, f'the page threw: {page.errors}'
        finally:
            page.context.close()


def test_markdown_answer_is_rendered_and_nothing_in_it_runs(browser, web_server):
    page = new_page(browser)
    try:
        open_page(page, web_server.base_url, 'try')
        fill_try(page, web_server, HOSTILE)
        answer = page.locator('#answer')
        expect(answer.locator('blockquote')).to_contain_text('encrypt_key')
        expect(answer.locator('li')).to_have_count(2)
        expect(answer.locator('pre code')).to_contain_text('python -m huixiangdou.main')
        expect(answer.locator('li code')).to_have_text('config.ini')
        expect(answer.locator('strong')).to_have_text('encrypt_key')
        assert '<script>' in answer.inner_text() and 'onerror' in answer.inner_text(), 'the markup should show as text'
        assert answer.locator('script, img, iframe').count() == 0
        hrefs = answer.locator('a').evaluate_all('(links) => links.map((a) => a.href)')
        assert hrefs == ['https://github.com/InternLM/HuixiangDou'], hrefs
        page.wait_for_timeout(200)  # give an onerror a chance to fire, were there an image
        assert page.evaluate('window.__xss') is None
        cite = answer.locator('.cite-ref').first
        expect(cite).to_have_text('[1]')
        cite.click()
        expect(page.locator('#chunk-view')).to_be_visible()
        assert not page.errors, f'the page threw: {page.errors}'
    finally:
        page.context.close()


def test_withheld_answer_is_shown_as_withheld_with_its_reason(browser, web_server):
    page = new_page(browser)
    try:
        open_page(page, web_server.base_url, 'try')
        web_server.fake.responder = lambda messages: LOOP
        page.fill('#ask-input', ON_TOPIC)
        page.click('#ask-button')
        expect(page.locator('#answer')).to_have_attribute('data-done', 'ignored', timeout=60_000)
        expect(page.locator('#answer')).to_have_attribute('data-withheld', 'true')
        notice = page.locator('#answer-notice')
        expect(notice).to_be_visible()
        expect(notice).to_contain_text('withheld')
        expect(notice).to_contain_text('not posted')
        assert '请重启服务。请重启服务。' not in page.locator('#answer').inner_text(), 'the withheld words read as the answer'
    finally:
        page.context.close()


def test_reject_explanation_names_words_not_single_characters(browser, web_server):
    page = new_page(browser)
    try:
        open_page(page, web_server.base_url, 'try')
        readable = page.evaluate("""async () => {
            const { readableFragment } = await import('/static/reject_explanation.js');
            const q = 'how do I deploy kubernetes with lark? 部署到飞书';
            return ['e', 'ku', 'lark', 'deploy', '部署', '吗', 'ern'].map((g) => readableFragment(g, q));
        }""")
        assert readable == [False, False, True, True, True, False, False]
        page.fill('#ask-input', CHATTER)
        page.click('#ask-button')
        expect(page.locator('#why')).to_be_visible(timeout=60_000)
        expect(page.locator('#specific-words')).to_be_visible()
        for chip in page.locator('#weighed-words .chip').all_inner_texts():
            assert len(chip.lstrip('+− ').strip()) >= 2, f'a single character is shown as a reason: {chip!r}'
        # A message naming a config key of the documents shows it among the entities it names.
        page.fill('#ask-input', 'local_llm_bind_port 被占用了 要怎么改')
        page.click('#ask-button')
        expect(page.locator('#matched-entities')).to_contain_text('local_llm_bind_port', timeout=60_000)
    finally:
        page.context.close()


def test_waits_show_progress_that_moves(browser, web_server):
    page = new_page(browser)
    try:
        open_page(page, web_server.base_url, 'kb')
        # After the startup build the idle job says when the store was built, not "no build has run".
        expect(page.locator('#build-progress')).to_contain_text('was built')
        page.evaluate("""async () => {
            const { BuildProgress } = await import('/static/build_progress.js');
            for (const [id, status] of [
                ['p-one', { state: 'running', phase: 'calibrate', done: 0, total: 1 }],
                ['p-folds', { state: 'running', phase: 'calibrate', done: 2, total: 5 }],
                ['p-eta', { state: 'running', phase: 'embed', done: 30, total: 120, eta_s: 75 }]]) {
                const el = document.createElement('div');
                el.id = id;
                document.getElementById('page').append(el);
                const progress = new BuildProgress(el, { report: () => {} });
                progress.poll = () => {};  // shown, not polled: the real job is idle
                progress.show(status);
            }
        }""")
        one = page.locator('#p-one')
        expect(one.locator('.bar-fill')).to_have_class('bar-fill indeterminate')
        assert one.inner_text().count('Calibrating') == 1
        assert '0 of 1' not in one.inner_text()
        first = one.locator('.elapsed').inner_text()
        expect(one.locator('.elapsed')).not_to_have_text(first, timeout=10_000)  # the seconds count on
        expect(page.locator('#p-folds')).to_contain_text('fold 2 of 5')
        assert page.locator('#p-folds .bar-fill').evaluate('(el) => parseFloat(el.style.width)') == 40
        expect(page.locator('#p-eta')).to_contain_text('about 1 min 15 s left')

        login(page, web_server.base_url, web_server.admin_token)
        open_page(page, web_server.base_url, 'integrations')
        watch(page, '#test-llm-result', 'text')
        page.click('#test-llm')
        expect(page.locator('#test-llm-result')).to_have_attribute('data-ok', 'true', timeout=60_000)
        assert any('Asking the LLM' in text for text in watched(page, '#test-llm-result')), 'no wait was shown'
        expect(page.locator('#test-llm-result')).to_contain_text('after')
        expect(page.locator('#test-frontend-result')).to_be_hidden()
    finally:
        page.context.close()
