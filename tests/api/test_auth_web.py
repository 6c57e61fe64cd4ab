"""The web sign-in as a browser does it: CSRF on every form, a new session at each step (no fixation),
cookie flags, idle and absolute timeouts."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest

from callvault.core.clock import FixedClock
from tests.support.env import PASSWORD, CallvaultEnv, LiveServer

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _csrf(html: str) -> str:
    match = CSRF.search(html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def web_sign_in(client: httpx.Client, env: CallvaultEnv, username: str) -> None:
    """Sign a browser-like client in through the pages: password form, then the one-time code form.

    The code is taken first: finding an unused one may move the server's clock (``CallvaultEnv.otp``), which
    must not happen between the password and the code (the half-signed-in session lasts minutes)."""
    code = env.otp(username)
    form = client.get("/")
    resp = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": _csrf(form.text)})
    assert resp.status_code == 303 and resp.headers["location"] == "/mfa", resp.text
    page = client.get("/mfa")
    done = client.post("/mfa", data={"code": code, "csrf_token": _csrf(page.text)})
    assert done.status_code == 303 and done.headers["location"] == "/", done.text
    assert client.get("/api/v1/me").status_code == 200, "signed in: the session is a full one, not an expired half"


@contextmanager
def signed_in_pages(server: LiveServer, env: CallvaultEnv, names: Iterable[str]) -> Iterator[dict[str, httpx.Client]]:
    """One browser-like client per person, each signed in through the pages, closed afterwards."""
    clients = {}
    try:
        for name in names:
            clients[name] = httpx.Client(base_url=server.base_url, timeout=30, headers={"Accept": "text/html"})
            web_sign_in(clients[name], env, name)
        yield clients
    finally:
        for client in clients.values():
            client.close()


def test_signing_in_through_the_pages_reaches_the_recordings(server: LiveServer, env: CallvaultEnv) -> None:
    with server.client() as browser:
        web_sign_in(browser, env, "lead")
        home = browser.get("/")
        assert "Recordings" in home.text
        assert browser.get("/api/v1/me").json()["username"] == "lead"


def test_session_cookie_is_httponly_and_samesite_strict(server: LiveServer, env: CallvaultEnv) -> None:
    with server.client() as browser:
        form = browser.get("/")
        resp = browser.post("/login", data={"username": "exec", "password": PASSWORD, "csrf_token": _csrf(form.text)})
        cookie = resp.headers["set-cookie"].lower()
    assert "cv_session=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    assert "max-age" not in cookie.split("cv_session=")[1].split(",")[0]  # a browser-session cookie


class _BehindTls:
    """A browser reaching callvault through the TLS-terminating proxy (``X-Forwarded-Proto: https``).

    httpx keeps ``Secure`` cookies to itself over plain HTTP, so this client keeps its own jar and
    every ``Set-Cookie`` line it was sent (to check the attributes a browser would enforce)."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30)
        self.jar: dict[str, str] = {}
        self.set_cookies: list[str] = []

    def __enter__(self) -> _BehindTls:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        headers = {"X-Forwarded-Proto": "https"}
        if self.jar:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.jar.items())
        resp = self.http.request(method, url, headers=headers, **kwargs)
        self.http.cookies.clear()
        for line in resp.headers.get_list("set-cookie"):
            self.set_cookies.append(line)
            name, _, rest = line.partition("=")
            if "max-age=0" in line.lower():
                self.jar.pop(name, None)
            else:
                self.jar[name] = rest.split(";", 1)[0]
        return resp

    def sign_in(self, env: CallvaultEnv, username: str) -> None:
        form = self.request("GET", "/")
        resp = self.request("POST", "/login", data={"username": username, "password": PASSWORD,
                                                    "csrf_token": _csrf(form.text)})
        assert resp.status_code == 303 and resp.headers["location"] == "/mfa", resp.text
        page = self.request("GET", "/mfa")
        done = self.request("POST", "/mfa", data={"code": env.otp(username), "csrf_token": _csrf(page.text)})
        assert done.status_code == 303 and done.headers["location"] == "/", done.text


