"""A purpose that serves only a masked copy learns no more from the CRM check or transcript search than the
masked transcript shows (A6: training only with caller anonymity upheld; HIPAA's minimum necessary).

The outside tester, as a support lead naming ``training`` on a call whose agent consented (policy A), posted
a CRM note with near-miss numbers: the transcript showed ``[phone number]``/``[account number]``, but the CRM
check's flags quoted the caller's phone and account numbers; a note with the exact numbers raised no flag (a
yes/no oracle), and transcript search found the call by its masked account number while a wrong number found
nothing. The same held for the HIPAA example's purposes that serve only the redacted copy (``spot_check``,
``self_review``). And a transcript search was audited without the recordings it found, so the recorded
employee's own page (``/me``) never showed who had searched their calls.
"""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from callvault.audit.models import AuditEntry
from callvault.capture.ingest import ingest_recording
from callvault.transcription import engines
from tests.api.test_auth_web import web_sign_in
from tests.conftest import POLICY_A
from tests.support.audio import metadata, wav_bytes
from tests.support.env import CallvaultEnv, LiveServer, served
from tests.support.transcripts import transcribe_now

CALLER = ["hello", "my", "name", "is", "Jane", "Smith.", "my", "phone", "is", "4165550199", "and", "my", "account",
          "is", "77231904", "it", "broke", "on", "March", "3"]
AGENT = ["refund", "of", "125", "dollars", "for", "the", "Acme", "Router", "approved"]
MASKED_AWAY = ("4165550199", "77231904", "Smith")
"""What the caller said that the masked transcript shows as ``[phone number]``, ``[account number]``, ``[name]``."""
NEAR_MISS = ("Spoke with Jane Smyth, phone 4165550198, account 77231905, it broke on March 4; "
             "refund of 125 dollars for the Acme Router.")
RIGHT_GUESS = "Phone 4165550199, account 77231904."
WRONG_GUESS = "Phone 4165550198, account 77231905."

_seeds = itertools.count(1700)


class _Says:
    """A transcription engine that hears one script per channel: channel 0 the caller, channel 1 the agent."""

    name = "scripted"

    def __init__(self, *scripts: list[str]) -> None:
        self.scripts = list(scripts)

    def transcribe(self, samples: np.ndarray) -> list[engines.Segment]:
        words = self.scripts.pop(0) if self.scripts else ["hello"]
        timed = tuple(engines.Word(w, i * 0.2, (i + 1) * 0.2) for i, w in enumerate(words))
        return [engines.Segment(0.0, len(words) * 0.2, " ".join(words), timed)]


def _recorded(env: CallvaultEnv, *scripts: list[str], **meta: Any) -> str:
    """A two-channel call (alice's extension unless ``meta`` says otherwise), transcribed with ``scripts``."""
    rt = env.runtime
    rec = ingest_recording(db=rt.db, store=rt.store, keyring=rt.keyring,
                           audio=io.BytesIO(wav_bytes(2.0, channels=2, seed=next(_seeds))),
                           metadata=metadata(**meta), actor="test", clock=rt.clock).recording_id
    transcribe_now(env, rec, _Says(*scripts))
    return rec


@pytest.fixture(scope="module")
def call(env: CallvaultEnv, server: LiveServer) -> str:
    """Alice's call with the caller's name, phone and account numbers and a date; alice consents to training."""
    rec = _recorded(env, CALLER, AGENT)
    with server.client("alice") as alice:
        assert alice.post("/api/v1/me/consents", json={"purpose": "training"}).status_code == 201
    return rec


def _masked_transcript(server: LiveServer, who: str, rec: str, purpose: str) -> str:
    with server.client(who) as client:
        resp = client.get(f"/api/v1/recordings/{rec}/transcript", params={"purpose": purpose})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["redacted"] is True
    return "\n".join(s["text"] for s in body["segments"])


def _post_and_read(server: LiveServer, who: str, rec: str, purpose: str, note: str) -> tuple[dict[str, Any],
                                                                                         dict[str, Any], str]:
    """POST the note naming ``purpose``, then GET the CRM view: (answer, this note's view, the view's raw text)."""
    with server.client(who) as client:
        posted = client.post(f"/api/v1/recordings/{rec}/crm-note", json={"note": note}, params={"purpose": purpose})
        shown = client.get(f"/api/v1/recordings/{rec}/crm-note", params={"purpose": purpose})
    assert posted.status_code == 201, posted.text
    assert shown.status_code == 200, shown.text
    view = next(n for n in shown.json() if n["id"] == posted.json()["id"])
    return posted.json(), view, shown.text


