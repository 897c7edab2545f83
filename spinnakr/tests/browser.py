"""Headless Chromium for the browser tests: Debian's chromium driven by Playwright's sync API.

Loaded by the root conftest as a plugin, so every test module can ask for ``browser`` (one
Chromium per module), ``new_context`` (fresh profiles that fail the test on a page's uncaught
script error) and call ``shoot`` for a screenshot under ``test-artifacts/``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

CHROMIUM = "/usr/bin/chromium"  # Debian's: a browser is never downloaded
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium for a test module. Playwright's sync API keeps an asyncio loop running in
    this thread, so Django would refuse the tests' own ORM calls (the cast, the flush) made
    while it runs; they are plain synchronous code all the same."""
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def new_context(browser: Browser) -> Iterator[Callable[..., BrowserContext]]:
    """Makes fresh browser profiles (Playwright's ``new_context`` options); an uncaught script
    error on any of their pages fails the test. They are closed after the test."""
    contexts: list[BrowserContext] = []
    errors: list[str] = []

    def make(**options: Any) -> BrowserContext:
        context = browser.new_context(**options)
        context.on("page", lambda page: page.on("pageerror", lambda error: errors.append(str(error))))
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()
    assert errors == []


def shoot(page: Page, name: str) -> None:
    """A full-page screenshot kept as ``test-artifacts/<name>.png``."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
