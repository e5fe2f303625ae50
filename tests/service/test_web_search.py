"""WebSearch against a local fake of Serper, DuckDuckGo and result pages on 127.0.0.1."""
from __future__ import annotations

import asyncio
import json

import pytest
from loguru import logger

from huixiangdou.config import ConfigError, WebSearchConfig
from huixiangdou.service.web_search import WebResult, WebSearch, WebSearchError, order_by_domain
from tests.fakes.fake_serper import FakeWeb, Page

KEY = 'serper-test-key'


def make_search(fake: FakeWeb, tmp_path, **overrides) -> WebSearch:
    settings = dict(engine='serper', serper_x_api_key=KEY, serper_base_url=fake.base_url,
                    duckduckgo_base_url=fake.base_url, fetch_pages=0, timeout=5.0, max_retries=2)
    settings.update(overrides)
    return WebSearch(WebSearchConfig(**settings), save_dir=tmp_path / 'saved', retry_base_delay=0.01)


def organic(*urls: str) -> list[dict]:
    return [{'title': f'title {i}', 'link': url, 'snippet': f'snippet {i}'} for i, url in enumerate(urls)]


async def test_serper_results_come_back_with_key_and_query(tmp_path):
    async with FakeWeb(api_key=KEY) as fake:
        fake.organic = organic('https://example.com/a', 'https://example.org/b', 'https://example.net/c')
        results = await make_search(fake, tmp_path).search('茴香豆 怎么配置飞书', max_results=2)
    assert [r.url for r in results] == ['https://example.com/a', 'https://example.org/b']
    assert results[0] == WebResult('title 0', 'https://example.com/a', 'snippet 0', 'snippet 0', 'serper')
    (request,) = fake.requests
    assert request.headers['X-API-KEY'] == KEY
    assert request.query == '茴香豆 怎么配置飞书'


async def test_answer_box_comes_first_and_duplicates_are_dropped(tmp_path):
    async with FakeWeb(api_key=KEY) as fake:
        fake.organic = organic('https://example.com/a', 'https://example.com/box')
        fake.answer_box = {'title': 'box', 'link': 'https://example.com/box', 'answer': 'v1.2'}
        results = await make_search(fake, tmp_path).search('latest version', max_results=5)
    assert [r.url for r in results] == ['https://example.com/box', 'https://example.com/a']
    assert results[0].snippet == 'v1.2'


async def test_preferred_domains_come_first_others_keep_engine_order(tmp_path):
    urls = ('https://blog.example.com/1', 'https://stackoverflow.com/q/2', 'https://mmdet.readthedocs.io/3',
            'https://other.example.org/4', 'https://arxiv.org/abs/5')
    async with FakeWeb(api_key=KEY) as fake:
        fake.organic = organic(*urls)
        search = make_search(fake, tmp_path, domain_partial_order=['arxiv.org', 'readthedocs.io',
                                                                   'stackoverflow.com'])
        results = await search.search('mmdetection install', max_results=5)
    assert [r.url for r in results] == [
        'https://arxiv.org/abs/5', 'https://mmdet.readthedocs.io/3', 'https://stackoverflow.com/q/2',
        'https://blog.example.com/1', 'https://other.example.org/4']


def test_domain_match_is_by_host_not_substring():
    results = [WebResult('', url, '', '', 'serper') for url in
               ('https://notarxiv.org/x', 'https://arxiv.org.evil.com/y', 'https://export.arxiv.org/z')]
    ordered = order_by_domain(results, ['arxiv.org'])
    assert [r.url for r in ordered] == ['https://export.arxiv.org/z', 'https://notarxiv.org/x',
                                        'https://arxiv.org.evil.com/y']


def test_missing_key_says_how_to_fix(monkeypatch):
    monkeypatch.delenv('SERPER_API_KEY', raising=False)
    with pytest.raises(WebSearchError, match='serper_x_api_key'):
        WebSearch(WebSearchConfig(engine='serper', serper_x_api_key=''))


def test_key_may_come_from_the_environment(monkeypatch):
    monkeypatch.setenv('SERPER_API_KEY', 'from-env')
    WebSearch(WebSearchConfig(engine='serper', serper_x_api_key=''))


def test_bad_settings_are_refused_at_construction():
    with pytest.raises(ConfigError, match='engine'):
        WebSearch(WebSearchConfig(engine='bing', serper_x_api_key=KEY))
    with pytest.raises(ConfigError, match='timeout'):
        WebSearch(WebSearchConfig(serper_x_api_key=KEY, timeout=0))


