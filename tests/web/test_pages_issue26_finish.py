"""Issue 26's last points at the HTTP level (a browser-like client through the pages, no Chromium): misuse
reports assigned and closed with a note, each person's own time zone kept on their account, a banner after
every action, the caller form offering deletion where the policy's notice promises it, and the compliance
report as a PDF. Times come from the product clock and from stored calls, never from the test machine's date.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select

from callvault.audit.models import AuditEntry
from tests.api.test_auth_web import web_sign_in
from tests.support.audio import CALL_START, metadata, upload, wav_bytes
from tests.support.env import CallvaultEnv, LiveServer

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _csrf(html: str) -> str:
    match = CSRF.search(html)
    assert match, "no CSRF field on the page"
    return match.group(1)


@pytest.fixture()
def browser_as(server: LiveServer, env: CallvaultEnv) -> Iterator[object]:
    clients: list[httpx.Client] = []

    def sign_in(username: str) -> httpx.Client:
        client = httpx.Client(base_url=server.base_url, timeout=30, headers={"Accept": "text/html"})
        clients.append(client)
        web_sign_in(client, env, username)
        return client

    yield sign_in
    for c in clients:
        c.close()


def _audit(env: CallvaultEnv, action: str) -> list[AuditEntry]:
    with env.runtime.db.unit_of_work() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)))


# ----------------------------------------------------------------------------------------- 1: misuse assignment
def test_a_recipient_assigns_and_closes_a_misuse_report_on_the_page(browser_as: object, env: CallvaultEnv) -> None:
    alice = browser_as("alice")  # type: ignore[operator]
    page = alice.get("/misuse")
    filed = alice.post("/misuse", data={"summary": "Replays at night", "csrf_token": _csrf(page.text)})
    assert filed.status_code == 303
    boss = browser_as("exec")  # type: ignore[operator]
    page = boss.get("/misuse")
    report_id = re.search(r'action="/misuse/([^/]+)/assignee"', page.text).group(1)  # type: ignore[union-attr]
    assert '<option value="exec"' in page.text  # the policy's recipients (executives) are offered
    resp = boss.post(f"/misuse/{report_id}/assignee", data={"assignee": "exec", "csrf_token": _csrf(page.text)})
    assert resp.status_code == 303
    shown = boss.get(resp.headers["location"])
    assert "The report is assigned to exec." in shown.text and "Assigned to: <strong>exec</strong>" in shown.text
    refused = boss.post(f"/misuse/{report_id}/assignee", data={"assignee": "lead", "csrf_token": _csrf(page.text)})
    assert refused.status_code == 422 and "Lead is not an active executive" in refused.text
    no_note = boss.post(f"/misuse/{report_id}/status", data={"status": "closed", "csrf_token": _csrf(page.text)})
    assert no_note.status_code == 422 and "closing note" in no_note.text
    closed = boss.post(f"/misuse/{report_id}/status", data={"status": "closed", "note": "Approved QA replay",
                                                            "csrf_token": _csrf(page.text)})
    assert closed.status_code == 303
    assert "Closed: Approved QA replay" in boss.get("/misuse").text
    assert [(e.actor, e.details["to"]) for e in _audit(env, "misuse.assigned") if e.object_id == report_id] == [
        ("exec", "exec")]


def test_someone_outside_the_recipients_cannot_assign_a_report(browser_as: object, env: CallvaultEnv) -> None:
    lead = browser_as("lead")  # type: ignore[operator]
    page = lead.get("/misuse")
    filed = lead.post("/misuse", data={"summary": "Odd downloads", "csrf_token": _csrf(page.text)})
    assert filed.status_code == 303
    with env.runtime.db.unit_of_work() as session:
        from callvault.oversight.models import MisuseReport
        report_id = session.scalars(select(MisuseReport.id).where(MisuseReport.summary == "Odd downloads")).one()
    assert 'action="/misuse/' not in lead.get("/misuse").text.split("Odd downloads")[1][:2000]
    resp = lead.post(f"/misuse/{report_id}/assignee", data={"assignee": "exec", "csrf_token": _csrf(page.text)})
    assert resp.status_code == 403
    assert [(e.actor, e.decision) for e in _audit(env, "misuse.assigned") if e.object_id == report_id] == [
        ("lead", "deny")]


# ----------------------------------------------------------------------------------------- 2: the account's zone
@pytest.fixture(scope="module")
def toronto_call(server: LiveServer) -> str:
    with server.client("admin") as admin:
        resp = upload(admin, wav_bytes(0.5, seed=2606), metadata(remote_number="+1 416 555 0111"))
        assert resp.status_code == 201, resp.text
        rec: str = resp.json()["id"]
    return rec


def _set_zone(client: httpx.Client, zone: str) -> httpx.Response:
    page = client.get("/account")
    return client.post("/account/timezone", data={"timezone": zone, "csrf_token": _csrf(page.text)})


def test_toronto_and_sydney_users_see_the_same_call_in_their_own_local_times(
        browser_as: object, toronto_call: str, env: CallvaultEnv) -> None:
    alice, lead = browser_as("alice"), browser_as("lead")  # type: ignore[operator]
    resp = _set_zone(alice, "Australia/Sydney")
    assert resp.status_code == 303
    assert "Your time zone is now Australia/Sydney" in alice.get(resp.headers["location"]).text
    sydney = CALL_START.astimezone(ZoneInfo("Australia/Sydney")).strftime("%Y-%m-%d %H:%M:%S")
    toronto = CALL_START.astimezone(ZoneInfo("America/Toronto")).strftime("%Y-%m-%d %H:%M:%S")
    mine = alice.get(f"/recordings/{toronto_call}").text
    theirs = lead.get(f"/recordings/{toronto_call}").text  # lead never chose: the policy's zone (Toronto)
    assert sydney in mine and "Australia/Sydney" in mine and toronto not in mine
    assert toronto in theirs and "America/Toronto" in theirs and sydney not in theirs
    # The search's date pickers are read in the account's zone too, and say which it is.
    search = alice.get("/recordings")
    assert 'name="tz" value="Australia/Sydney"' in search.text
    day = CALL_START.astimezone(ZoneInfo("Australia/Sydney")).date().isoformat()
    found = alice.get("/recordings", params={"started_from": day, "started_to": day})
    assert toronto_call in found.text
    # Kept on the account, not in this browser: a fresh sign-in elsewhere sees it.
    other = browser_as("alice")  # type: ignore[operator]
    assert "Australia/Sydney" in other.get("/recordings").text
    assert [e.details["to"] for e in _audit(env, "account.timezone_changed") if e.actor == "alice"][-1] == (
        "Australia/Sydney")
    assert _set_zone(alice, "").status_code == 303  # back to the policy's zone
    assert toronto in alice.get(f"/recordings/{toronto_call}").text


def test_a_zone_that_does_not_exist_is_refused_with_an_example(browser_as: object) -> None:
    alice = browser_as("alice")  # type: ignore[operator]
    resp = _set_zone(alice, "Mars/Olympus_Mons")
    assert resp.status_code == 422
    assert "is not a time zone name; use one like America/Toronto" in resp.text
    assert "Traceback" not in resp.text and not resp.text.lstrip().startswith("{")
