"""Web search for the worker: ask Serper (Google) or DuckDuckGo's HTML page, order the hits by preferred
domains, read the top pages' text, and save each search as JSON. It does not judge relevance or answer.
"""
from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import aiohttp
from bs4 import BeautifulSoup
from loguru import logger

from huixiangdou.config import WebSearchConfig
from huixiangdou.primitive.http_retry import RetryPolicy, TransientFailure, parse_retry_after, send_with_retry, \
    transient_status

# 202 is how DuckDuckGo's HTML endpoint says "slow down" before it shows a bot check.
DUCKDUCKGO_SLOW_DOWN = 202
# Bytes read from one result page at most: enough for an article, bounded for a 100 MB PDF link.
MAX_PAGE_BYTES = 2 * 1024 * 1024
PAGE_TYPES = ('text/html', 'application/xhtml+xml', 'text/plain')
NOISE_TAGS = ('script', 'style', 'noscript', 'nav', 'header', 'footer', 'aside', 'form', 'svg', 'iframe')
# Some sites answer bots with 403; a browser-like agent gets the page everyone else sees.
USER_AGENT = ('Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) '
              'Chrome/124.0 Safari/537.36')


class WebSearchError(RuntimeError):
    """The search engine could not be asked or kept refusing; the message says what to change."""


@dataclass
class WebResult:
    """One search hit. `content` is the page's text when it was fetched, else the snippet."""
    title: str
    url: str
    snippet: str
    content: str
    source: str  # 'serper' or 'duckduckgo'


def domain_rank(url: str, domains: list[str]) -> int:
    """Index of the first preferred domain the URL's host is (or is under); len(domains) if none."""
    host = (urlsplit(url).hostname or '').lower()
    for index, domain in enumerate(domains):
        domain = domain.lower().strip('.')
        if host == domain or host.endswith('.' + domain):
            return index
    return len(domains)


def order_by_domain(results: list[WebResult], domains: list[str]) -> list[WebResult]:
    """Results from earlier-listed domains first; ties (and unlisted domains) keep the engine's order."""
    return sorted(results, key=lambda r: domain_rank(r.url, domains))


def parse_serper(payload: dict) -> list[WebResult]:
    """Serper's JSON: the answer box (when it links a page) first, then organic results, URLs deduplicated."""
    hits = []
    box = payload.get('answerBox') or {}
    if box.get('link'):
        text = box.get('answer') or box.get('snippet') or ''
        hits.append(WebResult(box.get('title', ''), box['link'], text, text, 'serper'))
    for item in payload.get('organic') or []:
        if item.get('link'):
            snippet = item.get('snippet', '')
            hits.append(WebResult(item.get('title', ''), item['link'], snippet, snippet, 'serper'))
    return _dedupe(hits)


def parse_duckduckgo(html: str) -> list[WebResult]:
    """DuckDuckGo's HTML results page: result__a links (redirects unwrapped), result__snippet text, no ads."""
    soup = BeautifulSoup(html, 'lxml')
    hits = []
    for link in soup.select('a.result__a'):
        box = link.find_parent(class_='result') or link.parent
        if 'result--ad' in (box.get('class') or []):
            continue
        url = _unwrap_duckduckgo(link.get('href', ''))
        if not url:
            continue
        snippet_tag = box.select_one('.result__snippet')
        snippet = _squash(snippet_tag.get_text(' ')) if snippet_tag else ''
        hits.append(WebResult(_squash(link.get_text(' ')), url, snippet, snippet, 'duckduckgo'))
    return _dedupe(hits)


def page_text(raw: bytes, charset: str | None, content_type: str) -> str:
    """Readable text of a fetched page: scripts, styles and navigation dropped, blank lines squeezed."""
    if content_type == 'text/plain':
        try:
            text = raw.decode(charset or 'utf-8', errors='replace')
        except LookupError:  # a charset name Python does not know
            text = raw.decode('utf-8', errors='replace')
    else:
        # Without a charset header bs4 reads <meta charset> itself, which many GBK-encoded Chinese pages need.
        soup = BeautifulSoup(raw, 'lxml', from_encoding=charset)
        for tag in soup(NOISE_TAGS):
            tag.decompose()
        text = soup.get_text('\n')
    lines = (_squash(line) for line in text.splitlines())
    return '\n'.join(line for line in lines if line)