def test_behind_tls_every_cookie_is_host_prefixed_and_an_unprefixed_copy_is_not_believed(
        server: LiveServer, env: CallvaultEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(env.runtime, "settings", dataclasses.replace(
        env.runtime.settings, trusted_proxies=("127.0.0.1/32",)))  # the proxy, as deploy/ configures it
    with _BehindTls(server.base_url) as browser:
        browser.sign_in(env, "exec")
        assert list(browser.jar) == ["__Host-cv_session"]  # the sign-in form's cookie was spent and removed
        for line in browser.set_cookies:
            attributes = [part.strip().lower() for part in line.split(";")[1:]]
            assert line.startswith("__Host-"), line
            assert "secure" in attributes and "path=/" in attributes and "httponly" in attributes, line
            assert not any(a.startswith("domain") for a in attributes), line
        assert browser.request("GET", "/api/v1/me").json()["username"] == "exec"
        # The same valid session under the unprefixed name (as a sibling subdomain or a plain-HTTP
        # response could plant it) is not read on an HTTPS request.
        value = browser.jar.pop("__Host-cv_session")
        browser.jar["cv_session"] = value
        assert browser.request("GET", "/api/v1/me").status_code == 401
        with server.client() as plain:  # over plain HTTP the unprefixed name is the one in use
            plain.cookies.set("cv_session", value)
            assert plain.get("/api/v1/me").json()["username"] == "exec"


def test_a_forwarded_proto_from_an_untrusted_peer_is_not_believed(server: LiveServer, env: CallvaultEnv) -> None:
    with _BehindTls(server.base_url) as browser:  # no trusted proxy configured: it talks to us directly
        browser.sign_in(env, "exec")
        assert list(browser.jar) == ["cv_session"]
        assert not any("secure" in line.lower() for line in browser.set_cookies)
        assert browser.request("GET", "/api/v1/me").json()["username"] == "exec"


def test_login_form_without_its_csrf_token_is_refused(server: LiveServer) -> None:
    with server.client() as browser:
        browser.get("/")
        forged = browser.post("/login", data={"username": "lead", "password": PASSWORD, "csrf_token": "forged"})
        missing = browser.post("/login", data={"username": "lead", "password": PASSWORD})
    assert forged.status_code == missing.status_code == 403
    assert "cv_session" not in forged.headers.get("set-cookie", "")


def test_state_changing_forms_need_the_sessions_csrf_token(server: LiveServer, env: CallvaultEnv) -> None:
    with server.client() as browser:
        web_sign_in(browser, env, "newhire")
        assert browser.post("/acknowledge", data={"csrf_token": "wrong"}).status_code == 403
        assert browser.post("/logout").status_code == 403
        assert browser.get("/api/v1/me").json()["policy_acknowledged"] is False
        # A cookie-authenticated API call that changes state needs the header too.
        assert browser.post("/api/v1/me/acknowledge-policy").status_code == 403


def test_a_session_planted_before_sign_in_is_never_adopted(server: LiveServer, env: CallvaultEnv) -> None:
    with server.client() as victim:
        victim.cookies.set("cv_session", "attacker-chosen-value", domain="127.0.0.1")
        form = victim.get("/")
        victim.post("/login", data={"username": "exec", "password": PASSWORD, "csrf_token": _csrf(form.text)})
        half = victim.cookies.get("cv_session")
        assert half and half != "attacker-chosen-value"
        page = victim.get("/mfa")
        victim.post("/mfa", data={"code": env.otp("exec"), "csrf_token": _csrf(page.text)})
        full = victim.cookies.get("cv_session")
        assert full and full not in (half, "attacker-chosen-value")
    with server.client() as attacker:
        for value in ("attacker-chosen-value", half):
            attacker.cookies.set("cv_session", value)
            assert attacker.get("/api/v1/me").status_code == 401


def test_a_half_signed_in_session_reaches_nothing(server: LiveServer) -> None:
    with server.client() as browser:
        form = browser.get("/")
        browser.post("/login", data={"username": "exec", "password": PASSWORD, "csrf_token": _csrf(form.text)})
        assert browser.get("/api/v1/recordings").status_code == 401
        assert browser.get("/").status_code == 303  # back to the code form


def test_a_wrong_code_on_the_page_is_refused_and_counted(server: LiveServer, env: CallvaultEnv) -> None:
    with server.client() as browser:
        form = browser.get("/")
        browser.post("/login", data={"username": "it", "password": PASSWORD, "csrf_token": _csrf(form.text)})
        page = browser.get("/mfa")
        wrong = browser.post("/mfa", data={"code": "000000", "csrf_token": _csrf(page.text)})
        assert wrong.status_code == 401 and "wrong username, password or one-time code" in wrong.text.lower()
        assert browser.get("/api/v1/me").status_code == 401


def test_an_idle_session_ends_and_stays_ended(live: LiveServer) -> None:
    env = live.env
    with live.client() as browser:
        web_sign_in(browser, env, "lead")
        start = env.runtime.clock.now()
        env.runtime.clock = FixedClock(start + timedelta(seconds=env.settings.session_idle_seconds - 60))
        assert browser.get("/api/v1/me").status_code == 200  # activity keeps it alive
        env.runtime.clock = FixedClock(start + timedelta(seconds=2 * env.settings.session_idle_seconds))
        assert browser.get("/api/v1/me").status_code == 401
        env.runtime.clock = FixedClock(start)
        assert browser.get("/api/v1/me").status_code == 401  # revoked for good, not merely idle


def test_a_busy_session_still_ends_at_the_absolute_limit(live: LiveServer) -> None:
    env = live.env
    with live.client() as browser:
        web_sign_in(browser, env, "lead")
        start = env.runtime.clock.now()
        step = timedelta(seconds=env.settings.session_idle_seconds // 2)
        moment = start
        while moment - start < timedelta(seconds=env.settings.session_absolute_seconds) - step:
            moment += step
            env.runtime.clock = FixedClock(moment)
            assert browser.get("/api/v1/me").status_code == 200
        env.runtime.clock = FixedClock(start + timedelta(seconds=env.settings.session_absolute_seconds))
        assert browser.get("/api/v1/me").status_code == 401


def test_mfa_set_up_in_the_browser_shows_the_secret_once_then_recovery_codes(live: LiveServer) -> None:
    import pyotp

    from callvault.identity import account_codes, mfa
    from callvault.identity import service as identity

    env = live.env
    with env.runtime.db.unit_of_work() as session:
        alice = identity.get_user(session, "alice")
        mfa.reset(session, user=alice, actor="test")
        enrolment_code = account_codes.issue(session, user=alice, purpose="enrol", actor="test").code
    with live.client() as browser:
        form = browser.get("/")
        resp = browser.post("/login", data={"username": "alice", "password": PASSWORD, "csrf_token": _csrf(form.text)})
        assert resp.headers["location"] == "/mfa/enrol"
        ask = browser.get("/mfa/enrol")
        assert "ask an administrator" in ask.text and "<code>" not in ask.text
        page = browser.post("/mfa/enrol/start", data={"enrolment_code": enrolment_code.lower(),
                                                      "csrf_token": _csrf(ask.text)})
        secret = re.search(r"<code>([A-Z2-7]+)</code>", page.text)
        assert secret and "otpauth://totp/" in page.text
        again = browser.post("/mfa/enrol/start", data={"enrolment_code": enrolment_code, "csrf_token": _csrf(ask.text)})
        assert secret.group(1) in again.text  # the same secret until confirmed: no re-scan after a typo
        done = browser.post("/mfa/enrol", data={"code": pyotp.TOTP(secret.group(1)).now(),
                                                "enrolment_code": enrolment_code, "csrf_token": _csrf(page.text)})
        assert done.status_code == 200 and done.text.count("<li><code>") == 10
        assert browser.get("/api/v1/me").json()["mfa_enrolled"] is True
