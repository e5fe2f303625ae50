"""Debian's Chromium driven by Playwright, the way the page tests and bench/bench_web.py use it.

The console sets `body[data-ready=<page>]` once a page has its data and its controls work; `open_page`
waits for it. `watch` records every value an element's attribute or text takes, so a test can see a
state that lasts only a moment (a build's "running", a half-streamed answer).
"""
from __future__ import annotations

import os
from pathlib import Path

CHROMIUM = '/usr/bin/chromium'
CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
                 '--disable-sync', '--no-first-run']
VIEWPORT = {'width': 1280, 'height': 800}
ROOT = Path(__file__).resolve().parents[2]
# Every test run saves the pages here (ignored by git); HUIXIANGDOU_UPDATE_SCREENSHOTS=1 writes them to
# docs/images/web/ instead, to refresh the pictures in docs/web.md without every run changing the repository.
SCREENSHOTS = (ROOT / 'docs' / 'images' / 'web' if os.environ.get('HUIXIANGDOU_UPDATE_SCREENSHOTS') == '1'
               else ROOT / 'logs' / 'screenshots')


def launch(playwright):
    """A headless Chromium from the system package (install.sh --test installs it)."""
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f'{CHROMIUM} is missing: run ./install.sh --test (it installs Debian\'s chromium)')
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def open_page(page, base_url: str, route: str, timeout: float = 30_000) -> None:
    """Go to a console page and wait until it has loaded its data."""
    page.goto(f'{base_url}/#/{route}')
    page.wait_for_selector(f'body[data-ready="{route}"]', timeout=timeout)


def login(page, base_url: str, token: str) -> None:
    """Log in on the Log in page with the admin token, as an admin would; back on the Knowledge base page."""
    open_page(page, base_url, 'login')
    page.fill('#login-token', token)
    page.click('#login-button')
    page.wait_for_selector('body[data-role="admin"]')
    page.wait_for_selector('body[data-ready="kb"]')


def watch(page, selector: str, what: str) -> None:
    """Start recording `what` ('text' or an attribute name) of `selector` on every change; read the
    values back with `watched(page, selector)`."""
    page.evaluate("""([selector, what]) => {
        const el = document.querySelector(selector);
        const seen = (window.__watched = window.__watched || {})[selector] = [];
        const read = () => what === 'text' ? el.textContent : el.getAttribute(what);
        new MutationObserver(() => { const v = read(); if (seen[seen.length - 1] !== v) seen.push(v); })
            .observe(el, { attributes: true, childList: true, subtree: true, characterData: true });
    }""", [selector, what])


def watched(page, selector: str) -> list:
    return page.evaluate('(selector) => (window.__watched || {})[selector] || []', selector)


def screenshot(page, name: str) -> Path:
    """The page as it looks now (1280x800): logs/screenshots/<name>.png, or docs/images/web/ (see SCREENSHOTS)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f'{name}.png'
    page.mouse.move(0, 799)  # no hover highlight in the picture
    page.evaluate("window.scrollTo(0, 0); document.getElementById('toast').hidden = true")
    page.screenshot(path=str(path))
    return path
