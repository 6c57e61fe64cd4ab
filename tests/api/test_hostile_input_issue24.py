"""Issue 24's low findings, part 1: inputs that answered 500, WAV files that lie about their length,
and refusals that told a stranger more than "no such thing".

Each test sends exactly what the outside tester sent. The invariants: bad input gets a 4xx naming the
field and nothing is stored; a content request outside the caller's scope is answered exactly like an
unknown id (the audit entry keeps the real reason); a failed sign-in says the same whichever factor was
wrong.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import func, select

from callvault.audit.models import AuditEntry
from callvault.recordings.models import Recording
from tests.api.test_auth_web import _csrf, web_sign_in
from tests.support.audio import metadata, upload, wav_bytes
from tests.support.env import PASSWORD, CallvaultEnv, LiveServer

UNKNOWN_ID = "rec_00000000000000000000000000"


def _count(env: CallvaultEnv) -> int:
    with env.runtime.db.unit_of_work() as session:
        return int(session.scalar(select(func.count()).select_from(Recording)) or 0)


def _entries_after(env: CallvaultEnv, seq: int) -> list[AuditEntry]:
    with env.runtime.db.unit_of_work() as session:
        rows = list(session.scalars(select(AuditEntry).where(AuditEntry.seq > seq).order_by(AuditEntry.seq)))
        for row in rows:
            session.expunge(row)
        return rows


def _last_seq(env: CallvaultEnv) -> int:
    with env.runtime.db.unit_of_work() as session:
        return int(session.scalar(select(func.coalesce(func.max(AuditEntry.seq), 0))) or 0)


def _locations(resp: httpx.Response) -> list[str]:
    return [p["location"] for p in resp.json().get("problems", [])]


@pytest.fixture(scope="module")
def alices_call(server: LiveServer) -> tuple[str, bytes]:
    audio = wav_bytes(1.0, seed=2424)
    with server.client("admin") as admin:
        resp = upload(admin, audio, metadata(call_id="issue24-alice"))
    assert resp.status_code == 201, resp.text
    return resp.json()["id"], audio


# ------------------------------------------------------------------------------------------ 500s → 4xx
DEEP = '{"a":' * 3000 + "1" + "}" * 3000


@pytest.mark.parametrize("body, field", [
    (DEEP, "metadata"),
    ('{"call_id": "deep-1", "consent": ' + "[" * 3000 + "]" * 3000 + "}", "metadata"),
])
def test_metadata_nested_3000_deep_is_refused_naming_metadata(
        server: LiveServer, env: CallvaultEnv, body: str, field: str) -> None:
    before = _count(env)
    with server.client("admin") as admin:
        resp = upload(admin, wav_bytes(1.0), body)
    assert resp.status_code == 422, resp.text[:300]
    assert field in _locations(resp)
    assert "nested" in resp.json()["message"]
    assert _count(env) == before


@pytest.mark.parametrize("change, field", [
    ({"started_at": "0001-01-01T00:00:00+14:00"}, "started_at"),
    ({"started_at": "9999-12-31T23:59:59-14:00", "ended_at": "9999-12-31T23:59:59-14:00"}, "started_at"),
    ({"ended_at": "9999-12-31T23:59:59+00:00"}, "ended_at"),
    ({"consent": {"announcement_played_at": "0001-01-01T00:00:00+14:00"}}, "consent.announcement_played_at"),
])
def test_dates_outside_what_a_call_can_have_are_refused_naming_the_field(
        server: LiveServer, env: CallvaultEnv, change: dict[str, object], field: str) -> None:
    before = _count(env)
    with server.client("admin") as admin:
        resp = upload(admin, wav_bytes(1.0), metadata(**change))
    assert resp.status_code == 422, resp.text[:300]
    assert field in _locations(resp)
    assert _count(env) == before


@pytest.mark.parametrize("extension", ['"' + "5" * 5000 + '"', "5" * 5000, '"' + "5" * 5000 + 'x"'],
                         ids=["string", "number", "string with a letter"])
def test_an_extension_of_5000_digits_is_refused_naming_extension(
        server: LiveServer, env: CallvaultEnv, extension: str) -> None:
    text = json.dumps(metadata(extension="EXT")).replace('"EXT"', extension)  # as the tester sent it
    before = _count(env)
    with server.client("admin") as admin:
        resp = upload(admin, wav_bytes(1.0), text)
    assert resp.status_code == 422, resp.text[:300]
    assert "extension" in _locations(resp)
    assert _count(env) == before


@pytest.mark.parametrize("param", ["started_from", "started_to"])
@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_search_from_year_one_is_refused_naming_the_filter(server: LiveServer, param: str, value: str) -> None:
    with server.client("lead") as lead:
        resp = lead.get("/api/v1/recordings", params={param: value})
    assert resp.status_code == 422, resp.text[:300]
    assert _locations(resp) == [param]


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+14:00", "0001-01-01"])
def test_search_page_from_year_one_says_what_is_wrong(server: LiveServer, env: CallvaultEnv, value: str) -> None:
    with server.client() as browser:
        web_sign_in(browser, env, "lead")
        resp = browser.get("/recordings", params={"started_from": value})
    assert resp.status_code == 422, resp.text[:300]  # the search page, saying what is wrong
    assert "From:" in resp.text and "1970" in resp.text


def test_a_range_of_5000_digits_is_refused_with_416_and_on_record_as_refused(
        server: LiveServer, env: CallvaultEnv, alices_call: tuple[str, bytes]) -> None:
    rec_id, audio = alices_call
    before = _last_seq(env)
    with server.client("lead") as lead:
        resp = lead.get(f"/api/v1/recordings/{rec_id}/audio", params={"purpose": "spot_check"},
                        headers={"Range": "bytes=0-" + "9" * 5000})
    assert resp.status_code == 416, resp.text[:300]
    assert "Range" in resp.json()["message"]
    assert resp.headers["content-range"] == f"bytes */{len(audio)}"
    [entry] = [e for e in _entries_after(env, before) if e.action == "recording.play"]
    assert (entry.decision, entry.object_id) == ("deny", rec_id)
    assert entry.reason in resp.json()["message"]


def test_a_sample_of_year_one_is_refused_naming_first_day(server: LiveServer) -> None:
    with server.client("lead") as lead:
        resp = lead.post("/api/v1/quality/samples", json={"first_day": "0001-01-01"})
        late = lead.post("/api/v1/quality/samples", json={"first_day": "9999-12-31"})
    assert resp.status_code == 422, resp.text[:300]
    assert _locations(resp) == ["first_day"]
    assert late.status_code == 422, late.text[:300]
    assert _locations(late) == ["first_day"]


# ------------------------------------------------------------------------------------------ lying WAVs
def _with_data_length(audio: bytes, length: int) -> bytes:
    at = audio.index(b"data") + 4
    return audio[:at] + struct.pack("<I", length) + audio[at + 4:]


@pytest.mark.parametrize("audio, said", [
    (wav_bytes(1.0, seed=5)[: 44 + 16000], "declares 1.0 s of audio but the file holds 0.5 s"),
    (_with_data_length(wav_bytes(1.0, seed=6), 0xFFFFFFF0), "declares 134217.7 s of audio but the file holds 1.0 s"),
])
def test_a_truncated_or_lying_wav_is_refused_naming_audio_and_nothing_is_stored(
        server: LiveServer, env: CallvaultEnv, audio: bytes, said: str) -> None:
    before = _count(env)
    with server.client("admin") as admin:
        resp = upload(admin, audio, metadata())
    assert resp.status_code == 422, resp.text[:300]
    assert _locations(resp) == ["audio"]
    assert said in resp.json()["problems"][0]["message"]
    assert _count(env) == before


def test_a_whole_wav_is_still_accepted_with_its_full_length(server: LiveServer) -> None:
    with server.client("admin") as admin:
        resp = upload(admin, wav_bytes(1.0, seed=7), metadata())
    assert resp.status_code == 201, resp.text
    with server.client("lead") as lead:
        got = lead.get(f"/api/v1/recordings/{resp.json()['id']}")
        assert got.status_code == 200, got.text
        assert got.json()["duration_seconds"] == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------ oracles
@pytest.mark.parametrize("path", [
    "/api/v1/recordings/{id}/audio?purpose=self_review",
    "/api/v1/recordings/{id}/audio?purpose=self_review&download=true",
    "/api/v1/recordings/{id}/transcript?purpose=self_review",
    "/api/v1/recordings/{id}/audio/redacted?purpose=self_review",
    "/api/v1/recordings/{id}/crm-note?purpose=self_review",
    "/api/v1/recordings/{id}",
])
def test_another_extensions_call_is_answered_exactly_like_an_unknown_id(
        server: LiveServer, env: CallvaultEnv, alices_call: tuple[str, bytes], path: str) -> None:
    rec_id, _ = alices_call
    before = _last_seq(env)
    with server.client("bob") as bob:
        theirs = bob.get(path.format(id=rec_id))
        unknown = bob.get(path.format(id=UNKNOWN_ID))
    assert (theirs.status_code, theirs.json()) == (unknown.status_code, unknown.json()) == (
        404, {"error": "not_found", "message": "no such recording"})
    [denial] = [e for e in _entries_after(env, before) if e.object_id == rec_id]
    assert (denial.actor, denial.decision) == ("bob", "deny")
    assert denial.reason not in ("", "no such recording"), "the record keeps the real reason"


def test_the_recording_page_of_another_extensions_call_looks_like_an_unknown_one(
        server: LiveServer, env: CallvaultEnv, alices_call: tuple[str, bytes]) -> None:
    rec_id, _ = alices_call
    with server.client() as browser:
        web_sign_in(browser, env, "bob")
        theirs = browser.get(f"/recordings/{rec_id}", params={"purpose": "self_review"})
        unknown = browser.get(f"/recordings/{UNKNOWN_ID}", params={"purpose": "self_review"})
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.text.replace(rec_id, UNKNOWN_ID) == unknown.text


def _token_answer(server: LiveServer, username: str, password: str, otp: str | None) -> httpx.Response:
    body = {"username": username, "password": password} | ({"otp": otp} if otp is not None else {})
    with server.client() as anonymous:
        return anonymous.post("/api/v1/auth/token", json=body)


def test_a_right_password_with_a_wrong_code_says_what_a_wrong_password_says(
        server: LiveServer, env: CallvaultEnv) -> None:
    before = _last_seq(env)
    wrong_code = _token_answer(server, "exec", PASSWORD, "000000")
    no_code = _token_answer(server, "exec", PASSWORD, None)
    wrong_password = _token_answer(server, "exec", "not-the-password", "000000")
    unknown = _token_answer(server, "nobody-here", "not-the-password", None)
    answers = {(r.status_code, r.json()["message"]) for r in (wrong_code, no_code, wrong_password, unknown)}
    assert len(answers) == 1, answers
    [(status, message)] = answers
    assert status == 401 and "one-time code" in message and "otp" in message
    denials = [e.reason for e in _entries_after(env, before) if e.action == "auth.sign_in" and e.actor == "exec"]
    assert any("one-time code" in r and "password" not in r for r in denials), "the record says the code was wrong"


def test_the_web_code_page_says_what_the_password_page_says(server: LiveServer, env: CallvaultEnv) -> None:
    with server.client() as browser:
        form = browser.get("/")
        wrong = browser.post("/login", data={"username": "lead", "password": "not-the-password",
                                             "csrf_token": _csrf(form.text)})
        form = browser.get("/")
        right = browser.post("/login", data={"username": "lead", "password": PASSWORD,
                                             "csrf_token": _csrf(form.text)})
        assert right.status_code == 303, right.text[:300]
        page = browser.get("/mfa")
        bad_code = browser.post("/mfa", data={"code": "000000", "csrf_token": _csrf(page.text)})

    def said(html: str) -> list[str]:
        return re.findall(r'class="error"[^>]*>([^<]*)<', html)

    assert said(wrong.text) and said(wrong.text) == said(bad_code.text), (said(wrong.text), said(bad_code.text))


@pytest.fixture(autouse=True)
def _no_lockout(env: CallvaultEnv) -> Iterator[None]:
    """Failed sign-ins above count towards the account's lockout; clear them so later tests sign in."""
    yield
    from callvault.identity import throttle

    with env.runtime.db.unit_of_work() as session:
        for name in ("exec", "lead", "nobody-here"):
            throttle.record_success(session, counters=env.runtime.counters, username=name, address="127.0.0.1",
                                    now=env.runtime.clock.now())
