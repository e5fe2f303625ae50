"""The Knowledge base page's Cancel button stops a running build (in a real browser, Debian's Chromium
through Playwright): the progress says "cancelled" and the files keep their status."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.crafted_files import crafted_docx
from tests.web.browser import VIEWPORT, launch, login
from tests.web.conftest import copy_knowledge_base, start_console


@pytest.fixture
def console(tmp_path, sample_store, embedder):
    copy_knowledge_base(tmp_path, sample_store)
    # python-docx walks this one's 600,000 paragraphs for much longer than the test runs.
    crafted_docx(tmp_path / 'repodir' / 'slow.docx', 20)
    server, stop = start_console(tmp_path, embedder, feature_store={'parse_timeout_s': 300,
                                                                    'max_expanded_mb': 1000})
    try:
        yield server
    finally:
        stop()


def test_cancel_button_stops_the_running_build(console):
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_context(viewport=VIEWPORT, locale='en-US').new_page()
            errors = []
            page.on('pageerror', lambda exc: errors.append(str(exc)))
            login(page, console.base_url, console.admin_token)
            page.click('#rebuild-button')
            expect(page.locator('#build-progress')).to_have_attribute('data-state', 'running', timeout=30_000)
            page.click('#cancel-build-button')
            expect(page.locator('#build-progress')).to_have_attribute('data-state', 'cancelled', timeout=60_000)
            expect(page.locator('#build-progress')).to_contain_text('cancelled')
            expect(page.locator('#files-table tr[data-path="slow.docx"] .status')).to_contain_text('pending')
            assert not errors, f'the page threw: {errors}'
        finally:
            browser.close()
