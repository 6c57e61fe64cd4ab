"""Every content endpoint's audit entry says what the person got (issue 23, finding A4).

The auditor found training plays answered 403 on record as ``allow``: the entry was written when the
policy said yes, and a check after it (no anonymised copy yet) refused the request. The invariant here:
for every request that reaches content, the newest audit entry for that person and object is ``allow``
exactly when the answer was a success (2xx; for live listening, the WebSocket accepted), and a refusal's
entry gives the reason the person was told. Each case reads as a sentence: a role asks for something on
a call, naming a purpose, and gets an answer.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import json
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import numpy as np
import pytest
from sqlalchemy import func, select, update
from websockets.sync.client import connect

from callvault.audit.models import AuditEntry
from callvault.capture.ingest import ingest_recording
from callvault.notify import service as notify
from callvault.policy import service as policy_service
from callvault.quality import sampling
from callvault.recordings.models import Recording
from callvault.subject_requests.models import SubjectRequestRecording
from callvault.transcription import engines
from tests.api.test_auth_web import web_sign_in
from tests.support.audio import CALL_START, metadata, wav_bytes
from tests.support.env import CallvaultEnv, LiveServer
from tests.support.live import DeafTap, live_call
from tests.support.smtp import smtp_server
from tests.support.transcripts import transcribe_now

ALL_YES = {"greeting": "yes", "recording_notice": "na", "understood": "yes", "accurate": "yes",
           "verified": "yes", "courteous": "yes", "close": "yes"}
COACHED_START = CALL_START - timedelta(days=7)
"""The coached call is the only call of its (Toronto) week, so a sample of that week queues exactly it."""


class OneLineEngine:
    """Hears the same sentence (with a phone number to tone out) on every channel."""

    name = "scripted"

    def transcribe(self, samples: np.ndarray) -> list[engines.Segment]:
        words = ["please", "call", "416", "555", "0142", "back"]
        timed = tuple(engines.Word(w, i * 0.2, (i + 1) * 0.2) for i, w in enumerate(words))
        return [engines.Segment(0.0, len(words) * 0.2, " ".join(words), timed)]


@dataclasses.dataclass
class Calls:
    """The module's calls by name (all on alice's extension unless named after someone else)."""

    ids: dict[str, str]
    item: str
    """The coached call's review item."""
    clip: str
    """The coached call's training clip."""


_seeds = itertools.count(700)


def _ingest(env: CallvaultEnv, *, channels: int = 2, **meta: Any) -> str:
    rt = env.runtime
    audio = io.BytesIO(wav_bytes(2.0, channels=channels, seed=next(_seeds)))
    return ingest_recording(db=rt.db, store=rt.store, keyring=rt.keyring, audio=audio, metadata=metadata(**meta),
                            actor="test", clock=rt.clock).recording_id


@pytest.fixture(scope="module")
def calls(env: CallvaultEnv, server: LiveServer) -> Calls:
    ids = {
        "alice's call": _ingest(env),
        "bob's call": _ingest(env, agent="bob", extension="2002"),
        "an untranscribed call": _ingest(env),
        "a mono call": _ingest(env, channels=1),
        "a quarantined call": _ingest(env),
        "the coached call": _ingest(env, started=COACHED_START),
    }
    for transcribed in ("alice's call", "a mono call"):
        transcribe_now(env, ids[transcribed], OneLineEngine())
    with env.runtime.db.unit_of_work() as session:
        session.execute(update(Recording).where(Recording.id == ids["a quarantined call"]).values(quarantined=True))
    with server.client("alice") as alice:  # training use needs the recorded employee's consent (A6)
        assert alice.post("/api/v1/me/consents", json={"purpose": "training"}).status_code == 201
    # That week is over but need not be the last complete one, which is all a reviewer may draw: it is drawn
    # as an administrator fills a week nobody sampled (`callvault quality sample --from --to`).
    with env.runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=env.runtime.clock)
    week = sampling.period_containing(COACHED_START, sampling.rules_of(policy).sampling)
    zone = ZoneInfo(sampling.rules_of(policy).sampling.timezone)
    drawn = sampling.draw_on_demand(env.runtime.db, policy=policy, first=week.start.astimezone(zone).date(),
                                    last=(week.end.astimezone(zone) - timedelta(days=1)).date(), actor="cli:test",
                                    latest_only=False, clock=env.runtime.clock)
    assert drawn.selected == [ids["the coached call"]]
    with server.client("lead") as lead:
        [item] = [i for i in lead.get("/api/v1/quality/queue").json() if i["recording_id"] == ids["the coached call"]]
        assert lead.post(f"/api/v1/quality/items/{item['id']}/reviews", json={"answers": ALL_YES}).status_code == 201
        clip = lead.post(f"/api/v1/quality/items/{item['id']}/training-clip", json={"title": "A good call"})
        assert clip.status_code == 201, clip.text
    return Calls(ids=ids, item=item["id"], clip=clip.json()["id"])


