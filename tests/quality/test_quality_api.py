"""Quality review over real HTTP (B8, A6): sampling with exclusions, the review queue and scoring, the
agent's own scores, calibration, and anonymised training clips that need the employee's consent."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import soundfile
from sqlalchemy import select, update

from callvault.audit.models import AuditEntry
from callvault.capture.ingest import ingest_recording
from callvault.quality.models import TrainingClip
from callvault.recordings.models import Recording
from callvault.transcription import engines
from tests.support.audio import metadata
from tests.support.env import CallvaultEnv, LiveServer
from tests.support.transcripts import transcribe_now

RATE = 16000
SECONDS = 4.0
_TODAY = datetime.now(ZoneInfo("America/Toronto")).date()  # policy A samples weeks in Toronto
MONDAY = _TODAY - timedelta(days=_TODAY.weekday() + 7)
"""Last week's Monday by the clock the suite runs on: the sampled week is over, and its calls are recent (A3:
a call past its retention is refused on arrival)."""
WEEK = {"first_day": MONDAY.isoformat(), "last_day": (MONDAY + timedelta(days=6)).isoformat()}
CALLER_WORDS = ["my", "name", "is", "Jane", "Doe", "and", "my", "number", "is", "on", "file", "thanks"]
AGENT_WORDS = ["sure", "I", "will", "call", "416", "555", "0142", "back", "today"]  # phone: 0.8-1.4 s
AGENT_PHONE = (0.85, 1.35)
AGENT_CLEAR = (2.0, 3.5)
ALL_YES = {"greeting": "yes", "recording_notice": "na", "understood": "yes", "accurate": "yes",
           "verified": "yes", "courteous": "yes", "close": "yes"}


class ScriptedEngine:
    name = "scripted"

    def __init__(self) -> None:
        self.scripts = [CALLER_WORDS, AGENT_WORDS]

    def transcribe(self, samples: np.ndarray) -> list[engines.Segment]:
        words = self.scripts.pop(0)
        timed = tuple(engines.Word(w, i * 0.2, (i + 1) * 0.2) for i, w in enumerate(words))
        return [engines.Segment(0.0, len(words) * 0.2, " ".join(words), timed)]


def stereo() -> np.ndarray:
    t = np.arange(int(SECONDS * RATE)) / RATE
    caller = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 470 * t)
    agent = 0.3 * np.sin(2 * np.pi * 330 * t)
    return np.stack([caller, agent], axis=1).astype(np.float32)


@dataclasses.dataclass
class World:
    alice_calls: list[str]
    bob_calls: list[str]
    excluded: dict[str, str]
    original: np.ndarray


@pytest.fixture(scope="module")
def world(env: CallvaultEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    rt = env.runtime
    path: Path = tmp_path_factory.mktemp("qa") / "call.wav"
    soundfile.write(path, stereo(), RATE, subtype="PCM_16")
    original, _ = soundfile.read(path, dtype="float32", always_2d=True)

    def ingest(agent: str, extension: str, hour: int) -> str:
        started = datetime.combine(MONDAY + timedelta(days=1), time(hour), tzinfo=UTC)  # Tuesday, office hours
        meta = metadata(agent=agent, extension=extension, started_at=started.isoformat(),
                        ended_at=(started + timedelta(seconds=SECONDS)).isoformat(),
                        consent={"announcement_played_at": started.isoformat(), "announcement_version": "1"})
        return ingest_recording(db=rt.db, store=rt.store, keyring=rt.keyring, audio=path, metadata=meta,
                                actor="test", clock=rt.clock).recording_id

    alice = [ingest("alice", "2001", 14 + i) for i in range(4)]
    bob = [ingest("bob", "2002", 14 + i) for i in range(2)]
    excluded = {"quarantined": ingest("alice", "2001", 20), "on_hold": ingest("alice", "2001", 21),
                "personal": ingest("alice", "2001", 22)}
    with rt.db.unit_of_work() as session:
        # The states other parts of callvault put calls in (quarantine, legal hold, personal call).
        session.execute(update(Recording).where(Recording.id == excluded["quarantined"]).values(quarantined=True))
        session.execute(update(Recording).where(Recording.id == excluded["on_hold"]).values(on_hold=True))
        session.execute(update(Recording).where(Recording.id == excluded["personal"]).values(
            state="destroyed", retention_rule="personal_call"))
    yield World(alice, bob, excluded, original)


@pytest.fixture(scope="module")
def sample(server: LiveServer, world: World) -> dict[str, object]:
    with server.client("lead") as lead:
        resp = lead.post("/api/v1/quality/samples", json=WEEK)
    assert resp.status_code == 201, resp.text
    body: dict[str, object] = resp.json()
    return body


def test_sample_takes_two_calls_per_agent_and_leaves_out_quarantined_held_and_personal_calls(
    world: World, sample: dict[str, object],
) -> None:
    selected = set(sample["selected"])  # type: ignore[call-overload]
    assert sample["population_size"] == 6
    assert len(selected & set(world.alice_calls)) == 2 and len(selected & set(world.bob_calls)) == 2
    assert not selected & set(world.excluded.values())
    assert sample["excluded"] == {"quarantined": 1, "on_hold": 1, "personal": 1}
    assert len(str(sample["seed"])) == 32


def test_an_auditor_can_rederive_the_sample_from_its_seed_and_population(
    server: LiveServer, sample: dict[str, object],
) -> None:
    with server.client("exec") as client:
        resp = client.get(f"/api/v1/quality/samples/{sample['id']}/verify")
    assert resp.status_code == 200 and resp.json()["matches"] is True
    assert resp.json()["rederived"] == sample["selected"]


def test_specialists_cannot_see_the_review_queue_or_run_a_sample(server: LiveServer, sample: dict[str, object]) -> None:
    with server.client("alice") as alice:
        assert alice.get("/api/v1/quality/queue").status_code == 403
        assert alice.post("/api/v1/quality/samples", json=WEEK).status_code == 403


def _alice_item(server: LiveServer, who: str = "lead") -> dict[str, str]:
    with server.client(who) as client:
        items = client.get("/api/v1/quality/queue", params={"state": "all"}).json()
    return next(i for i in items if i["agent"] == "alice")


def test_listening_to_a_queued_call_is_decided_and_audited_as_a_spot_check(
    env: CallvaultEnv, server: LiveServer, sample: dict[str, object],
) -> None:
    item = _alice_item(server)
    with server.client("lead") as lead:
        resp = lead.get(f"/api/v1/quality/items/{item['id']}/audio")
    assert resp.status_code == 200 and resp.headers["content-type"] == "audio/wav"
    with env.runtime.db.unit_of_work() as session:
        entry = session.scalars(select(AuditEntry).where(
            AuditEntry.action == "recording.play", AuditEntry.actor == "lead",
            AuditEntry.object_id == item["recording_id"]).order_by(AuditEntry.seq.desc())).first()
        assert entry is not None and entry.decision == "allow" and entry.purpose == "spot_check"
        assert entry.details["quality_item"] == item["id"]


def test_reviewer_scores_comments_and_the_agent_sees_and_acknowledges_it(
    server: LiveServer, sample: dict[str, object],
) -> None:
    item = _alice_item(server)
    with server.client("lead") as lead:
        bad = lead.post(f"/api/v1/quality/items/{item['id']}/reviews", json={"answers": {"greeting": "yes"}})
        assert bad.status_code == 422 and "answers.close" in bad.text
        resp = lead.post(f"/api/v1/quality/items/{item['id']}/reviews",
                         json={"answers": {**ALL_YES, "accurate": "no"}, "coaching_note": "Check the price list.",
                               "share": True})
        assert resp.status_code == 201, resp.text
        review = resp.json()
        assert review["score"] == 75 and review["passed"] is False
        again = lead.post(f"/api/v1/quality/items/{item['id']}/reviews", json={"answers": ALL_YES})
        assert again.status_code == 409
        comment = lead.post(f"/api/v1/quality/items/{item['id']}/comments", json={"at_seconds": 1.5,
                                                                                  "text": "Good tone here"})
        assert comment.status_code == 201
        late = lead.post(f"/api/v1/quality/items/{item['id']}/comments", json={"at_seconds": 99, "text": "x"})
        assert late.status_code == 422
    with server.client("alice") as alice:
        mine = alice.get("/api/v1/quality/my-reviews").json()
        assert [r["id"] for r in mine] == [review["id"]] and mine[0]["coaching_note"] == "Check the price list."
        notes = alice.get(f"/api/v1/quality/my-reviews/{review['id']}/comments").json()
        assert [(c["at_seconds"], c["text"]) for c in notes] == [(1.5, "Good tone here")]
        ack = alice.post(f"/api/v1/quality/my-reviews/{review['id']}/acknowledge", json={"response": "Will do"})
        assert ack.status_code == 200 and ack.json()["acknowledged_at"]
        assert alice.post(f"/api/v1/quality/my-reviews/{review['id']}/acknowledge", json={}).status_code == 409
    with server.client("bob") as bob:
        assert bob.get("/api/v1/quality/my-reviews").json() == []
        assert bob.get(f"/api/v1/quality/my-reviews/{review['id']}/comments").status_code == 404
        assert bob.post(f"/api/v1/quality/my-reviews/{review['id']}/acknowledge", json={}).status_code == 404


def test_two_reviewers_on_one_call_appear_in_calibration_and_scores_in_the_dashboard(
    server: LiveServer, sample: dict[str, object],
) -> None:
    item = _alice_item(server)
    with server.client("exec") as ex:
        assert ex.post(f"/api/v1/quality/items/{item['id']}/reviews", json={"answers": ALL_YES}).status_code == 201
        pairs = ex.get("/api/v1/quality/calibration").json()
        pair = next(p for p in pairs if p["item_id"] == item["id"])
        assert pair["scores"] == {"lead": 75.0, "exec": 100.0} and pair["spread"] == 25
        assert pair["disagreements"] == ["accurate"]
        rows = ex.get("/api/v1/quality/dashboard", params={"by": "agent"}).json()
        alice = next(r for r in rows if r["key"] == "alice")
        assert alice["reviews"] == 2 and alice["average"] == 87.5 and alice["passed"] == 1


def test_training_clip_needs_consent_removes_the_caller_and_tones_out_personal_data(
    env: CallvaultEnv, server: LiveServer, world: World, sample: dict[str, object],
) -> None:
    item = _alice_item(server)
    transcribe_now(env, item["recording_id"], ScriptedEngine())
    with server.client("lead") as lead:
        refused = lead.post(f"/api/v1/quality/items/{item['id']}/training-clip", json={"title": "Callback"})
        assert refused.status_code == 403 and "consent" in refused.json()["message"]
    with server.client("alice") as alice:
        assert alice.post("/api/v1/me/consents", json={"purpose": "training"}).status_code == 201
    with server.client("lead") as lead:
        made = lead.post(f"/api/v1/quality/items/{item['id']}/training-clip", json={"title": "Callback"})
        assert made.status_code == 201, made.text
        clip = made.json()
        assert clip["masked_spans"] >= 1 and clip["transcript_used"] is True
        assert "recording_id" not in clip and "remote_number" not in clip
        assert [c["id"] for c in lead.get("/api/v1/quality/training/clips").json()] == [clip["id"]]
        audio = lead.get(f"/api/v1/quality/training/clips/{clip['id']}/audio")
    assert audio.status_code == 200
    data, rate = soundfile.read(io.BytesIO(audio.content), dtype="float32", always_2d=True)
    assert rate == RATE and data.shape[1] == 1  # one channel: the agent's
    clip_audio, caller, agent = data[:, 0], world.original[:, 0], world.original[:, 1]
    # No sample of the caller's channel: the clip does not correlate with it at all.
    assert abs(float(np.dot(clip_audio, caller))) / (np.linalg.norm(clip_audio) * np.linalg.norm(caller)) < 0.01

    def cut(x: np.ndarray, span: tuple[float, float]) -> np.ndarray:
        return x[int(span[0] * RATE): int(span[1] * RATE)]

    np.testing.assert_allclose(cut(clip_audio, AGENT_CLEAR), cut(agent, AGENT_CLEAR), atol=1e-3)
    t = np.arange(len(clip_audio)) / RATE
    tone = 0.1 * np.sin(2 * np.pi * 1000 * t)
    np.testing.assert_allclose(cut(clip_audio, AGENT_PHONE), cut(tone, AGENT_PHONE), atol=1e-3)  # tone only
    with env.runtime.db.unit_of_work() as session:
        row = session.get(TrainingClip, clip["id"])
        assert row is not None
        stored = env.runtime.store.read_at(row.blob_key, 0, 64 * 1024)
    assert audio.content[:64] not in stored and b"RIFF" not in stored  # encrypted at rest

    # The training purpose on the call itself is served this clip, never the original.
    with server.client("lead") as lead:
        served = lead.get(f"/api/v1/recordings/{item['recording_id']}/audio", params={"purpose": "training"})
    assert served.status_code == 200 and served.headers["x-callvault-anonymised"] == "true"
    assert served.content == audio.content

    with server.client("alice") as alice:  # withdrawing consent withdraws the clip
        assert alice.delete("/api/v1/me/consents/training").status_code == 204
    with server.client("lead") as lead:
        assert lead.get("/api/v1/quality/training/clips").json() == []
        gone = lead.get(f"/api/v1/quality/training/clips/{clip['id']}/audio")
        assert gone.status_code in (403, 404)
        original = lead.get(f"/api/v1/recordings/{item['recording_id']}/audio", params={"purpose": "training"})
        assert original.status_code == 403 and "consent" in original.json()["message"]
    with env.runtime.db.unit_of_work() as session:
        row = session.get(TrainingClip, clip["id"])
        assert row is not None and row.state == "destroyed" and row.wrapped_key is None


def test_specialists_cannot_browse_the_training_library(server: LiveServer, sample: dict[str, object]) -> None:
    with server.client("alice") as alice:
        assert alice.get("/api/v1/quality/training/clips").status_code == 403


def test_a_call_quarantined_after_it_was_sampled_leaves_the_queue(
    env: CallvaultEnv, server: LiveServer, sample: dict[str, object],
) -> None:
    with server.client("lead") as lead:
        items = lead.get("/api/v1/quality/queue", params={"state": "all"}).json()
        bobs = next(i for i in items if i["agent"] == "bob")
        with env.runtime.db.unit_of_work() as session:
            session.execute(update(Recording).where(Recording.id == bobs["recording_id"]).values(quarantined=True))
        try:
            after = [i["id"] for i in lead.get("/api/v1/quality/queue", params={"state": "all"}).json()]
            assert bobs["id"] not in after and len(after) == len(items) - 1
            assert lead.get(f"/api/v1/quality/items/{bobs['id']}/reviews").status_code == 404
        finally:
            with env.runtime.db.unit_of_work() as session:
                session.execute(update(Recording).where(Recording.id == bobs["recording_id"])
                                .values(quarantined=False))
