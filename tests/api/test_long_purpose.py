"""A purpose longer than any purpose id (64 characters) is refused with 422 naming ``purpose``, on both
databases, and a refusal is always audited, whatever was sent.

Found by the long schemathesis run on PostgreSQL (2026-12-07) once it named real recordings: a 90-character
purpose to ``GET /recordings/{id}/crm-note`` of the caller's own call answered 500, because the refusal's
audit entry could not hold it (``audit_entries.purpose`` is 64 characters; PostgreSQL enforces that,
SQLite does not).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from callvault.audit import service as audit
from callvault.audit.models import AuditEntry
from tests.api.test_auth_web import web_sign_in
from tests.support.audio import metadata, upload, wav_bytes
from tests.support.env import CallvaultEnv, LiveServer

LONG = "Ω≈ç√∫µ≤≥÷åß∂ƒ©π" * 6


@pytest.fixture(scope="module")
def alices_call(server: LiveServer) -> Iterator[str]:
    with server.client("admin") as admin:
        resp = upload(admin, wav_bytes(0.5, seed=77), metadata(agent="alice", extension="2001"))
    assert resp.status_code == 201, resp.text
    yield resp.json()["id"]


@pytest.mark.parametrize("view", ["audio", "audio/redacted", "transcript", "crm-note"])
def test_a_purpose_longer_than_any_purpose_id_is_refused_with_422_naming_purpose(
        server: LiveServer, alices_call: str, view: str) -> None:
    with server.client("alice") as alice:
        resp = alice.get(f"/api/v1/recordings/{alices_call}/{view}", params={"purpose": LONG})
    assert resp.status_code == 422, resp.text
    assert [p["location"] for p in resp.json()["problems"]] == ["purpose"]


def test_the_recording_page_with_a_long_purpose_answers_without_a_500(
        server: LiveServer, env: CallvaultEnv, alices_call: str) -> None:
    with server.client() as browser:
        web_sign_in(browser, env, "alice")
        resp = browser.get(f"/recordings/{alices_call}", params={"purpose": LONG})
    assert resp.status_code < 500, resp.text[:500]


def test_an_audit_entry_keeps_a_too_long_purpose_or_id_shortened_and_marked_not_lost(env: CallvaultEnv) -> None:
    with env.runtime.db.unit_of_work() as session:
        entry = audit.append(session, audit.AuditEvent(
            actor="alice", action="recording.play", decision="deny", object_type="recording",
            object_id="r" * 300, purpose=LONG, reason=f"unknown purpose {LONG!r}"), clock=env.runtime.clock)
        seq = entry.seq
    with env.runtime.db.unit_of_work() as session:
        stored = session.scalars(select(AuditEntry).where(AuditEntry.seq == seq)).one()
        assert stored.purpose is not None and len(stored.purpose) == 64 and stored.purpose.endswith("…")
        assert len(stored.object_id) == 200 and stored.object_id.endswith("…")
        assert LONG in stored.reason
        assert audit.verify_chain(session).intact