# ------------------------------------------------------------------------------------------ the record
def _last_seq(env: CallvaultEnv) -> int:
    with env.runtime.db.unit_of_work() as session:
        return int(session.scalar(select(func.coalesce(func.max(AuditEntry.seq), 0))) or 0)


def _entry_since(env: CallvaultEnv, seq: int, *, actor: str, object_id: str, action: str | None = None) -> AuditEntry:
    """The newest audit entry for ``actor`` and ``object_id`` written after ``seq`` (the request is on record)."""
    with env.runtime.db.unit_of_work() as session:
        query = select(AuditEntry).where(AuditEntry.seq > seq, AuditEntry.actor == actor,
                                         AuditEntry.object_id == object_id)
        if action is not None:
            query = query.where(AuditEntry.action == action)
        entry = session.scalars(query.order_by(AuditEntry.seq.desc()).limit(1)).first()
        assert entry is not None, f"no audit entry for {actor} on {object_id} after #{seq}"
        session.expunge(entry)
        return entry


def assert_on_record_as_answered(entry: AuditEntry, status: int, message: str | None = None) -> None:
    """allow ⇔ a success; a refusal's entry carries the reason the person was told."""
    expected = "allow" if 200 <= status < 300 else "deny"
    assert entry.decision == expected, (
        f"answered {status} but on record as {entry.decision!r} ({entry.action}: {entry.reason})")
    if expected == "deny" and message is not None:
        assert entry.reason and entry.reason in message, (entry.reason, message)


# ------------------------------------------------------------------------------------------ the endpoints
@dataclasses.dataclass(frozen=True)
class Endpoint:
    path: str
    """With ``{id}`` for the recording (``{item}``, ``{clip}`` for quality's own objects)."""
    params: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    web: bool = False
    """A page, fetched with a signed-in browser session rather than a bearer token."""
    on_record_as: str = "recording"
    """What the audit entry is about: the ``recording``, or the ``clip``."""
    note: str | None = None
    """POSTed as a CRM note (``{"note": ...}``) instead of a GET."""
    decided_as: str | None = None
    """The entry's action when the request writes others after its decision (a stored note)."""


ENDPOINTS = {
    "play": Endpoint("/api/v1/recordings/{id}/audio"),
    "download": Endpoint("/api/v1/recordings/{id}/audio", params=(("download", "true"),)),
    "play past the end": Endpoint("/api/v1/recordings/{id}/audio", headers=(("Range", "bytes=99999999-"),)),
    "read the transcript": Endpoint("/api/v1/recordings/{id}/transcript"),
    "play the redacted audio": Endpoint("/api/v1/recordings/{id}/audio/redacted"),
    "read the CRM check": Endpoint("/api/v1/recordings/{id}/crm-note"),
    "check a CRM note": Endpoint("/api/v1/recordings/{id}/crm-note", note="Refund of 125 dollars approved.",
                                 decided_as="recording.transcript"),
    "play the queued call": Endpoint("/api/v1/quality/items/{item}/audio"),
    "play the training clip": Endpoint("/api/v1/quality/training/clips/{clip}/audio", on_record_as="clip"),
    "open the recording page": Endpoint("/recordings/{id}", web=True),
}


