"""Ingest → encrypted store → catalog → purpose-checked playback, over real HTTP."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select

from callvault.audit.models import AuditEntry
from callvault.policy.schema import add_months
from callvault.recordings.models import Recording
from tests.support.audio import CALL_START, metadata, upload, wav_bytes
from tests.support.env import CallvaultEnv, LiveServer


@pytest.fixture(scope="module")
def ingested(server: LiveServer) -> tuple[str, bytes]:
    """One recording of alice's (ext 2001), about 320 KB so it spans several 64 KiB chunks."""
    audio = wav_bytes(10.0, seed=1)
    with server.client("admin") as admin:
        resp = upload(admin, audio, metadata(call_id="api-main"))
    assert resp.status_code == 201, resp.text
    return resp.json()["id"], audio


def _count(env: CallvaultEnv, model: type) -> int:
    with env.runtime.db.unit_of_work() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _blob_files(env: CallvaultEnv) -> list[str]:
    return sorted(env.runtime.store.iter_keys())


def _last_audit(env: CallvaultEnv) -> AuditEntry:
    with env.runtime.db.unit_of_work() as session:
        entry = session.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(1)).one()
    return entry



def _review_date(env: CallvaultEnv, days: int = 30) -> str:
    """A hold's review date within policy A's bound (retention.legal_hold.max_review_months: 3)."""
    return (env.runtime.clock.now().date() + timedelta(days=days)).isoformat()

def test_ingested_recording_plays_back_byte_for_byte(server: LiveServer, ingested: tuple[str, bytes]) -> None:
    rec_id, audio = ingested
    with server.client("lead") as lead:
        resp = lead.get(f"/api/v1/recordings/{rec_id}/audio", params={"purpose": "spot_check"})
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "audio/wav"
    assert resp.headers["accept-ranges"] == "bytes"
    assert resp.content == audio


def test_audio_is_not_stored_in_plaintext(env: CallvaultEnv, ingested: tuple[str, bytes]) -> None:
    rec_id, audio = ingested
    blob_key = next(k for k in _blob_files(env) if rec_id in k)
    stored = env.runtime.store.read_at(blob_key, 0, env.runtime.store.size(blob_key))
    assert audio[1000:1064] not in stored
    assert b"RIFF" not in stored and b"WAVE" not in stored


@pytest.mark.parametrize("range_header, start, end", [
    ("bytes=0-99", 0, 99),
    ("bytes=65500-65600", 65500, 65600),          # across a chunk boundary
    ("bytes=100000-", 100000, None),              # open-ended
    ("bytes=-500", -500, None),                   # suffix
    ("bytes=131072-131072", 131072, 131072),      # one byte at a chunk start
])
def test_range_requests_return_exact_slices(server: LiveServer, ingested: tuple[str, bytes], range_header: str,
                                            start: int, end: int | None) -> None:
    rec_id, audio = ingested
    expected = audio[start:] if end is None else audio[start:end + 1]
    with server.client("lead") as lead:
        resp = lead.get(f"/api/v1/recordings/{rec_id}/audio", params={"purpose": "spot_check"},
                        headers={"Range": range_header})
    assert resp.status_code == 206
    assert resp.content == expected
    first = start if start >= 0 else len(audio) + start
    assert resp.headers["content-range"] == f"bytes {first}-{first + len(expected) - 1}/{len(audio)}"


def test_range_beyond_the_end_is_refused_with_416(server: LiveServer, ingested: tuple[str, bytes]) -> None:
    rec_id, audio = ingested
    with server.client("lead") as lead:
        resp = lead.get(f"/api/v1/recordings/{rec_id}/audio", params={"purpose": "spot_check"},
                        headers={"Range": f"bytes={len(audio) + 10}-"})
    assert resp.status_code == 416
    assert resp.headers["content-range"] == f"bytes */{len(audio)}"


def test_download_names_the_file_and_is_audited_as_download(server: LiveServer, env: CallvaultEnv,
                                                            ingested: tuple[str, bytes]) -> None:
    rec_id, _ = ingested
    with server.client("exec") as executive:
        server.step_up(executive, "exec")
        resp = executive.get(f"/api/v1/recordings/{rec_id}/audio",
                             params={"purpose": "complaint_investigation", "download": "true"})
    assert resp.status_code == 200, resp.text
    assert "attachment" in resp.headers["content-disposition"]
    entry = _last_audit(env)
    assert (entry.action, entry.decision, entry.purpose, entry.actor) == (
        "recording.download", "allow", "complaint_investigation", "exec")