async def test_wrong_key_is_reported_and_never_logged(tmp_path):
    lines = []
    sink = logger.add(lines.append, level='DEBUG')
    try:
        async with FakeWeb(api_key='the-right-key') as fake:
            with pytest.raises(WebSearchError, match='rejected the key') as caught:
                await make_search(fake, tmp_path, serper_x_api_key='sk-secret-123').search('hello world')
    finally:
        logger.remove(sink)
    assert len(fake.requests) == 1  # a refused key is not retried
    assert 'sk-secret-123' not in str(caught.value)
    assert not any('sk-secret-123' in line for line in lines)


async def test_429_then_success_honours_retry_after(tmp_path):
    async with FakeWeb(api_key=KEY) as fake:
        fake.organic = organic('https://example.com/a')
        fake.fail(429, retry_after='0')
        results = await make_search(fake, tmp_path).search('rate limited query')
    assert [r.url for r in results] == ['https://example.com/a']
    assert len(fake.requests) == 2


async def test_retry_after_longer_than_timeout_fails_at_once(tmp_path):
    async with FakeWeb(api_key=KEY) as fake:
        fake.fail(429, retry_after='120')
        with pytest.raises(WebSearchError, match='wait 120s'):
            await make_search(fake, tmp_path, timeout=2.0).search('rate limited query')
    assert len(fake.requests) == 1


async def test_500_until_retries_run_out(tmp_path):
    async with FakeWeb(api_key=KEY) as fake:
        fake.fail(500, times=10)
        with pytest.raises(WebSearchError, match='failed 3 times'):
            await make_search(fake, tmp_path, max_retries=2).search('server error query')
    assert len(fake.requests) == 3


async def test_hanging_engine_ends_in_error_not_a_hang(tmp_path):
    async with FakeWeb(api_key=KEY, hang=True) as fake:
        search = make_search(fake, tmp_path, timeout=0.3)
        # The outer wait_for only guards the test run; the error must come from WebSearch's own deadline.
        with pytest.raises(WebSearchError, match='did not answer within 0.3s'):
            await asyncio.wait_for(search.search('hanging query'), 30)


async def test_pages_are_fetched_and_stripped_of_scripts_and_navigation(tmp_path):
    page = ('<html><head><style>.x{color:red}</style><script>var secret = 1;</script></head><body>'
            '<nav>首页 | 关于</nav><h1>安装茴香豆</h1><p>运行 pip install huixiangdou 即可。</p>'
            '<footer>版权所有</footer></body></html>')
    async with FakeWeb(api_key=KEY) as fake:
        fake.pages['install'] = Page(page.encode('utf-8'))
        fake.organic = organic(fake.page_url('install'), fake.page_url('missing'), 'https://example.com/x')
        results = await make_search(fake, tmp_path, fetch_pages=2).search('茴香豆 安装', max_results=3)
    assert results[0].content == '安装茴香豆\n运行 pip install huixiangdou 即可。'
    assert results[1].content == results[1].snippet  # 404: the snippet stands in
    assert results[2].content == results[2].snippet  # beyond fetch_pages: not fetched


async def test_gbk_page_declared_only_in_meta_is_decoded(tmp_path):
    page = '<html><head><meta charset="gbk"></head><body><p>飞书群聊配置说明</p></body></html>'
    async with FakeWeb(api_key=KEY) as fake:
        fake.pages['gbk'] = Page(page.encode('gbk'), content_type='text/html')
        fake.organic = organic(fake.page_url('gbk'))
        (result,) = await make_search(fake, tmp_path, fetch_pages=1).search('飞书 配置')
    assert result.content == '飞书群聊配置说明'


async def test_page_text_is_capped(tmp_path):
    async with FakeWeb(api_key=KEY) as fake:
        fake.pages['long'] = Page(('<p>' + '长' * 5000 + '</p>').encode('utf-8'))
        fake.organic = organic(fake.page_url('long'))
        (result,) = await make_search(fake, tmp_path, fetch_pages=1, max_page_chars=300).search('long page')
    assert result.content == '长' * 300


async def test_hanging_page_keeps_its_snippet(tmp_path):
    async with FakeWeb(api_key=KEY) as fake:
        fake.pages['slow'] = Page(b'<p>never seen</p>', hang=True)
        fake.organic = organic(fake.page_url('slow'))
        search = make_search(fake, tmp_path, fetch_pages=1, timeout=0.5)
        (result,) = await asyncio.wait_for(search.search('slow page'), 30)
    assert result.content == 'snippet 0'