@dataclasses.dataclass(frozen=True)
class Ask:
    """Someone asks for something on a call, naming a purpose, and gets an answer."""

    who: str
    what: str
    call: str
    purpose: str | None
    answer: int
    stepped_up: bool = True
    """For downloads: whether the person confirmed a fresh authenticator code first (RELIABILITY 17)."""

    def __str__(self) -> str:
        fresh = "" if self.stepped_up else " without a fresh code"
        return f"{self.who} {self.what}{fresh} of {self.call} for {self.purpose or 'no purpose'} -> {self.answer}"


ASKS = [
    Ask("lead", "play", "alice's call", "spot_check", 200),
    Ask("lead", "download", "alice's call", "spot_check", 200),
    Ask("lead", "download", "alice's call", "spot_check", 403, stepped_up=False),  # the policy said yes; no code
    Ask("lead", "play", "alice's call", None, 403),
    Ask("lead", "play", "alice's call", "gossip", 403),
    Ask("alice", "play", "alice's call", "self_review", 200),
    Ask("alice", "play", "bob's call", "self_review", 404),  # out of scope looks absent (issue 24)
    Ask("alice", "play", "alice's call", "spot_check", 403),
    Ask("newhire", "play", "alice's call", "self_review", 403),  # has not acknowledged the policy
    Ask("it", "play", "alice's call", "spot_check", 403),
    Ask("lead", "play", "a quarantined call", "spot_check", 404),  # hidden from lead, as its metadata is
    Ask("lead", "play", "bob's call", "training", 403),  # bob never consented to training
    Ask("lead", "play", "alice's call", "training", 403),  # allowed by the policy, but no anonymised copy yet
    Ask("lead", "download", "alice's call", "training", 403),
    Ask("lead", "play", "the coached call", "training", 200),  # served its anonymised clip
    Ask("lead", "play past the end", "alice's call", "spot_check", 416),
    Ask("lead", "read the transcript", "alice's call", "complaint_investigation", 200),
    Ask("lead", "read the transcript", "alice's call", "training", 200),  # masked
    Ask("alice", "read the transcript", "bob's call", "self_review", 404),
    Ask("lead", "read the transcript", "an untranscribed call", "complaint_investigation", 404),
    Ask("lead", "play the redacted audio", "alice's call", "spot_check", 200),
    Ask("lead", "play the redacted audio", "alice's call", "training", 200),  # caller's channel silenced too
    Ask("lead", "play the redacted audio", "an untranscribed call", "spot_check", 409),
    Ask("lead", "play the redacted audio", "a mono call", "training", 403),  # voices cannot be separated
    Ask("alice", "play the redacted audio", "bob's call", "self_review", 404),
    Ask("lead", "read the CRM check", "alice's call", "spot_check", 200),
    Ask("alice", "read the CRM check", "bob's call", "self_review", 404),
    Ask("lead", "read the CRM check", "alice's call", None, 403),
    Ask("lead", "check a CRM note", "alice's call", "spot_check", 201),
    Ask("alice", "check a CRM note", "alice's call", None, 403),  # metadata is hers, the words need a purpose
    Ask("alice", "check a CRM note", "bob's call", "self_review", 404),
    Ask("it", "check a CRM note", "alice's call", "spot_check", 403),
    Ask("lead", "play the queued call", "the coached call", None, 200),  # the queue implies spot_check
    Ask("exec", "play the queued call", "the coached call", None, 200),
    Ask("lead", "play the training clip", "the coached call", None, 200),
    Ask("exec", "play the training clip", "the coached call", None, 200),
    Ask("lead", "open the recording page", "alice's call", "spot_check", 200),
    Ask("lead", "open the recording page", "alice's call", "training", 403),  # nothing the player could play
    Ask("lead", "open the recording page", "the coached call", "training", 200),
    Ask("alice", "open the recording page", "alice's call", "self_review", 200),
    Ask("alice", "open the recording page", "bob's call", "self_review", 404),  # out of scope looks absent
    Ask("alice", "open the recording page", "alice's call", "spot_check", 403),
]