def test_specialist_plays_own_extension_with_self_review(server: LiveServer, ingested: tuple[str, bytes]) -> None:
    rec_id, audio = ingested
    with server.client("alice") as alice:
        resp = alice.get(f"/api/v1/recordings/{rec_id}/audio", params={"purpose": "self_review"})
    assert resp.status_code == 200
    assert resp.content == audio


def test_specialist_cannot_play_other_extension(server: LiveServer, env: CallvaultEnv,
                                                ingested: tuple[str, bytes]) -> None:
    rec_id, _ = ingested
    with server.client("bob") as bob:
        play = bob.get(f"/api/v1/recordings/{rec_id}/audio", params={"purpose": "self_review"})
        meta = bob.get(f"/api/v1/recordings/{rec_id}")
        listing = bob.get("/api/v1/recordings")
    assert play.status_code == meta.status_code == 404, "out of scope looks like absent (issue 24)"
    assert play.json() == meta.json() == {"error": "not_found", "message": "no such recording"}
    assert rec_id not in [item["id"] for item in listing.json()["items"]]
    with env.runtime.db.unit_of_work() as session:
        denial = session.scalars(select(AuditEntry).where(
            AuditEntry.actor == "bob", AuditEntry.action == "recording.play")).one()
        metadata_denial = session.scalars(select(AuditEntry).where(
            AuditEntry.actor == "bob", AuditEntry.action == "recording.view_metadata")).one()
    assert denial.decision == "deny" and denial.object_id == rec_id and "extension" in denial.reason
    assert (metadata_denial.decision, metadata_denial.object_id) == ("deny", rec_id), "the 404 is on record"


def test_unknown_purpose_is_denied_and_audited(server: LiveServer, env: CallvaultEnv,
                                              ingested: tuple[str, bytes]) -> None:
    rec_id, _ = ingested
    with server.client("lead") as lead:
        resp = lead.get(f"/api/v1/recordings/{rec_id}/audio", params={"purpose": "curiosity"})
    assert resp.status_code == 403
    assert "curiosity" in resp.json()["message"]
    entry = _last_audit(env)
    assert (entry.decision, entry.purpose, entry.object_id) == ("deny", "curiosity", rec_id)


def test_playing_without_a_purpose_is_denied(server: LiveServer, ingested: tuple[str, bytes]) -> None:
    rec_id, _ = ingested
    with server.client("lead") as lead:
        resp = lead.get(f"/api/v1/recordings/{rec_id}/audio")
    assert resp.status_code == 403
    assert "purpose" in resp.json()["message"]


def test_purpose_outside_the_role_is_denied(server: LiveServer, ingested: tuple[str, bytes]) -> None:
    rec_id, _ = ingested
    with server.client("alice") as alice:
        resp = alice.get(f"/api/v1/recordings/{rec_id}/audio", params={"purpose": "regulatory_compliance"})
    assert resp.status_code == 403


def test_admin_administers_but_cannot_listen(server: LiveServer, ingested: tuple[str, bytes]) -> None:
    rec_id, _ = ingested
    with server.client("admin") as admin:
        resp = admin.get(f"/api/v1/recordings/{rec_id}/audio", params={"purpose": "spot_check"})
    assert resp.status_code == 404  # administrators do not see calls' metadata either: absent to them


def test_user_who_has_not_acknowledged_the_policy_cannot_listen_until_they_do(
        server: LiveServer, env: CallvaultEnv) -> None:
    with server.client("admin") as admin:
        rec_id = upload(admin, wav_bytes(1.0, seed=7), metadata(extension="2003", agent="newhire")).json()["id"]
    with server.client("newhire") as newhire:
        before = newhire.get(f"/api/v1/recordings/{rec_id}/audio", params={"purpose": "self_review"})
        assert newhire.get("/api/v1/me").json()["policy_acknowledged"] is False
        assert newhire.post("/api/v1/me/acknowledge-policy").status_code == 204
        after = newhire.get(f"/api/v1/recordings/{rec_id}/audio", params={"purpose": "self_review"})
    assert before.status_code == 403
    assert "acknowledge" in before.json()["message"].lower()
    assert after.status_code == 200


def test_requests_without_a_valid_token_are_refused(server: LiveServer, ingested: tuple[str, bytes]) -> None:
    rec_id, _ = ingested
    with server.client() as anonymous:
        assert anonymous.get("/api/v1/recordings").status_code == 401
        assert anonymous.get(f"/api/v1/recordings/{rec_id}/audio?purpose=spot_check").status_code == 401
        bad = anonymous.get("/api/v1/recordings", headers={"Authorization": "Bearer cvt_forged"})
        assert bad.status_code == 401


