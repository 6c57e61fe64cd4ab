"""RELIABILITY scenario 21: a restored backup must not bring an erased call back (issue 24, finding 4).

The outside tester's steps, on SQLite and PostgreSQL: a call is ingested, transcribed and given a CRM
note; the database and the blobs are backed up; the agent marks the call personal (it is erased at
once); the old database and blobs are restored beside the current key directory. The audio, the
transcript and the note stay unreadable (their key is on the key-destruction list), but the catalog
row with the caller's number and the transcript's search terms came back, and nothing removed them:
the call's retention date lies years ahead, so no sweep thought it due. Now the key-destruction list
is re-applied at every start, every sweep and ``callvault check --repair``.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from callvault.api.app import create_app
from callvault.audit.models import AuditEntry
from callvault.capture.ingest import ingest_recording
from callvault.cli.main import app
from callvault.recordings.models import Recording, RecordingState
from callvault.retention.models import DestructionRecord
from callvault.transcription import engines
from callvault.transcription.models import CrmNote, TranscriptTerm
from tests.support.audio import metadata, wav_bytes
from tests.support.backup import backed_up
from tests.support.env import CallvaultEnv, LiveServer
from tests.support.transcripts import transcribe_now

CALLER = "+1 416 555 0177"
WORDS = "blueberry refund"


class Scripted:
    """Hears the same sentence on every channel."""

    name = "scripted"

    def transcribe(self, samples: np.ndarray) -> list[engines.Segment]:
        words = ["i", "want", "a", "blueberry", "refund"]
        timed = tuple(engines.Word(w, i * 0.2, (i + 1) * 0.2) for i, w in enumerate(words))
        return [engines.Segment(0.0, len(words) * 0.2, " ".join(words), timed)]


@pytest.fixture()
def server(isolated_env: CallvaultEnv) -> Iterator[LiveServer]:
    live = LiveServer(isolated_env)
    live.start()
    yield live
    live.stop()


def _found(server: LiveServer, rec: str) -> dict[str, bool]:
    """What the support lead's searches show of ``rec``: by the caller's number, by spoken words."""
    with server.client("lead") as lead:
        by_number = lead.get("/api/v1/recordings", params={"remote_number": CALLER})
        by_words = lead.get("/api/v1/transcripts/search", params={"q": WORDS, "purpose": "spot_check"})
    assert by_number.status_code == 200 and by_words.status_code == 200, (by_number.text, by_words.text)
    return {"number": any(r["id"] == rec for r in by_number.json()["items"]),
            "words": any(r["recording_id"] == rec for r in by_words.json()["items"])}


def _rows(env: CallvaultEnv, rec: str) -> dict[str, int]:
    with env.runtime.db.unit_of_work() as session:
        return {"terms": int(session.scalar(select(func.count()).select_from(TranscriptTerm)
                                            .where(TranscriptTerm.recording_id == rec)) or 0),
                "notes": int(session.scalar(select(func.count()).select_from(CrmNote)
                                            .where(CrmNote.recording_id == rec)) or 0)}


def _start(env: CallvaultEnv) -> None:
    with TestClient(create_app(env.runtime)):  # entering runs the app's start (lifespan)
        pass


def _cli(env: CallvaultEnv, *args: str) -> None:
    result = CliRunner().invoke(app, [*args, "--data-dir", str(env.data_dir)], env=env.cli_env)
    assert result.exit_code == 0, result.output


TRIGGERS: dict[str, Callable[[CallvaultEnv], None]] = {
    "start": _start,
    "sweep": lambda env: _cli(env, "retention", "sweep"),
    "check --repair": lambda env: _cli(env, "check", "--repair"),
}


@pytest.mark.parametrize("trigger", list(TRIGGERS))
def test_a_restore_does_not_bring_an_erased_call_back_to_search(
        isolated_env: CallvaultEnv, server: LiveServer, tmp_path: Path, trigger: str) -> None:
    env = isolated_env
    rt = env.runtime
    started = rt.clock.now() - timedelta(minutes=2)  # ended a moment ago: its agent may still mark it personal
    rec = ingest_recording(db=rt.db, store=rt.store, keyring=rt.keyring, audio=_audio(),
                           metadata=metadata(started=started, remote_number=CALLER), actor="test",
                           clock=rt.clock).recording_id
    transcribe_now(env, rec, Scripted())
    with server.client("alice") as alice:
        assert alice.post(f"/api/v1/recordings/{rec}/crm-note", params={"purpose": "self_review"},
                          json={"note": "Customer wants a blueberry refund"}).status_code == 201
    assert _found(server, rec) == {"number": True, "words": True}
    blob_key = _blob_key(env, rec)

    blobs = Path(env.settings.storage_url)
    with backed_up(env) as restore:
        shutil.copytree(blobs, tmp_path / "blobs-backup")
        with server.client("alice") as alice:
            erased = alice.post(f"/api/v1/recordings/{rec}/control", json={"action": "personal"})
        assert erased.status_code == 200, erased.text
        assert _found(server, rec) == {"number": False, "words": False}

        # Disaster, then the documented restore: database and blobs from the backup, keys as they are.
        restore()
        shutil.rmtree(blobs)
        shutil.copytree(tmp_path / "blobs-backup", blobs)

    # The attack as reported: content unreadable, but the call is findable again.
    with server.client("lead") as lead:
        assert lead.get(f"/api/v1/recordings/{rec}/audio", params={"purpose": "spot_check"}).status_code in (404, 410)
    assert _found(server, rec) == {"number": True, "words": True}
    assert _rows(env, rec) == {"terms": 5, "notes": 1}

    TRIGGERS[trigger](env)

    assert _found(server, rec) == {"number": False, "words": False}
    assert _rows(env, rec) == {"terms": 0, "notes": 0}
    assert not rt.store.exists(blob_key)
    with rt.db.unit_of_work() as session:
        row = session.get(Recording, rec)
        assert row is not None and row.state == RecordingState.DESTROYED and row.remote_number is None
        assert session.get(DestructionRecord, rec) is not None  # the register says it is gone again
        entries = list(session.scalars(select(AuditEntry).where(AuditEntry.action == "recording.re_destroyed")))
    assert [(e.details["recording_ids"], e.details["trigger"]) for e in entries] == [([rec], trigger)]
    # Re-applying again finds nothing more to do: idempotent, and no second audit entry.
    TRIGGERS[trigger](env)
    with rt.db.unit_of_work() as session:
        assert session.scalar(select(func.count()).select_from(AuditEntry)
                              .where(AuditEntry.action == "recording.re_destroyed")) == 1


def _audio() -> io.BytesIO:
    return io.BytesIO(wav_bytes(2.0, channels=2, seed=24))


def _blob_key(env: CallvaultEnv, rec: str) -> str:
    with env.runtime.db.unit_of_work() as session:
        row = session.get(Recording, rec)
        assert row is not None
        return row.blob_key
