"""What every browser test shares: Debian's chromium driven by Playwright (``executable_path``), a
page on a server, and the password + one-time-code sign-in.

A module calls ``require_browser()`` at import, so a machine without chromium or Playwright skips it
loudly with the reason (dev.py installs both); the ``browser`` fixture (tests/conftest.py) launches one
chromium per test module.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.env import PASSWORD, CallvaultEnv

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def require_browser() -> None:
    """Skip the calling module (at import) when chromium or Playwright is missing, saying which."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (dev.py does) to run the browser tests",
                    allow_module_level=True)
    pytest.importorskip("playwright.sync_api", reason="install the test extras: playwright")


def _browser_env() -> dict[str, str | float | bool]:
    """Chromium's environment. Under `dev.py test --at` its monotonic clock moves with the wall clock
    (libfaketime's default): with it left alone, as the Python processes need, chromium's absolute sleeps
    fail and its processes spin (tests/faketime/sitecustomize.py says why Python needs the opposite)."""
    return {k: v for k, v in os.environ.items() if k != "FAKETIME_DONT_FAKE_MONOTONIC"}


@contextmanager
def launched(*extra_args: str) -> Iterator[Any]:
    """One headless chromium for as long as the block lasts (``extra_args``: more command-line switches)."""
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=[*ARGS, *extra_args],
                                      env=_browser_env())
        try:
            yield chromium
        finally:
            chromium.close()


CSP_VIOLATIONS: list[str] = []
"""Every Content-Security-Policy refusal any page reported (console errors): the pages must work
under the policy, so ``tests/web/conftest.py`` fails a test that leaves one here."""


def _watch_csp(message: Any) -> None:
    if "Content Security Policy" in message.text:
        CSP_VIOLATIONS.append(f"{message.location.get('url', '?')}: {message.text}")


def new_page(browser: Any, base_url: str, *, width: int = 1280, timeout_ms: int = 15_000) -> Any:
    """A page in a fresh context (its own cookies) on ``base_url``; CSP refusals land in ``CSP_VIOLATIONS``."""
    context = browser.new_context(base_url=base_url, viewport={"width": width, "height": 900})
    context.set_default_timeout(timeout_ms)
    context.on("console", _watch_csp)
    return context.new_page()


def wait_for_js(page: Any, condition: str, *, timeout_ms: int = 15_000) -> None:
    """Wait until the JavaScript expression ``condition`` is true in ``page``.

    Why not ``page.wait_for_function``: Playwright builds its predicate with ``eval`` inside the page,
    which the pages' Content-Security-Policy (``script-src 'self'``, no ``unsafe-eval``) refuses, as it
    should. ``page.evaluate`` compiles the function through the debugging protocol, outside the policy."""
    page.evaluate(
        """([timeoutMs]) => new Promise((resolve, reject) => {
             const check = () => (""" + condition + """);
             const started = Date.now();
             const tick = () => {
               if (check()) { resolve(true); return; }
               if (Date.now() - started > timeoutMs) { reject(new Error("timed out waiting for: " + check)); return; }
               setTimeout(tick, 50);
             };
             tick();
           })""", [timeout_ms])


def sign_in(page: Any, env: CallvaultEnv, username: str) -> None:
    """Sign in through the login and one-time-code pages, as a person would."""
    page.goto("/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/mfa")
    page.get_by_label("The 6-digit code").fill(env.otp(username))
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(lambda url: not url.endswith("/mfa"))