def test_wrong_password_is_refused_and_audited_without_saying_which_part_was_wrong(
        server: LiveServer, env: CallvaultEnv) -> None:
    with server.client() as anonymous:
        wrong = anonymous.post("/api/v1/auth/token", json={"username": "lead", "password": "nope-nope-nope"})
        unknown = anonymous.post("/api/v1/auth/token", json={"username": "ghost", "password": "nope-nope-nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["message"] == unknown.json()["message"]
    entry = _last_audit(env)
    assert (entry.action, entry.decision, entry.actor) == ("auth.sign_in", "deny", "ghost")


def test_revoked_token_stops_working(server: LiveServer) -> None:
    with server.client("lead") as lead:
        assert lead.get("/api/v1/me").status_code == 200
        assert lead.post("/api/v1/auth/revoke").status_code == 204
        assert lead.get("/api/v1/me").status_code == 401


def test_same_call_uploaded_twice_is_stored_once(server: LiveServer, env: CallvaultEnv) -> None:
    audio = wav_bytes(1.0, seed=11)
    meta = metadata(call_id="retry-1")
    with server.client("admin") as admin:
        first = upload(admin, audio, meta)
        second = upload(admin, audio, meta)
        different = upload(admin, wav_bytes(1.0, seed=12), meta)
    assert first.status_code == 201
    assert second.status_code == 200 and second.json() == {"id": first.json()["id"], "created": False}
    assert different.status_code == 409


# ---------------------------------------------------------------- expired on arrival (issue 23, finding 8)
def test_a_call_past_its_retention_is_refused_naming_the_rule_and_its_end_and_is_never_playable(
        server: LiveServer, env: CallvaultEnv) -> None:
    """A3: an eight-month-old call under policy A's six-month cap would be destroyed on arrival."""
    started = env.runtime.clock.now() - timedelta(days=245)
    ended = add_months(started.date(), 6)
    rows, blobs = _count(env, Recording), _blob_files(env)
    with server.client("admin") as admin:
        resp = upload(admin, wav_bytes(1.0, seed=81), metadata(call_id="api-expired", started=started))
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert [p["location"] for p in body["problems"]] == ["started_at"]
    assert f"retention ended {ended.isoformat()}" in body["message"]
    assert "max_age" in body["message"] and "6 months" in body["message"] and "A3" in body["message"]
    assert (_count(env, Recording), _blob_files(env)) == (rows, blobs)
    refusal = _last_audit(env)
    assert (refusal.action, refusal.decision, refusal.object_id) == ("recording.not_stored", "deny", "api-expired")
    assert "A3" in refusal.clauses and "retention ended" in refusal.reason


def test_an_open_case_does_not_keep_an_expired_call_but_a_legal_hold_on_its_case_does(
        server: LiveServer, env: CallvaultEnv) -> None:
    started = env.runtime.clock.now() - timedelta(days=245)
    with server.client("lead") as lead:
        for ref in ("API-OLD-OPEN", "API-OLD-HELD"):
            assert lead.post("/api/v1/retention/cases", json={"ref": ref, "kind": "legal_claim"}).status_code == 201
        assert lead.post("/api/v1/retention/holds", json={
            "case_ref": "API-OLD-HELD", "reason": "litigation", "owner": "lead", "review_date": _review_date(env),
        }).status_code == 201
    with server.client("admin") as admin:
        open_only = upload(admin, wav_bytes(1.0, seed=82), metadata(started=started, case_ref="API-OLD-OPEN"))
        held = upload(admin, wav_bytes(1.0, seed=83), metadata(started=started, case_ref="API-OLD-HELD"))
    assert open_only.status_code == 422 and "retention ended" in open_only.json()["message"]
    assert held.status_code == 201, held.text
    with server.client("lead") as lead:
        row = lead.get(f"/api/v1/recordings/{held.json()['id']}").json()
        assert row["on_hold"] is True and row["retention_rule"] == "max_age"
        assert lead.get(f"/api/v1/recordings/{held.json()['id']}/audio",
                        params={"purpose": "spot_check"}).status_code == 200


def test_role_that_may_not_ingest_is_refused(server: LiveServer) -> None:
    with server.client("alice") as alice:
        resp = upload(alice, wav_bytes(1.0), metadata())
    assert resp.status_code == 403


@pytest.mark.parametrize("change, field", [
    ({"call_id": None}, "call_id"),
    ({"direction": "sideways"}, "direction"),
    ({"started_at": "2026-11-20T14:00:00"}, "started_at"),           # no UTC offset
    ({"started_at": "last tuesday"}, "started_at"),
    ({"ended_at": "2026-11-20T13:00:00+00:00"}, "(metadata)"),      # ends before it starts
    ({"remote_number": "not-a-number"}, "remote_number"),
    ({"local_number": "+1 23"}, "local_number"),
    ({"extension": "12ab"}, "extension"),
    ({"colour": "blue"}, "colour"),                                  # unknown field
    ({"consent": {"announcement_played_at": "yesterday"}}, "consent.announcement_played_at"),
])
def test_bad_metadata_is_rejected_naming_the_field_and_nothing_is_stored(
        server: LiveServer, env: CallvaultEnv, change: dict[str, object], field: str) -> None:
    rows, blobs = _count(env, Recording), _blob_files(env)
    meta = metadata(**{k: v for k, v in change.items() if v is not None})
    if change.get("call_id", "") is None:
        meta.pop("call_id")
    with server.client("admin") as admin:
        resp = upload(admin, wav_bytes(1.0), meta)
    assert resp.status_code == 422, resp.text
    assert field in [p["location"] for p in resp.json()["problems"]]
    assert "Traceback" not in resp.text
    assert (_count(env, Recording), _blob_files(env)) == (rows, blobs)


@pytest.mark.parametrize("audio, why", [
    (b"", "empty"),
    (b"this is not audio at all" * 100, "text"),
    (wav_bytes(1.0)[:30], "header cut short"),
    (b"ID3" + bytes(5000), "mp3 tag, no audio"),
])
def test_bad_audio_is_rejected_and_nothing_is_stored(server: LiveServer, env: CallvaultEnv, audio: bytes,
                                                     why: str) -> None:
    rows, blobs = _count(env, Recording), _blob_files(env)
    with server.client("admin") as admin:
        resp = upload(admin, audio, metadata())
    assert resp.status_code == 422, why
    assert resp.json()["problems"][0]["location"] == "audio"
    assert (_count(env, Recording), _blob_files(env)) == (rows, blobs)


def test_metadata_that_is_not_json_is_rejected(server: LiveServer) -> None:
    with server.client("admin") as admin:
        resp = upload(admin, wav_bytes(1.0), "{not json")
    assert resp.status_code == 422
    assert resp.json()["problems"][0]["location"] == "metadata"


def test_upload_missing_a_part_is_rejected(server: LiveServer) -> None:
    with server.client("admin") as admin:
        resp = admin.post("/api/v1/recordings", data={"metadata": json.dumps(metadata())})
    assert resp.status_code == 422
    assert resp.json()["problems"][0]["location"] == "audio"


def _post_raw(client: httpx.Client, audio: bytes, meta: dict[str, object] | None,
              content_type: str = "audio/wav") -> httpx.Response:
    headers = {b"Content-Type": content_type.encode()}
    if meta is not None:  # as curl sends a header: the bytes given, here UTF-8
        headers[b"Callvault-Metadata"] = json.dumps(meta, ensure_ascii=False).encode()
    return client.post("/api/v1/recordings", content=audio, headers=headers)


def test_audio_sent_as_the_body_with_a_metadata_header_is_stored(server: LiveServer, env: CallvaultEnv) -> None:
    audio = wav_bytes(3.0, seed=11)
    meta = metadata(case_ref="Réclamation-8841")  # not ASCII: the header carries UTF-8 bytes
    with server.client("admin") as admin:
        first = _post_raw(admin, audio, meta)
        again = _post_raw(admin, audio, meta)
        different = _post_raw(admin, wav_bytes(3.0, seed=12), meta)
    assert first.status_code == 201, first.text
    rec_id = first.json()["id"]
    assert first.headers["location"] == f"/api/v1/recordings/{rec_id}"
    assert (again.status_code, again.json()["id"]) == (200, rec_id)  # idempotent on call_id, as the form
    assert different.status_code == 409
    with server.client("lead") as lead:
        read = lead.get(f"/api/v1/recordings/{rec_id}").json()
        played = lead.get(f"/api/v1/recordings/{rec_id}/audio", params={"purpose": "spot_check"})
    assert read["case_ref"] == "Réclamation-8841" and read["call_id"] == meta["call_id"]
    assert played.content == audio
    with env.runtime.db.unit_of_work() as session:
        stored = session.scalars(select(AuditEntry).where(AuditEntry.object_id == rec_id,
                                                          AuditEntry.action == "recording.ingested")).all()
    assert [(e.actor, e.decision) for e in stored] == [("admin", "info")]


@pytest.mark.parametrize("audio, meta, content_type, status, location", [
    (wav_bytes(1.0), None, "audio/wav", 422, "Callvault-Metadata"),
    (b"this is not audio at all" * 100, metadata(), "audio/wav", 422, "audio"),
    (wav_bytes(1.0)[:30], metadata(), "audio/wav", 422, "audio"),
    (wav_bytes(1.0), metadata(started_at="yesterday"), "audio/wav", 422, "started_at"),
    (wav_bytes(1.0), metadata(), "text/plain", 415, None),
    (wav_bytes(1.0), metadata(), "application/octet-stream", 415, None),
], ids=["no metadata header", "text body", "cut-short header", "bad date", "text/plain", "octet-stream"])
def test_a_bad_raw_upload_is_refused_with_a_reason_and_nothing_is_stored(
        server: LiveServer, env: CallvaultEnv, audio: bytes, meta: dict[str, object] | None, content_type: str,
        status: int, location: str | None) -> None:
    rows, blobs = _count(env, Recording), _blob_files(env)
    with server.client("admin") as admin:
        resp = _post_raw(admin, audio, meta, content_type)
    assert resp.status_code == status, resp.text
    assert "Traceback" not in resp.text
    if location is None:
        assert "multipart/form-data" in resp.json()["message"] and "audio/wav" in resp.json()["message"]
    else:
        assert location in [p["location"] for p in resp.json()["problems"]]
    assert (_count(env, Recording), _blob_files(env)) == (rows, blobs)


def test_metadata_header_that_is_not_json_is_rejected(server: LiveServer) -> None:
    with server.client("admin") as admin:
        resp = admin.post("/api/v1/recordings", content=wav_bytes(1.0),
                          headers={"Content-Type": "audio/wav", "Callvault-Metadata": "{not json"})
    assert resp.status_code == 422
    assert resp.json()["problems"][0]["location"] == "metadata"


def test_flac_and_ogg_are_accepted_and_served_unchanged(server: LiveServer) -> None:
    for fmt, subtype, ctype in (("FLAC", "PCM_16", "audio/flac"), ("OGG", "VORBIS", "audio/ogg")):
        audio = wav_bytes(1.0, fmt=fmt, subtype=subtype, seed=3)
        with server.client("admin") as admin:
            rec_id = upload(admin, audio, metadata()).json()["id"]
        with server.client("lead") as lead:
            resp = lead.get(f"/api/v1/recordings/{rec_id}/audio", params={"purpose": "spot_check"})
        assert resp.headers["content-type"] == ctype
        assert resp.content == audio


def test_openapi_is_published(server: LiveServer) -> None:
    with server.client() as anonymous:
        spec = anonymous.get("/api/v1/openapi.json").json()
    assert "/api/v1/recordings/{recording_id}/audio" in spec["paths"]
    assert "/api/v1/auth/token" in spec["paths"]


# -------------------------------------------------------------------------- consent evidence (A5, B2)
@pytest.mark.parametrize(("consent", "named"), [
    ({"announcement_version": "0"}, "consent.announcement_version '0'"),
    ({"announcement_played_at": (CALL_START - timedelta(days=30)).isoformat()}, "consent.announcement_played_at"),
])
def test_consent_evidence_the_policy_never_had_quarantines_the_call_with_the_reason(
        server: LiveServer, env: CallvaultEnv, consent: dict[str, str], named: str) -> None:
    meta = metadata()
    meta["consent"] = {**meta["consent"], **consent}
    with server.client("admin") as admin:
        resp = upload(admin, wav_bytes(0.5, seed=91), meta)
        assert resp.status_code == 201, resp.text
    with env.runtime.db.unit_of_work() as session:
        row = session.get(Recording, resp.json()["id"])
        assert row is not None and row.quarantined and named in (row.quarantine_reason or "")
    with server.client("lead") as lead:
        play = lead.get(f"/api/v1/recordings/{resp.json()['id']}/audio", params={"purpose": "spot_check"})
    assert play.status_code == 404  # quarantined: hidden from the lead, as its metadata is (issue 24)
    with env.runtime.db.unit_of_work() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.object_id == resp.json()["id"],
                                                         AuditEntry.action == "recording.ingested")).one()
    assert set(entry.clauses) >= {"A5", "B2"}


