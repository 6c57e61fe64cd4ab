"""A NUL character (U+0000) anywhere a request carries text answers 422 naming where it was, on both
databases, before anything reads or writes the database.

Found by the long schemathesis run on PostgreSQL (2026-12-07, tests/soak/test_schemathesis_soak.py): a
username of ``"\\u0000…"`` to ``POST /api/v1/auth/token`` or ``/auth/password-reset`` answered 500,
because PostgreSQL text cannot hold NUL (psycopg ``DataError``), while SQLite looked the name up and
answered as for any unknown one. Both sign-in routes are reachable before authentication.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from callvault.recordings.models import Recording
from tests.api.test_auth_web import _csrf
from tests.support.audio import metadata, upload, wav_bytes
from tests.support.env import CallvaultEnv, LiveServer


def _names(resp: object, location: str) -> None:
    assert resp.status_code == 422, (resp.status_code, resp.text)  # type: ignore[attr-defined]
    body = resp.json()  # type: ignore[attr-defined]
    assert body["error"] == "invalid_input"
    assert [p["location"] for p in body["problems"]] == [location]
    assert "NUL" in body["problems"][0]["message"]


@pytest.mark.parametrize("path, body, location", [
    ("/api/v1/auth/token", {"username": "\u0000\u009f", "password": "x", "otp": "1"}, "username"),
    ("/api/v1/auth/password-reset", {"reset_code": "\u0000", "username": "alice", "new_password": "n" * 16},
     "reset_code"),
])
def test_a_nul_in_a_json_body_is_refused_with_422_naming_the_field_before_sign_in(
        server: LiveServer, path: str, body: dict[str, str], location: str) -> None:
    with server.client() as anyone:
        _names(anyone.post(path, json=body), location)


def test_a_nul_in_a_nested_json_field_or_a_query_parameter_is_refused_naming_it(server: LiveServer) -> None:
    with server.client("lead") as lead:
        _names(lead.get("/api/v1/recordings", params={"agent": "al\u0000ice"}), "agent")
        _names(lead.post("/api/v1/access-requests", json={"recording_ids": ["r1", "r\u00002"], "purpose": "x"}),
               "recording_ids.1")


def test_a_nul_in_the_sign_in_form_gets_the_error_page_not_a_500(server: LiveServer, env: CallvaultEnv) -> None:
    with server.client() as browser:
        form = browser.get("/")
        resp = browser.post("/login", data={"username": "admin\u0000", "password": "x", "csrf_token": _csrf(form.text)},
                            headers={"Accept": "text/html"})
    assert resp.status_code == 422 and "NUL" in resp.text and "<html" in resp.text



@pytest.mark.parametrize("field", ["agent", "remote_number"])
def test_a_nul_in_an_uploads_multipart_metadata_is_refused_naming_the_field(
        server: LiveServer, env: CallvaultEnv, field: str) -> None:
    """Multipart bodies stream past the guard; the ingest pipeline's own checks refuse the NUL (no 500 on
    PostgreSQL, nothing stored)."""
    meta = metadata(call_id=f"nul-upload-{field}")
    meta[field] = meta[field][:2] + "\u0000" + meta[field][2:]
    with server.client("admin") as admin:
        resp = upload(admin, wav_bytes(2.0), meta)
    assert resp.status_code == 422, resp.text
    assert [p["location"] for p in resp.json()["problems"]] == [field]
    with env.runtime.db.unit_of_work() as session:
        assert session.scalars(select(Recording.id).where(Recording.call_id == meta["call_id"])).first() is None