class WebSearch:
    """Search the web with the engine chosen in [web_search].

    Usage:
        search = WebSearch(config.web_search, save_dir=config.path(config.web_search.save_dir))
        results = await search.search('茴香豆 如何配置飞书', max_results=3)
        results[0].url, results[0].content[:100]
    """

    def __init__(self, config: WebSearchConfig, save_dir: Path | None = None, retry_base_delay: float = 0.5,
                 retry_max_delay: float = 30.0):
        config.validate()
        if retry_base_delay < 0:
            raise ValueError(f'retry_base_delay must be >= 0, got {retry_base_delay}')
        self.config = config
        # No retry starts that could not finish within [web_search] timeout.
        self.retry = RetryPolicy.from_retries(config.max_retries, retry_base_delay, retry_max_delay,
                                              max_total=config.timeout)
        self.engine = config.engine
        self.save_dir = Path(save_dir if save_dir is not None else config.save_dir)
        self.retry_base_delay = retry_base_delay
        self._api_key = config.resolved_serper_x_api_key
        if self.engine == 'serper' and not self._api_key:
            raise WebSearchError('web search with Serper needs a key: get one at https://serper.dev and set '
                                 '[web_search] serper_x_api_key (or SERPER_API_KEY), or set engine = '
                                 '"duckduckgo" in config.ini')

    async def search(self, query: str, max_results: int = 4) -> list[WebResult]:
        """The best `max_results` hits for `query`; raises WebSearchError when the engine fails."""
        query = query.strip()
        if not query:
            raise ValueError('query is empty')
        if max_results < 1:
            raise ValueError(f'max_results must be >= 1, got {max_results}')
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.timeout
        started = time.perf_counter()
        async with aiohttp.ClientSession(headers={'User-Agent': USER_AGENT}) as http:
            try:
                async with asyncio.timeout_at(deadline):
                    if self.engine == 'serper':
                        hits = await self._ask_serper(http, query, deadline)
                    else:
                        hits = await self._ask_duckduckgo(http, query, deadline)
            except TimeoutError:
                raise WebSearchError(f'{self.engine} did not answer within {self.config.timeout:g}s: check the '
                                     'network (a proxy may be needed) or raise [web_search] timeout') from None
            results = order_by_domain(hits, self.config.domain_partial_order)[:max_results]
            await self._read_pages(http, results[:self.config.fetch_pages], deadline)
        logger.info('web search engine={} hits={} kept={} in {:.2f}s', self.engine, len(hits), len(results),
                    time.perf_counter() - started)
        await asyncio.to_thread(self._save, query, results)
        return results

    async def _ask_serper(self, http: aiohttp.ClientSession, query: str, deadline: float) -> list[WebResult]:
        url = self.config.serper_base_url.rstrip('/') + '/search'
        headers = {'X-API-KEY': self._api_key, 'Content-Type': 'application/json'}
        body = await self._request(http, 'POST', url, deadline, headers=headers, json={'q': query})
        try:
            payload = json.loads(body)
        except ValueError:
            raise WebSearchError(f'Serper answered with something that is not JSON: {body[:120]!r}') from None
        return parse_serper(payload)

    async def _ask_duckduckgo(self, http: aiohttp.ClientSession, query: str, deadline: float) -> list[WebResult]:
        # A form POST is what DuckDuckGo's own no-JS page sends; it keeps the query out of proxy logs too.
        url = self.config.duckduckgo_base_url.rstrip('/') + '/html/'
        body = await self._request(http, 'POST', url, deadline, data={'q': query})
        html = body.decode('utf-8', errors='replace')
        hits = parse_duckduckgo(html)
        if not hits and 'anomaly' in html:
            raise WebSearchError('DuckDuckGo asked for a bot check instead of answering: wait a few minutes, '
                                 'or use engine = "serper" in [web_search]')
        return hits

    async def _request(self, http: aiohttp.ClientSession, method: str, url: str, deadline: float,
                       **kwargs) -> bytes:
        """The body of a 2xx answer, under the shared retry policy (429 honouring Retry-After, 5xx, dropped
        connections); the search's deadline bounds every try."""

        async def attempt() -> bytes:
            try:
                async with http.request(method, url, **kwargs) as resp:
                    if 200 <= resp.status < 300 and resp.status != DUCKDUCKGO_SLOW_DOWN:
                        return await resp.read()
                    detail = self._redact((await resp.text(errors='replace'))[:200])
                    # Serper documents 500 as a transient server error.
                    if not (transient_status(resp.status, transient_500=True)
                            or resp.status == DUCKDUCKGO_SLOW_DOWN):
                        raise WebSearchError(self._refusal(resp.status, detail))
                    raise TransientFailure(WebSearchError(f'HTTP {resp.status} {detail}'.strip()),
                                           parse_retry_after(resp.headers.get('Retry-After')))
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
                if isinstance(exc, TimeoutError):
                    raise
                raise TransientFailure(WebSearchError(f'{exc.__class__.__name__}: {exc}')) from None

        try:
            return await send_with_retry(self.retry, attempt, service=f'web search engine={self.engine}')
        except TransientFailure as failure:
            if failure.out_of_time:
                wait = f' and asked to wait {failure.retry_after:.0f}s' if failure.retry_after else ''
                raise WebSearchError(f'{self.engine} failed ({failure.error}){wait}, which does not fit in '
                                     f'[web_search] timeout = {self.config.timeout:g}s: try again later') from None
            raise WebSearchError(f'{self.engine} failed {failure.attempts} times, last with {failure.error}: try '
                                 'again later, or raise [web_search] max_retries') from None

    def _refusal(self, status: int, detail: str) -> str:
        if self.engine == 'serper' and status in (401, 403):
            return (f'Serper rejected the key (HTTP {status} {detail}): check [web_search] serper_x_api_key '
                    'or SERPER_API_KEY, and the credit left on https://serper.dev')
        return f'{self.engine} refused the search (HTTP {status} {detail}): check [web_search] in config.ini'

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, '***') if self._api_key else text

    async def _read_pages(self, http: aiohttp.ClientSession, results: list[WebResult], deadline: float) -> None:
        """Replace each result's content by its page text; pages not read by the deadline keep the snippet."""
        if not results:
            return
        tasks = [asyncio.create_task(self._read_page(http, r.url)) for r in results]
        remaining = deadline - asyncio.get_running_loop().time()
        done, pending = await asyncio.wait(tasks, timeout=max(remaining, 0.0))
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for result, task in zip(results, tasks):
            if task not in done:
                logger.debug('page {} not read before the search deadline', result.url)
            elif task.exception() is not None:
                logger.warning('page {} could not be parsed: {!r}', result.url, task.exception())
            elif task.result():
                result.content = task.result()

    async def _read_page(self, http: aiohttp.ClientSession, url: str) -> str:
        try:
            async with http.get(url, max_redirects=5) as resp:
                if resp.status != 200 or resp.content_type not in PAGE_TYPES:
                    logger.debug('page {} skipped: HTTP {} {}', url, resp.status, resp.content_type)
                    return ''
                raw = await _read_capped(resp, MAX_PAGE_BYTES)
                charset, content_type = resp.charset, resp.content_type
        except (aiohttp.ClientError, ValueError) as exc:
            # A page that cannot be read is not a failed search: the snippet stands in for it.
            logger.debug('page {} not read: {}', url, exc)
            return ''
        text = await asyncio.to_thread(page_text, raw, charset, content_type)
        return text[:self.config.max_page_chars]

    def _save(self, query: str, results: list[WebResult]) -> None:
        stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S-%f')
        digest = hashlib.sha1(query.encode('utf-8')).hexdigest()[:8]
        path = self.save_dir / f'{stamp}-{digest}.json'
        record = {'query': query, 'engine': self.engine, 'time': stamp,
                  'results': [asdict(r) for r in results]}
        try:
            self.save_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(record, ensure_ascii=False, indent=2), encoding='utf-8')
        except OSError as exc:
            # The record is for later reading; losing it must not cost the user the answer.
            logger.warning('web search result not saved to {}: {}', path, exc)


async def _read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """At most `limit` bytes of the body; the rest is never downloaded."""
    parts, size = [], 0
    while size < limit:
        chunk = await resp.content.read(min(65536, limit - size))
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    return b''.join(parts)


def _unwrap_duckduckgo(href: str) -> str:
    """The target of DuckDuckGo's //duckduckgo.com/l/?uddg=<url> redirect; '' for non-web links."""
    url = urljoin('https://duckduckgo.com/', href)
    parts = urlsplit(url)
    if parts.path.rstrip('/') == '/l' and 'uddg' in parse_qs(parts.query):
        url = parse_qs(parts.query)['uddg'][0]
        parts = urlsplit(url)
    if parts.scheme not in ('http', 'https') or (parts.hostname or '').endswith('duckduckgo.com'):
        return ''
    return url


def _dedupe(results: list[WebResult]) -> list[WebResult]:
    seen: set[str] = set()
    unique = []
    for result in results:
        if result.url not in seen:
            seen.add(result.url)
            unique.append(result)
    return unique


def _squash(text: str) -> str:
    return ' '.join(text.split())
