"""Browser tests: no page may trip its own Content-Security-Policy (an inline script or style the
policy blocks is a page that silently stops working)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.browser import CSP_VIOLATIONS


@pytest.fixture(autouse=True)
def no_csp_violations() -> Iterator[None]:
    CSP_VIOLATIONS.clear()
    yield
    assert CSP_VIOLATIONS == [], "the page broke its own Content-Security-Policy:\n" + "\n".join(CSP_VIOLATIONS)