@pytest.mark.parametrize("version", ["absent", None, ""])
def test_an_announcement_naming_no_version_quarantines_the_call_until_an_administrator_releases_it(
        server: LiveServer, env: CallvaultEnv, version: str | None) -> None:
    """Omitting ``announcement_version`` is no way round the version check (A5, B2): an announcement time alone
    does not say the caller heard a prompt the policy lists."""
    meta = metadata()
    meta["consent"] = {"announcement_played_at": CALL_START.isoformat()}
    if version != "absent":
        meta["consent"]["announcement_version"] = version
    with server.client("admin") as admin:
        resp = upload(admin, wav_bytes(0.5, seed=93), meta)
        assert resp.status_code == 201, resp.text
        rec_id = resp.json()["id"]
        trail = admin.get(f"/api/v1/recordings/{rec_id}/audit").json()
    with env.runtime.db.unit_of_work() as session:
        row = session.get(Recording, rec_id)
        assert row is not None and row.quarantined
        reason = row.quarantine_reason or ""
    assert "names no announcement version" in reason and "'1'" in reason, reason
    ingested = next(e for e in trail if e["action"] == "recording.ingested")
    assert set(ingested["clauses"]) >= {"A5", "B2"}
    assert ingested["details"]["quarantine_reason"] == reason
    with server.client("alice") as agent:  # the agent on the call
        assert agent.get(f"/api/v1/recordings/{rec_id}/audio", params={"purpose": "self_review"}).status_code == 404
    with server.client("admin") as admin:
        released = admin.post(f"/api/v1/recordings/{rec_id}/quarantine",
                              json={"decision": "release", "reason": "IVR log shows prompt 1 played"})
        assert released.status_code == 200, released.text
    with server.client("alice") as agent:
        assert agent.get(f"/api/v1/recordings/{rec_id}/audio", params={"purpose": "self_review"}).status_code == 200


