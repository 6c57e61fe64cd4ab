"""A state-changing request made with the session cookie from a page of another site is refused before any
handler runs, even when it carries the session's CSRF token (RELIABILITY 17: "with a bad Origin get 403").

Why a second check behind the CSRF token: the token is the only secret between a forged form and the
signed-in person's account; if it ever leaked (a page, a log, a sibling subdomain's script), the browser's
own ``Origin`` still says where the form came from. Clients without the cookie (bearer-token API clients,
webhooks) carry no ambient credential, so they are not concerned."""

from __future__ import annotations

import httpx

from tests.api.test_auth_web import _csrf, web_sign_in
from tests.support.env import CallvaultEnv, LiveServer

OTHER_SITE = "https://evil.example.net"


def _timezone(browser: httpx.Client) -> str | None:
    zone: str | None = browser.get("/api/v1/me").json()["timezone"]
    return zone


def _change_timezone(browser: httpx.Client, zone: str, **headers: str) -> httpx.Response:
    token = _csrf(browser.get("/account").text)
    return browser.post("/account/timezone", data={"timezone": zone, "csrf_token": token}, headers=headers)


def test_a_form_posted_from_another_site_is_refused_even_with_the_sessions_csrf_token(
        server: LiveServer, env: CallvaultEnv) -> None:
    with server.client(headers={"Accept": "text/html"}) as browser:
        web_sign_in(browser, env, "lead")
        before = _timezone(browser)
        forged = _change_timezone(browser, "Pacific/Auckland", Origin=OTHER_SITE)
        assert forged.status_code == 403
        assert "another site" in forged.text and "<html" in forged.text.lower()  # a page, not raw JSON
        assert _timezone(browser) == before
        null_origin = _change_timezone(browser, "Pacific/Auckland", Origin="null")  # a sandboxed frame or data: URL
        assert null_origin.status_code == 403 and _timezone(browser) == before

        same_site = _change_timezone(browser, "Pacific/Auckland", Origin=server.base_url)
        assert same_site.status_code == 303, same_site.text
        assert _timezone(browser) == "Pacific/Auckland"
        assert _change_timezone(browser, "", Origin=server.base_url).status_code == 303


def test_a_cross_site_fetch_without_origin_is_refused_by_its_fetch_metadata(
        server: LiveServer, env: CallvaultEnv) -> None:
    with server.client() as browser:
        web_sign_in(browser, env, "lead")
        csrf = _csrf(browser.get("/account", headers={"Accept": "text/html"}).text)
        before = _timezone(browser)
        forged = browser.put("/api/v1/me/timezone", json={"timezone": "Asia/Tokyo"},
                             headers={"X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site"})
        assert forged.status_code == 403
        assert forged.json()["error"] == "access_denied" and "another site" in forged.json()["message"]
        assert _timezone(browser) == before
        # The same request from the app's own pages goes through.
        own = browser.put("/api/v1/me/timezone", json={"timezone": "Asia/Tokyo"},
                          headers={"X-CSRF-Token": csrf, "Sec-Fetch-Site": "same-origin", "Origin": server.base_url})
        assert own.status_code == 200 and _timezone(browser) == "Asia/Tokyo"
        browser.put("/api/v1/me/timezone", json={"timezone": ""}, headers={"X-CSRF-Token": csrf}).raise_for_status()


def test_a_bearer_token_client_is_not_concerned(server: LiveServer) -> None:
    with server.client("exec") as api:
        plain = api.put("/api/v1/me/timezone", json={"timezone": "Europe/Paris"})
        assert plain.status_code == 200, plain.text
        # No cookie, so no ambient credential a page could borrow: a token sent from any origin is the client's own.
        foreign = api.put("/api/v1/me/timezone", json={"timezone": ""}, headers={"Origin": OTHER_SITE})
        assert foreign.status_code == 200, foreign.text
        assert api.get("/api/v1/me").json()["timezone"] is None
