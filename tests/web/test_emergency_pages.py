"""Issue 28's pages over HTTP (a browser-like client signed in through the pages): declaring an emergency
and its banner on every page, the recording page reaching beyond scope with the purpose still asked, the
reviewer's queue, a caller's accounting of disclosures with its CSV, and the recording page's retention
extension form. Each with the refused role (audited) and bad input naming the field."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from callvault.audit.models import AuditEntry
from tests.api.test_auth_web import _csrf, signed_in_pages
from tests.support.audio import metadata, upload, wav_bytes
from tests.support.env import CallvaultEnv, LiveServer

CALLER = "+14165550142"


@pytest.fixture(scope="module")
def call(server_r: LiveServer) -> str:
    with server_r.client("admin") as admin:
        resp = upload(admin, wav_bytes(0.5, seed=2828), metadata())
    assert resp.status_code == 201, resp.text
    rec: str = resp.json()["id"]
    return rec


@pytest.fixture(scope="module")
def pages(server_r: LiveServer, env_r: CallvaultEnv) -> Iterator[dict[str, httpx.Client]]:
    """One signed-in browser-like client per person (each sign-in spends a one-time code)."""
    with signed_in_pages(server_r, env_r, ("bob", "exec", "lead")) as clients:
        yield clients


def _last(env: CallvaultEnv, action: str, actor: str) -> AuditEntry:
    with env.runtime.db.unit_of_work() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == action, AuditEntry.actor == actor)
                                .order_by(AuditEntry.seq.desc()).limit(1)).one()
        session.expunge(entry)
    return entry


def test_bob_declares_sees_the_banner_everywhere_and_opens_alices_call_naming_a_purpose(
        pages: dict[str, httpx.Client], env_r: CallvaultEnv, call: str) -> None:
    bob = pages["bob"]
    assert bob.get(f"/recordings/{call}").status_code == 404
    form = bob.get("/emergency")
    assert form.status_code == 200 and 'id="declare-form"' in form.text and 'max="30"' in form.text
    bad = bob.post("/emergency", data={"reason": "help", "minutes": "45", "csrf_token": _csrf(form.text)})
    assert bad.status_code == 422 and "reason:" in bad.text and "minutes: must be 1 to 30" in bad.text
    assert 'id="emergency-banner"' not in bad.text
    done = bob.post("/emergency", data={"reason": "caller collapsed mid-call; need the address they gave",
                                        "minutes": "20", "csrf_token": _csrf(form.text)})
    assert done.status_code == 303
    for path in ("/", "/recordings", "/access"):
        page = bob.get(path)
        assert re.search(r'id="emergency-banner".*?(20|19) minutes left', page.text, re.S), path
    opened = bob.get("/emergency/open", params={"recording": call})
    assert opened.status_code == 303 and opened.headers["location"] == f"/recordings/{call}"
    assert bob.get("/emergency/open", params={"recording": "../admin"}).status_code == 422
    page = bob.get(f"/recordings/{call}")
    assert page.status_code == 200 and 'id="purpose-form"' in page.text and 'value="emergency_access"' in page.text
    listened = bob.get(f"/recordings/{call}", params={"purpose": "emergency_access"})
    assert listened.status_code == 200
    declaration = _last(env_r, "emergency.declared", "bob").object_id
    play = _last(env_r, "recording.play", "bob")
    assert play.decision == "allow" and play.purpose == "emergency_access"
    assert play.details["emergency_declaration"] == declaration


def test_the_executive_reviews_bobs_declaration_from_the_queue(
        pages: dict[str, httpx.Client], env_r: CallvaultEnv, call: str) -> None:
    erin = pages["exec"]
    declaration = _last(env_r, "emergency.declared", "bob").object_id
    queue = erin.get("/emergency/reviews")
    assert queue.status_code == 200 and f'id="declaration-{declaration}"' in queue.text and call in queue.text
    missing = erin.post(f"/emergency/reviews/{declaration}", data={"notes": "", "csrf_token": _csrf(queue.text)})
    assert missing.status_code == 422 and "outcome: must be one of" in missing.text and "notes:" in missing.text
    done = erin.post(f"/emergency/reviews/{declaration}", data={
        "outcome": "justified", "notes": "ambulance needed the address", "csrf_token": _csrf(queue.text)})
    assert done.status_code == 303 and "done=justified" in done.headers["location"]
    assert _last(env_r, "emergency.reviewed", "exec").object_id == declaration
    assert f'id="declaration-{declaration}"' not in erin.get("/emergency/reviews").text
    again = erin.post(f"/emergency/reviews/{declaration}", data={
        "outcome": "misuse", "notes": "second thoughts", "csrf_token": _csrf(queue.text)})
    assert again.status_code == 422 and 'id="review-errors"' in again.text and "already reviewed" in again.text


def test_a_role_that_does_not_review_is_refused_the_queue_with_the_reason_and_it_is_audited(
        pages: dict[str, httpx.Client], env_r: CallvaultEnv) -> None:
    page = pages["lead"].get("/emergency/reviews")
    assert page.status_code == 403 and "reviewer" in page.text
    assert _last(env_r, "emergency.reviews_list", "lead").decision == "deny"


def test_the_executive_reads_the_accounting_and_downloads_the_csv_and_a_bad_number_is_named(
        pages: dict[str, httpx.Client], env_r: CallvaultEnv, call: str) -> None:
    erin = pages["exec"]
    assert 'href="/disclosures"' in erin.get("/").text
    bad = erin.get("/disclosures", params={"number": "12ab"})
    assert bad.status_code == 422 and "number:" in bad.text and 'aria-invalid="true"' in bad.text
    page = erin.get("/disclosures", params={"number": "+1 (416) 555-0142"})
    assert page.status_code == 200 and 'id="disclosures"' in page.text and "bob" in page.text
    assert 'href="/disclosures.csv?number=%2B14165550142"' in page.text
    csv = erin.get("/disclosures.csv", params={"number": CALLER})
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv") and call in csv.text
    assert _last(env_r, "disclosures.read", "exec").details["format"] == "csv"


def test_a_role_the_policy_does_not_name_gets_no_accounting_and_the_refusal_is_audited(
        pages: dict[str, httpx.Client], env_r: CallvaultEnv) -> None:
    lead = pages["lead"]
    assert 'href="/disclosures"' not in lead.get("/").text
    page = lead.get("/disclosures", params={"number": CALLER})
    assert page.status_code == 403 and "accounting_of_disclosures.roles: executive" in page.text
    assert lead.get("/disclosures.csv", params={"number": CALLER}).status_code == 403
    assert _last(env_r, "disclosures.read", "lead").decision == "deny"


def test_the_executive_extends_retention_from_the_recording_page_and_a_lead_cannot(
        pages: dict[str, httpx.Client], env_r: CallvaultEnv, call: str) -> None:
    erin, lead = pages["exec"], pages["lead"]
    page = erin.get(f"/recordings/{call}")
    assert 'id="retention-bounds"' in page.text and 'id="extension-form"' in page.text
    token = _csrf(page.text)
    no_reason = erin.post(f"/recordings/{call}/extension", data={"months": "70", "reason": "", "csrf_token": token})
    assert no_reason.status_code == 303 and "extension_error=reason" in no_reason.headers["location"]
    shown = erin.get(no_reason.headers["location"])
    assert 'id="extension-error"' in shown.text and "reason: say who asked" in shown.text
    done = erin.post(f"/recordings/{call}/extension", data={"months": "84", "reason": "FCA letter: keep seven years",
                                                             "csrf_token": token})
    assert done.status_code == 303 and "done=extended" in done.headers["location"]
    assert _last(env_r, "retention.extended", "exec").object_id == call
    leads = lead.get(f"/recordings/{call}")
    assert 'id="extension-form"' not in leads.text
    refused = lead.post(f"/recordings/{call}/extension", data={"months": "70", "reason": "asked",
                                                               "csrf_token": _csrf(leads.text)})
    assert refused.status_code == 403 and "retention.extension.roles (executive)" in refused.text
    assert _last(env_r, "retention.extend", "lead").decision == "deny"
