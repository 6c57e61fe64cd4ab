"""Redacted audio over HTTP: a tone over personal data on the channel where it was said, decided
and audited like playback; training gets the caller's channel silenced too."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile
from sqlalchemy import select

from callvault.audit.models import AuditEntry
from callvault.capture.ingest import ingest_recording
from callvault.transcription import engines, search, service
from tests.support.audio import metadata
from tests.support.env import CallvaultEnv, LiveServer

RATE = 16000
SECONDS = 4.0
CALLER_WORDS = ["my", "name", "is", "Jane", "Doe", "and", "my", "number", "is", "on", "file",
                "416", "555", "0142", "thanks"]
AGENT_WORDS = ["thank", "you", "I", "will", "call", "you", "back"]
WORD = 0.2  # each fake word lasts 0.2 s: on the caller's side "Jane Doe" is 0.6-1.0 s, the phone 2.2-2.8 s
NAME_SPAN = (0.65, 0.95)
PHONE_SPAN = (2.25, 2.75)
CLEAR_SPAN = (1.3, 1.9)  # "and my number is": nothing to hide


class ScriptedEngine:
    """Says the caller's words on the first channel and the agent's on the second, 0.2 s per word."""

    name = "scripted"

    def __init__(self) -> None:
        self.scripts = [CALLER_WORDS, AGENT_WORDS]

    def transcribe(self, samples: np.ndarray) -> list[engines.Segment]:
        words = self.scripts.pop(0)
        timed = tuple(engines.Word(w, i * WORD, (i + 1) * WORD) for i, w in enumerate(words))
        return [engines.Segment(0.0, len(words) * WORD, " ".join(words), timed)]


def original_audio() -> np.ndarray:
    t = np.arange(int(SECONDS * RATE)) / RATE
    caller = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 470 * t)
    agent = 0.3 * np.sin(2 * np.pi * 330 * t)
    return np.stack([caller, agent], axis=1).astype(np.float32)


@dataclasses.dataclass
class Call:
    recording_id: str
    untranscribed_id: str
    original: np.ndarray


@pytest.fixture(scope="module")
def call(env: CallvaultEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Call]:
    rt = env.runtime
    path: Path = tmp_path_factory.mktemp("redacted") / "call.wav"
    soundfile.write(path, original_audio(), RATE, subtype="PCM_16")
    original, _ = soundfile.read(path, dtype="float32", always_2d=True)
    ids = [ingest_recording(db=rt.db, store=rt.store, keyring=rt.keyring, audio=path, metadata=metadata(),
                            actor="test", clock=rt.clock).recording_id for _ in range(2)]
    assert service.enqueue_safely(rt.db, engine="scripted") >= 2
    assert service.claim(rt.db, worker_id="w", recording_id=ids[0]) == ids[0]
    key = search.load_search_key(env.settings.key_dir, env.settings.env)
    outcome = service.process(db=rt.db, store=rt.store, keyring=rt.keyring, engine=ScriptedEngine(),
                              recording_id=ids[0], worker_id="w", redact_card_data=True, search_key=key,
                              clock=rt.clock)
    assert outcome is not None
    yield Call(ids[0], ids[1], original)


def fetch(server: LiveServer, user: str, rec_id: str, **params: str) -> tuple[int, np.ndarray | None, dict[str, str]]:
    with server.client(user) as client:
        resp = client.get(f"/api/v1/recordings/{rec_id}/audio/redacted", params=params)
    if resp.status_code != 200:
        return resp.status_code, None, dict(resp.headers)
    data, rate = soundfile.read(io.BytesIO(resp.content), dtype="float32", always_2d=True)
    assert rate == RATE and resp.headers["content-type"] == "audio/wav"
    return 200, data, dict(resp.headers)


def part(data: np.ndarray, span: tuple[float, float], channel: int) -> np.ndarray:
    return data[int(span[0] * RATE): int(span[1] * RATE), channel]


def dominant_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / RATE)[int(spectrum.argmax())])


def test_specialist_hears_a_tone_over_the_callers_name_and_phone_number(server: LiveServer, call: Call) -> None:
    status, data, headers = fetch(server, "alice", call.recording_id, purpose="self_review")
    assert status == 200 and data is not None
    for span in (NAME_SPAN, PHONE_SPAN):
        assert abs(dominant_hz(part(data, span, 0)) - 1000) < 10
        np.testing.assert_allclose(part(data, span, 1), part(call.original, span, 1), atol=1e-3)
    np.testing.assert_allclose(part(data, CLEAR_SPAN, 0), part(call.original, CLEAR_SPAN, 0), atol=1e-3)
    assert headers["x-callvault-caller-masked"] == "false" and int(headers["x-callvault-redacted-spans"]) >= 2
    assert headers["cache-control"] == "no-store"


def test_redacted_audio_without_a_purpose_is_refused_and_the_refusal_audited(
    env: CallvaultEnv, server: LiveServer, call: Call,
) -> None:
    assert fetch(server, "alice", call.recording_id)[0] == 403
    with env.runtime.db.unit_of_work() as session:
        entry = session.scalars(select(AuditEntry).where(
            AuditEntry.action == "recording.play", AuditEntry.actor == "alice",
            AuditEntry.object_id == call.recording_id).order_by(AuditEntry.seq.desc())).first()
    assert entry is not None and entry.decision == "deny"
    assert entry.details.get("view") == "redacted_audio"


def test_specialist_cannot_get_a_colleagues_redacted_audio(server: LiveServer, call: Call) -> None:
    assert fetch(server, "bob", call.recording_id, purpose="self_review")[0] == 404  # out of scope (issue 24)


def test_redacted_audio_of_a_call_not_yet_transcribed_says_why(server: LiveServer, call: Call) -> None:
    with server.client("alice") as client:
        resp = client.get(f"/api/v1/recordings/{call.untranscribed_id}/audio/redacted",
                          params={"purpose": "self_review"})
    assert resp.status_code == 409 and "transcript" in resp.json()["message"]


def test_training_gets_the_redacted_audio_with_the_callers_voice_silenced(server: LiveServer, call: Call) -> None:
    with server.client("alice") as alice:
        assert alice.post("/api/v1/me/consents", json={"purpose": "training"}).status_code == 201
    try:
        status, data, headers = fetch(server, "lead", call.recording_id, purpose="training")
    finally:
        with server.client("alice") as alice:
            alice.delete("/api/v1/me/consents/training")
    assert status == 200 and data is not None
    assert float(np.max(np.abs(data[:, 0]))) == 0.0
    np.testing.assert_allclose(data[:, 1], call.original[:, 1], atol=1e-3)
    assert headers["x-callvault-caller-masked"] == "true"
    assert fetch(server, "lead", call.recording_id, purpose="training")[0] == 403  # consent withdrawn