@pytest.fixture(scope="module")
def browsers(server: LiveServer, env: CallvaultEnv) -> Iterator[dict[str, httpx.Client]]:
    """A signed-in browser session per person who opens pages."""
    opened: dict[str, httpx.Client] = {}
    try:
        for who in sorted({a.who for a in ASKS if ENDPOINTS[a.what].web}):
            client = httpx.Client(base_url=server.base_url, timeout=30)
            opened[who] = client
            web_sign_in(client, env, who)
        yield opened
    finally:
        for client in opened.values():
            client.close()


@pytest.mark.parametrize("ask", ASKS, ids=str)
def test_the_audit_entry_says_what_the_person_got(
    ask: Ask, env: CallvaultEnv, server: LiveServer, calls: Calls, browsers: dict[str, httpx.Client],
) -> None:
    endpoint = ENDPOINTS[ask.what]
    recording = calls.ids[ask.call]
    path = endpoint.path.format(id=recording, item=calls.item, clip=calls.clip)
    params = dict(endpoint.params) | ({"purpose": ask.purpose} if ask.purpose else {})
    before = _last_seq(env)
    if endpoint.web:
        resp = browsers[ask.who].get(path, params=params)
    else:
        with server.client(ask.who) as client:
            if ask.what == "download" and ask.stepped_up:
                server.step_up(client, ask.who)
            elif ask.what == "download":  # a token of its own, never stepped up (the shared one may have been)
                client.headers["Authorization"] = f"Bearer {server.sign_in(client, ask.who)}"
            if endpoint.note is not None:
                resp = client.post(path, params=params, json={"note": endpoint.note})
            else:
                resp = client.get(path, params=params, headers=dict(endpoint.headers))
    assert resp.status_code == ask.answer, resp.text[:500]
    entry = _entry_since(env, before, actor=ask.who, action=endpoint.decided_as,
                         object_id=calls.clip if endpoint.on_record_as == "clip" else recording)
    refused_in_json = resp.is_error and resp.headers.get("content-type", "").startswith("application/json")
    message = resp.json()["message"] if refused_in_json else None
    if message == "no such recording":  # a call the person may not know exists: the record keeps the real reason
        assert entry.reason not in ("", message), entry.reason
        message = None
    assert_on_record_as_answered(entry, resp.status_code, message)


def test_a_clip_the_library_does_not_open_to_the_role_is_refused_on_record(
    env: CallvaultEnv, server: LiveServer, calls: Calls,
) -> None:
    before = _last_seq(env)
    with server.client("alice") as alice:  # a specialist: not a library role
        resp = alice.get(f"/api/v1/quality/training/clips/{calls.clip}/audio")
    assert resp.status_code == 403
    assert_on_record_as_answered(_entry_since(env, before, actor="alice", object_id=calls.clip), 403,
                                 resp.json()["message"])


# ------------------------------------------------------------------------------------------ live listening
def test_listening_live_is_on_record_as_answered(env: CallvaultEnv, server: LiveServer) -> None:
    call_id = "siprec:audit-matches-answer"
    url = f"{server.base_url.replace('http', 'ws')}/api/v1/live/calls/{call_id}/listen"
    with DeafTap() as tap, live_call(env, call_id, tap.url):
        for who, purpose, accepted in (("lead", "spot_check", True), ("lead", "training", False),
                                       ("alice", "spot_check", False)):
            before = _last_seq(env)
            with server.client(who) as client, connect(
                    f"{url}?purpose={purpose}",
                    additional_headers={"Authorization": client.headers["Authorization"]}) as ws:
                first = json.loads(ws.recv(timeout=10))
                assert (first["type"] == "hello") is accepted, first
                entry = _entry_since(env, before, actor=who, object_id=call_id, action="call.monitor_started")
                assert_on_record_as_answered(entry, 200 if accepted else 403, first.get("message"))