def _assert_no_more_than_masked(view: dict[str, Any], raw: str, masked: str) -> None:
    """Nothing the masked transcript hides is in the CRM view, and every quote from the call is in that transcript."""
    for hidden in MASKED_AWAY:
        assert hidden not in raw, f"{hidden!r} is masked in the transcript but shown by the CRM check"
    assert view["redacted"] is True
    for flag in view["flags"]:
        if flag["call_text"] is not None:
            assert flag["call_text"] in masked, flag
        said = flag["detail"].partition("dates said: ")[2]
        assert all(d in masked for d in re.findall(r"[A-Z][a-z]+ \d+", said)), flag


def _search(server: LiveServer, who: str, q: str, purpose: str, limit: int = 50) -> Any:
    with server.client(who) as client:
        return client.get("/api/v1/transcripts/search", params={"q": q, "purpose": purpose, "limit": limit})


def _entries(env: CallvaultEnv, actor: str, action: str) -> list[AuditEntry]:
    with env.runtime.db.unit_of_work() as session:
        rows = list(session.scalars(select(AuditEntry).where(AuditEntry.actor == actor, AuditEntry.action == action)
                                    .order_by(AuditEntry.seq)))
        for r in rows:
            session.expunge(r)
    return rows


# ------------------------------------------------------------------------------ policy A: training (A6)
def test_training_crm_check_quotes_nothing_the_masked_transcript_hides(server: LiveServer, call: str) -> None:
    masked = _masked_transcript(server, "lead", call, "training")
    assert "[phone number]" in masked and "[account number]" in masked
    _, view, raw = _post_and_read(server, "lead", call, "training", NEAR_MISS)
    _assert_no_more_than_masked(view, raw, masked)
    assert view["check_state"] == "checked"
    assert "[phone number]" in view["note"] and "4165550198" not in view["note"]  # the note is masked too


def test_training_crm_check_answers_a_right_and_a_wrong_guess_alike(server: LiveServer, call: str) -> None:
    right, right_view, _ = _post_and_read(server, "lead", call, "training", RIGHT_GUESS)
    wrong, wrong_view, _ = _post_and_read(server, "lead", call, "training", WRONG_GUESS)
    assert right["flag_count"] == wrong["flag_count"]
    same = ("flag_count", "similarity", "flags", "note")
    assert {k: right_view[k] for k in same} == {k: wrong_view[k] for k in same}


def test_an_original_serving_purpose_still_gets_the_full_check(server: LiveServer, call: str) -> None:
    _, view, _ = _post_and_read(server, "lead", call, "complaint_investigation", NEAR_MISS)
    assert view["redacted"] is False
    near = {f["note_text"]: f["call_text"] for f in view["flags"] if f["kind"] == "number_near_match"}
    assert near == {"4165550198": "4165550199", "77231905": "77231904"}
    assert any("dates said: March 3" in f["detail"] for f in view["flags"])


def test_training_search_is_refused_whatever_the_words(env: CallvaultEnv, server: LiveServer, call: str) -> None:
    before = len(_entries(env, "lead", "transcript.search"))
    answers = [_search(server, "lead", q, "training") for q in ("77231904", "77231905", "refund")]
    assert [a.status_code for a in answers] == [403, 403, 403], answers[0].text
    assert answers[0].json() == answers[1].json() == answers[2].json()  # no answer depends on what was said
    message = answers[0].json()["message"]
    assert "training" in message and "masked" in message
    entries = _entries(env, "lead", "transcript.search")[before:]
    assert [(e.decision, e.purpose, e.details["recording_ids"]) for e in entries] == [("deny", "training", [])] * 3
    assert entries[0].reason == message


def test_the_search_page_refuses_training_and_lists_nothing(env: CallvaultEnv, server: LiveServer, call: str) -> None:
    before = len(_entries(env, "lead", "transcript.search"))
    with server.client() as browser:
        web_sign_in(browser, env, "lead")
        page = browser.get("/recordings", params={"words": "77231904", "purpose": "training"})
    assert call not in page.text
    assert "masked" in page.text
    entries = _entries(env, "lead", "transcript.search")[before:]
    assert [(e.decision, e.purpose) for e in entries] == [("deny", "training")]


def test_an_original_serving_search_still_finds_the_call(server: LiveServer, call: str) -> None:
    found = _search(server, "lead", "77231904", "complaint_investigation")
    assert found.status_code == 200 and call in [i["recording_id"] for i in found.json()["items"]]