async def test_each_search_is_saved_as_readable_json(tmp_path):
    async with FakeWeb(api_key=KEY) as fake:
        fake.organic = organic('https://example.com/a')
        await make_search(fake, tmp_path).search('如何撤回消息')
    (saved,) = (tmp_path / 'saved').glob('*.json')
    text = saved.read_text(encoding='utf-8')
    assert '如何撤回消息' in text  # not \\u escapes: people read these files
    record = json.loads(text)
    assert record['engine'] == 'serper'
    assert record['results'][0]['url'] == 'https://example.com/a'


async def test_duckduckgo_results_are_parsed_unwrapped_and_ads_skipped(tmp_path):
    async with FakeWeb() as fake:
        fake.ddg_results = [
            {'title': 'Sponsored', 'url': 'https://ads.example.com/', 'snippet': 'buy now', 'ad': True},
            {'title': 'HuixiangDou 文档', 'url': 'https://example.com/docs?lang=zh&page=2',
             'snippet_html': '关于 <b>茴香豆</b> 的说明'},
            {'title': 'PyTorch', 'url': 'https://pytorch.org/get-started/', 'snippet': 'Install PyTorch'},
        ]
        search = make_search(fake, tmp_path, engine='duckduckgo', serper_x_api_key='',
                             domain_partial_order=['pytorch.org'])
        results = await search.search('茴香豆 文档')
    assert [(r.title, r.url, r.snippet, r.source) for r in results] == [
        ('PyTorch', 'https://pytorch.org/get-started/', 'Install PyTorch', 'duckduckgo'),
        ('HuixiangDou 文档', 'https://example.com/docs?lang=zh&page=2', '关于 茴香豆 的说明', 'duckduckgo')]
    (request,) = fake.requests
    assert request.query == '茴香豆 文档'
    assert 'X-API-KEY' not in request.headers


async def test_duckduckgo_bot_check_is_an_error_that_says_what_to_do(tmp_path):
    async with FakeWeb(ddg_anomaly=True) as fake:
        search = make_search(fake, tmp_path, engine='duckduckgo', serper_x_api_key='')
        with pytest.raises(WebSearchError, match='bot check'):
            await search.search('anything at all')


async def test_no_hits_is_an_empty_list(tmp_path):
    async with FakeWeb(api_key=KEY) as fake:
        assert await make_search(fake, tmp_path).search('nothing matches this') == []


@pytest.mark.parametrize('status, retry_after', [(429, '0.2'), (503, None), (500, None), (0, None)],
                         ids=['429-retry-after', '503', '500-documented-transient', 'dropped-connection'])
async def test_transient_failures_are_retried(tmp_path, status, retry_after):
    async with FakeWeb(api_key=KEY) as fake:
        fake.organic = organic('https://example.com/a')
        fake.fail(status, times=2, retry_after=retry_after)
        loop = asyncio.get_running_loop()
        started = loop.time()
        results = await make_search(fake, tmp_path, max_retries=2).search('flaky engine')
    assert [r.url for r in results] == ['https://example.com/a']
    assert len(fake.requests) == 3
    if retry_after:
        assert loop.time() - started >= 0.4


async def test_400_is_not_retried(tmp_path):
    async with FakeWeb(api_key=KEY) as fake:
        fake.fail(400, times=1)
        with pytest.raises(WebSearchError, match='refused the search'):
            await make_search(fake, tmp_path, max_retries=3).search('bad request')
    assert len(fake.requests) == 1


async def test_retries_stop_within_the_search_timeout(tmp_path):
    async with FakeWeb(api_key=KEY) as fake:
        fake.fail(503, times=1000)
        search = WebSearch(WebSearchConfig(engine='serper', serper_x_api_key=KEY, serper_base_url=fake.base_url,
                                           fetch_pages=0, timeout=1.0, max_retries=1000),
                           save_dir=tmp_path, retry_base_delay=0.05, retry_max_delay=0.2)
        started = asyncio.get_running_loop().time()
        # Either no further wait fits, or (on a loaded machine) the last try is cut at the deadline.
        with pytest.raises(WebSearchError, match='does not fit in \\[web_search\\] timeout|did not answer within 1s'):
            await search.search('never answers')
    assert asyncio.get_running_loop().time() - started <= 1.0 + 0.25  # event-loop scheduling slack
    assert 3 < len(fake.requests) < 1000