# ------------------------------------------------------------------------------- subject-request deliveries
def _link_in_the_last_mail(env: CallvaultEnv, to: str) -> str:
    """The link as the caller gets it: by mail (the outbox keeps it sealed, never in clear)."""
    with smtp_server() as sink:
        notify.send_due(env.runtime.db, sink.settings, clock=env.runtime.clock, keyring=env.runtime.keyring)
        payloads = [r.message.get_payload(decode=True) for r in sink.to(to)
                    if str(r.message["Subject"]) == "Your call recordings"]
    bodies = [p.decode("utf-8") for p in payloads if isinstance(p, bytes)]
    assert bodies, f"no download mail reached {to}"
    found = re.search(r"(http\S+/s/\S+)", bodies[-1])
    assert found, bodies[-1]
    return found.group(1)


def test_a_release_or_a_download_refused_for_one_call_is_on_record_as_refused_for_each(
    env: CallvaultEnv, server: LiveServer, calls: Calls,
) -> None:
    """Subject access decides every call of a release, and again at each download. When one call is
    refused, nothing is released or downloaded: no call may stay on record as allowed."""
    first, second = _ingest(env), _ingest(env)
    with server.client("alice") as alice:
        filed = alice.post("/api/v1/me/subject-requests", json={"description": "my calls"})
        assert filed.status_code == 201, filed.text
        request_id, email = filed.json()["id"], filed.json()["email"]
    with server.client("lead") as lead:
        assert lead.post(f"/api/v1/subject-requests/{request_id}/review",
                         json={"recording_ids": [first, second]}).status_code == 200
        with env.runtime.db.unit_of_work() as session:  # quarantined after review: the release must stop
            session.execute(update(Recording).where(Recording.id == second).values(quarantined=True))
        before = _last_seq(env)
        server.step_up(lead, "lead")  # approving needs a fresh code
        refused = lead.post(f"/api/v1/subject-requests/{request_id}/approve", json={})
        assert refused.status_code == 403 and "quarantined" in refused.json()["message"]
        for rec in (first, second):
            entry = _entry_since(env, before, actor="lead", object_id=rec, action="recording.export")
            assert_on_record_as_answered(entry, refused.status_code)

        with env.runtime.db.unit_of_work() as session:
            session.execute(update(Recording).where(Recording.id == second).values(quarantined=False))
        before = _last_seq(env)
        server.step_up(lead, "lead")  # approving needs a fresh code
        released = lead.post(f"/api/v1/subject-requests/{request_id}/approve", json={})
        assert released.status_code == 200, released.text
        for rec in (first, second):
            assert_on_record_as_answered(
                _entry_since(env, before, actor="lead", object_id=rec, action="recording.export"), 200)

    link = _link_in_the_last_mail(env, email)
    with httpx.Client(timeout=30) as anyone:
        before = _last_seq(env)
        delivered = anyone.get(link)
        assert delivered.status_code == 200
        for rec in (first, second):  # decided again at download, as the approver
            assert_on_record_as_answered(
                _entry_since(env, before, actor="lead", object_id=rec, action="recording.download"), 200)

        # A call of someone else's slipped into the release afterwards: the whole download is refused.
        with env.runtime.db.unit_of_work() as session:
            session.add(SubjectRequestRecording(request_id=request_id, recording_id=calls.ids["bob's call"],
                                                party="operator", added_by="tamper", added_at=env.runtime.clock.now()))
        before = _last_seq(env)
        gone = anyone.get(link)
        assert gone.status_code == 410
        for rec in (first, second):
            assert_on_record_as_answered(
                _entry_since(env, before, actor="lead", object_id=rec, action="recording.download"), 410)