def test_consent_evidence_a_few_seconds_before_the_call_is_accepted(server: LiveServer) -> None:
    """Within ``consent.evidence_tolerance_seconds`` (5 s by default): playable for a spot check."""
    meta = metadata()
    meta["consent"] = {"announcement_played_at": (CALL_START - timedelta(seconds=3)).isoformat(),
                       "announcement_version": "1"}
    with server.client("admin") as admin:
        resp = upload(admin, wav_bytes(0.5, seed=92), meta)
        assert resp.status_code == 201, resp.text
    with server.client("lead") as lead:
        play = lead.get(f"/api/v1/recordings/{resp.json()['id']}/audio", params={"purpose": "spot_check"})
    assert play.status_code == 200


def test_a_download_needs_a_fresh_authenticator_code_even_with_a_valid_token(
        server: LiveServer, env: CallvaultEnv, ingested: tuple[str, bytes]) -> None:
    """RELIABILITY 17, step-up: a stolen token (or an unattended session) must not be enough to carry
    a recording out of callvault; a download first needs the person's authenticator code again."""
    rec_id, _ = ingested
    params = {"purpose": "complaint_investigation", "download": "true"}
    with httpx.Client(base_url=server.base_url, timeout=30) as executive:
        executive.headers["Authorization"] = f"Bearer {server.sign_in(executive, 'exec')}"
        refused = executive.get(f"/api/v1/recordings/{rec_id}/audio", params=params)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"] == "step_up_required"
        assert "confirm with your authenticator code" in refused.json()["message"]
        assert executive.get(f"/api/v1/recordings/{rec_id}/audio",  # playing is not a download
                             params={"purpose": "complaint_investigation"}).status_code == 200
        wrong = executive.post("/api/v1/auth/step-up", json={"code": "000000"})
        assert wrong.status_code == 401
        assert executive.get(f"/api/v1/recordings/{rec_id}/audio", params=params).status_code == 403
        server.step_up(executive, "exec")
        done = executive.get(f"/api/v1/recordings/{rec_id}/audio", params=params)
        assert done.status_code == 200 and "attachment" in done.headers["content-disposition"]
    with env.runtime.db.unit_of_work() as session:
        actions = [(e.action, e.decision) for e in session.scalars(
            select(AuditEntry).where(AuditEntry.actor == "exec").order_by(AuditEntry.seq.desc()).limit(6))]
    assert ("auth.step_up", "allow") in actions and ("auth.step_up", "deny") in actions