# --------------------------------------------------------------- who searched my calls (A10, /me page)
def _my_page_row(server: LiveServer, env: CallvaultEnv, rec: str) -> str | None:
    """The row of alice's ``/me`` access history that links ``rec``, or None."""
    with server.client() as browser:
        web_sign_in(browser, env, "alice")
        html = browser.get("/me").text
    return next((row for row in html.split("<tr>") if f"/recordings/{rec}" in row), None)


def test_a_search_names_the_calls_it_found_and_their_agent_sees_it(env: CallvaultEnv, server: LiveServer) -> None:
    quiet = _recorded(env, ["my", "xylophone", "stopped", "working"], ["sorry", "to", "hear"])
    other = _recorded(env, ["the", "xylophone", "is", "fine"], ["good"], extension="2002", agent="bob")
    assert _my_page_row(server, env, quiet) is None  # nobody has reached it yet
    found = _search(server, "lead", "xylophone", "complaint_investigation")
    assert found.status_code == 200
    ids = [i["recording_id"] for i in found.json()["items"]]
    assert set(ids) == {quiet, other}
    entry = _entries(env, "lead", "transcript.search")[-1]
    assert entry.decision == "allow" and sorted(entry.details["recording_ids"]) == sorted(ids)
    row = _my_page_row(server, env, quiet)
    assert row is not None and "lead" in row and "complaint investigation" in row and "allowed" in row
    one = _search(server, "lead", "xylophone", "complaint_investigation", limit=1).json()["items"]
    assert len(one) == 1
    assert _entries(env, "lead", "transcript.search")[-1].details["recording_ids"] == [one[0]["recording_id"]]


# ---------------------------------------------------------- purposes that serve only the redacted copy
def _redacted_purposes(text: str) -> str:
    """Policy A with ``spot_check`` and ``self_review`` serving only the redacted copy, as the HIPAA example's do."""
    out = text.replace("  spot_check:\n    description: Management spot checks that customer experience standards "
                       "are being met\n    clause_ids: [A6, A13]\n    roles: [executive, support_lead]\n",
                       "  spot_check:\n    description: Management spot checks that customer experience standards "
                       "are being met\n    clause_ids: [A6, A13]\n    roles: [executive, support_lead]\n"
                       "    serves: redacted\n")
    out = out.replace("    roles: [specialist]\n", "    roles: [specialist]\n    serves: redacted\n")
    # A live call cannot be redacted, so live monitoring names a purpose that serves the original.
    out = out.replace("  purposes: [spot_check, complaint_investigation, health_safety_crime, regulatory_compliance]\n"
                      "  default_purpose: spot_check\n",
                      "  purposes: [complaint_investigation, health_safety_crime, regulatory_compliance]\n"
                      "  default_purpose: complaint_investigation\n")
    assert out.count("serves: redacted") == 2 and "default_purpose: complaint_investigation" in out
    return out


@pytest.fixture(scope="module")
def redacted_site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[tuple[LiveServer, CallvaultEnv, str]]:
    tmp = tmp_path_factory.mktemp("redacted")
    policy = tmp / "policy.yaml"
    policy.write_text(_redacted_purposes(Path(POLICY_A).read_text()))
    with served(request.config.getoption("--db"), tmp, policy) as (live, environment):
        yield live, environment, _recorded(environment, CALLER, AGENT)


@pytest.mark.parametrize("who, purpose", [("alice", "self_review"), ("lead", "spot_check")])
def test_redacted_purposes_get_a_masked_crm_check_and_no_search(
    redacted_site: tuple[LiveServer, CallvaultEnv, str], who: str, purpose: str,
) -> None:
    live, _, rec = redacted_site
    masked = _masked_transcript(live, who, rec, purpose)
    _, view, raw = _post_and_read(live, who, rec, purpose, NEAR_MISS)
    _assert_no_more_than_masked(view, raw, masked)
    right, _, _ = _post_and_read(live, who, rec, purpose, RIGHT_GUESS)
    wrong, _, _ = _post_and_read(live, who, rec, purpose, WRONG_GUESS)
    assert right["flag_count"] == wrong["flag_count"]
    answers = [_search(live, who, q, purpose) for q in ("77231904", "77231905")]
    assert [a.status_code for a in answers] == [403, 403]
    assert answers[0].json() == answers[1].json() and purpose in answers[0].json()["message"]
