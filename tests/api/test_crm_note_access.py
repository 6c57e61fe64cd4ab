"""The CRM check is transcript content (issue 24, point 5).

The outside tester read a call's spoken digits through ``GET /crm-note`` with a ``recordings:read``
token, and learnt what was said by posting guessed notes as someone who may only see the call's
metadata and reading ``flag_count``. Both now go through the transcript's content decision (a named
purpose, a token scope that covers content, the role's scope), audited as answered; a refused
caller gets the same answer whatever the note says, and the CRM webhook answers nothing derived from
the transcript.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from callvault.audit.models import AuditEntry
from callvault.capture.ingest import ingest_recording
from callvault.cli.main import app
from callvault.transcription import engines
from callvault.transcription.models import CrmNote
from tests.support.audio import metadata, wav_bytes
from tests.support.env import CallvaultEnv, LiveServer
from tests.support.transcripts import transcribe_now

SAID = ["the", "refund", "is", "125", "dollars", "for", "order", "48152"]
RIGHT_GUESS = "Refund of 125 dollars for order 48152."
WRONG_GUESS = "Refund of 900 dollars for order 11111."


class SaysTheRefund:
    """Hears the agent confirm a refund amount and an order number."""

    name = "scripted"

    def transcribe(self, samples: np.ndarray) -> list[engines.Segment]:
        timed = tuple(engines.Word(w, i * 0.2, (i + 1) * 0.2) for i, w in enumerate(SAID))
        return [engines.Segment(0.0, len(SAID) * 0.2, " ".join(SAID), timed)]


_seeds = itertools.count(900)


@pytest.fixture(scope="module")
def call(env: CallvaultEnv) -> str:
    """A transcribed call on alice's extension."""
    rt = env.runtime
    rec = ingest_recording(db=rt.db, store=rt.store, keyring=rt.keyring,
                           audio=io.BytesIO(wav_bytes(2.0, channels=2, seed=next(_seeds))),
                           metadata=metadata(), actor="test", clock=rt.clock).recording_id
    transcribe_now(env, rec, SaysTheRefund())
    return rec


def _token(env: CallvaultEnv, user: str, *scopes: str) -> str:
    args = ["tokens", "create", user, "--ttl", "1h"]
    for scope in scopes:
        args += ["--scope", scope]
    result = CliRunner().invoke(app, [*args, "--data-dir", str(env.data_dir)], env=env.cli_env)
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


@pytest.fixture()
def read_only_token(server: LiveServer, env: CallvaultEnv) -> Iterator[httpx.Client]:
    """The CRM integration's token: it may search recordings and read their metadata, nothing more."""
    with server.client() as client:
        client.headers["Authorization"] = f"Bearer {_token(env, 'lead', 'recordings:read')}"
        yield client


def _notes(env: CallvaultEnv, rec: str) -> int:
    with env.runtime.db.unit_of_work() as session:
        return session.scalar(select(func.count()).select_from(CrmNote).where(CrmNote.recording_id == rec)) or 0


def _last_entry(env: CallvaultEnv, actor: str, rec: str, action: str | None = None) -> AuditEntry:
    with env.runtime.db.unit_of_work() as session:
        query = select(AuditEntry).where(AuditEntry.actor == actor, AuditEntry.object_id == rec)
        if action is not None:
            query = query.where(AuditEntry.action == action)
        entry = session.scalars(query.order_by(AuditEntry.seq.desc())).first()
        assert entry is not None
        session.expunge(entry)
        return entry


def test_a_metadata_token_cannot_read_the_crm_check(read_only_token: httpx.Client, call: str) -> None:
    assert read_only_token.get(f"/api/v1/recordings/{call}").status_code == 200  # metadata: yes
    resp = read_only_token.get(f"/api/v1/recordings/{call}/crm-note", params={"purpose": "complaint_investigation"})
    assert resp.status_code == 403, resp.text
    assert "recordings:play" in resp.json()["message"]
    assert "48152" not in resp.text


def test_a_metadata_token_cannot_post_guesses(env: CallvaultEnv, read_only_token: httpx.Client, call: str) -> None:
    before = _notes(env, call)
    answers = [read_only_token.post(f"/api/v1/recordings/{call}/crm-note", json={"note": guess},
                                    params={"purpose": "complaint_investigation"})
               for guess in (RIGHT_GUESS, WRONG_GUESS)]
    assert [a.status_code for a in answers] == [403, 403]
    assert answers[0].json() == answers[1].json()
    assert _notes(env, call) == before


@pytest.mark.parametrize("who, purpose", [
    ("alice", None),  # her own call, but no purpose named
    ("alice", "spot_check"),  # not a purpose her role may name
    ("it", "spot_check"),  # IT staff administer; content follows the purpose rules
    ("bob", "self_review"),  # a colleague's call
])
def test_guessed_notes_get_the_same_refusal_whatever_they_say(
    env: CallvaultEnv, server: LiveServer, call: str, who: str, purpose: str | None,
) -> None:
    before = _notes(env, call)
    params = {"purpose": purpose} if purpose else {}
    with server.client(who) as client:
        answers = [client.post(f"/api/v1/recordings/{call}/crm-note", json={"note": guess}, params=params)
                   for guess in (RIGHT_GUESS, WRONG_GUESS)]
    hidden = who == "bob"  # a colleague's call is answered as an unknown id (issue 24)
    assert [a.status_code for a in answers] == ([404, 404] if hidden else [403, 403]), answers[0].text
    assert answers[0].json() == answers[1].json()
    assert "flag_count" not in answers[0].text
    assert _notes(env, call) == before  # refused before the note was looked at
    entry = _last_entry(env, who, call)
    assert entry.action == "recording.transcript" and entry.decision == "deny"
    if hidden:
        assert "extension" in entry.reason and answers[0].json()["message"] == "no such recording"
    else:
        assert entry.reason == answers[0].json()["message"]


def test_the_owner_naming_a_purpose_posts_and_reads_the_check(env: CallvaultEnv, server: LiveServer,
                                                              call: str) -> None:
    with server.client("alice") as alice:
        right = alice.post(f"/api/v1/recordings/{call}/crm-note", json={"note": RIGHT_GUESS},
                           params={"purpose": "self_review"})
        assert _last_entry(env, "alice", call, "recording.transcript").decision == "allow"
        wrong = alice.post(f"/api/v1/recordings/{call}/crm-note", json={"note": WRONG_GUESS},
                           params={"purpose": "self_review"})
    assert right.status_code == wrong.status_code == 201, right.text
    assert right.json()["flag_count"] == 0 and wrong.json()["flag_count"] >= 2
    entry = _last_entry(env, "alice", call, "recording.transcript")
    assert entry.decision == "allow" and entry.purpose == "self_review"
    stored = _last_entry(env, "alice", call, "crm_note.received")  # read by administrators: no flags
    assert "flags" not in stored.details and "check_state" not in stored.details


def test_a_content_token_naming_a_purpose_reads_the_check(env: CallvaultEnv, server: LiveServer,
                                                          call: str) -> None:
    with server.client() as client:
        client.headers["Authorization"] = f"Bearer {_token(env, 'lead', 'recordings:read', 'recordings:play')}"
        resp = client.get(f"/api/v1/recordings/{call}/crm-note", params={"purpose": "complaint_investigation"})
    assert resp.status_code == 200, resp.text
