"""Issue 25 point 2 on the pages: a call capture could not record is never silently "available".

Over HTTP with a browser-like client signed in through the pages (policy A): the recordings list flags a
failed capture (with its reason, nothing to play) and an incomplete one (seconds without media), a filter
finds either kind, and each recording page says what happened (a failed call has no player; a gapped call
names its gaps). Rows are made as SIPREC capture makes them: ``reserve_recording`` then ``fail_recording``,
or the audio stored with the gaps capture measured and ``finalise_recording``. Scope is the policy's as for
any row: bob (ext 2002) sees none of alice's (ext 2001), the support lead sees the team's.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest

from callvault.capture.ingest import fail_recording
from callvault.capture.metadata import parse_metadata
from tests.api.test_auth_web import signed_in_pages
from tests.support.audio import metadata, upload, wav_bytes
from tests.support.capture import reserve_as_captured, store_with_gaps
from tests.support.env import CallvaultEnv, LiveServer

REASON = "no media received (RTP timeout)"


@dataclass(frozen=True)
class Calls:
    complete: str
    failed: str
    gapped: str
    bobs_failed: str


def _failed(env: CallvaultEnv, meta: dict[str, object]) -> str:
    """A call whose media never arrived: reserved, then marked failed (no audio kept)."""
    call = parse_metadata(meta, default_region="CA")
    rec_id, blob_key = reserve_as_captured(env.runtime, call, wav_bytes(2.0), env.runtime.clock)
    assert fail_recording(env.runtime.db, env.runtime.store, rec_id, blob_key, reason=REASON, actor="siprec",
                          clock=env.runtime.clock)
    return rec_id


def _gapped(env: CallvaultEnv, meta: dict[str, object], gaps: list[list[float]]) -> str:
    """A call stored with the spans capture measured without media (silence in the audio there)."""
    call = parse_metadata(meta, default_region="CA")
    return store_with_gaps(env.runtime, call, wav_bytes(6.0, seed=25), gaps, env.runtime.clock)


@pytest.fixture(scope="module")
def calls(server: LiveServer, env: CallvaultEnv) -> Calls:
    """Yesterday (product clock): alice's complete, failed and gapped calls, and a failed call of bob's."""
    day = env.runtime.clock.now().replace(hour=10, minute=0, second=0, microsecond=0) - timedelta(days=1)
    with server.client("admin") as admin:
        resp = upload(admin, wav_bytes(2.0, seed=1), metadata(started=day))
    assert resp.status_code == 201, resp.text
    failed = _failed(env, metadata(call_id="c25-dead-media", started=day + timedelta(hours=1)))
    gapped = _gapped(env, {**metadata(call_id="c25-gaps", started=day + timedelta(hours=2)),
                           "ended_at": (day + timedelta(hours=2, seconds=6)).isoformat()}, [[1.0, 3.5]])
    bobs = _failed(env, metadata(call_id="c25-bob-dead", extension="2002", agent="bob",
                                 started=day + timedelta(hours=3)))
    return Calls(complete=resp.json()["id"], failed=failed, gapped=gapped, bobs_failed=bobs)


@pytest.fixture(scope="module")
def pages(server: LiveServer, env: CallvaultEnv) -> Iterator[dict[str, httpx.Client]]:
    """One signed-in browser-like client per person (each sign-in spends a one-time code)."""
    with signed_in_pages(server, env, ("alice", "bob", "lead")) as clients:
        yield clients


def _row(html: str, rec_id: str) -> str:
    """The results table's row linking to ``rec_id`` ('' when the list does not show it)."""
    for row in re.findall(r"<tr>(.*?)</tr>", html, re.S):
        if f"/recordings/{rec_id}\"" in row:
            return str(row)
    return ""


def test_the_list_flags_a_failed_capture_with_its_reason_and_nothing_to_play(
        pages: dict[str, httpx.Client], calls: Calls) -> None:
    page = pages["alice"].get("/recordings")
    assert page.status_code == 200
    failed = _row(page.text, calls.failed)
    assert 'class="badge bad"' in failed and ">failed<" in failed and REASON in failed
    assert "/audio" not in failed and "player" not in failed
    assert "capture failed" not in _row(page.text, calls.complete) and _row(page.text, calls.complete)


def test_the_list_flags_an_incomplete_capture_with_its_seconds_without_media(
        pages: dict[str, httpx.Client], calls: Calls) -> None:
    page = pages["alice"].get("/recordings")
    assert "incomplete — 2.5 s without media" in _row(page.text, calls.gapped)
    assert "incomplete" not in _row(page.text, calls.complete)


def test_a_specialist_sees_no_failed_call_of_another_extension(pages: dict[str, httpx.Client], calls: Calls) -> None:
    assert _row(pages["alice"].get("/recordings").text, calls.bobs_failed) == ""
    assert pages["alice"].get(f"/recordings/{calls.bobs_failed}").status_code == 404
    bob = pages["bob"].get("/recordings?state=failed")
    assert _row(bob.text, calls.bobs_failed) and _row(bob.text, calls.failed) == ""


def test_the_state_filter_finds_failed_or_incomplete_calls_for_the_team_lead(
        pages: dict[str, httpx.Client], calls: Calls) -> None:
    lead = pages["lead"]
    failed = lead.get("/recordings?state=failed")
    assert failed.status_code == 200
    assert {calls.failed, calls.bobs_failed} == {c for c in (calls.failed, calls.bobs_failed, calls.gapped,
                                                             calls.complete) if _row(failed.text, c)}
    assert '<option value="failed" selected' in failed.text
    gaps = lead.get("/recordings?state=gaps")
    assert [c for c in (calls.failed, calls.bobs_failed, calls.gapped, calls.complete)
            if _row(gaps.text, c)] == [calls.gapped]
    bad = lead.get("/recordings?state=lost")
    assert bad.status_code == 422 and "Capture: choose" in bad.text


def test_the_empty_list_keeps_the_tables_columns(pages: dict[str, httpx.Client], calls: Calls) -> None:
    page = pages["lead"].get("/recordings?state=failed&extension=9999")
    headings = len(re.findall(r'<th scope="col"', page.text.split('id="results"', 1)[1].split("</thead>", 1)[0]))
    assert f'colspan="{headings}"' in page.text


def test_the_failed_calls_page_explains_and_offers_no_player_or_download(
        pages: dict[str, httpx.Client], calls: Calls) -> None:
    alice = pages["alice"]
    page = alice.get(f"/recordings/{calls.failed}")
    assert page.status_code == 200
    assert f"Capture failed: {REASON}; no audio was kept." in page.text
    assert 'id="purpose-form"' not in page.text and "/audio" not in page.text
    named = alice.get(f"/recordings/{calls.failed}?purpose=self_review")
    assert named.status_code == 200 and 'id="player' not in named.text and "/audio" not in named.text


def test_the_gapped_calls_page_names_each_gap_beside_the_player(
        pages: dict[str, httpx.Client], calls: Calls) -> None:
    page = pages["alice"].get(f"/recordings/{calls.gapped}")
    assert page.status_code == 200
    assert 'id="media-gaps"' in page.text and "2.5 s of this call had no media" in page.text
    assert "0:01.0\u20130:03.5 (2.5 s)" in page.text
    played = pages["alice"].get(f"/recordings/{calls.gapped}?purpose=self_review")
    assert 'id="media-gaps"' in played.text and 'id="player' in played.text


def test_the_csv_export_says_what_capture_got_of_each_call(pages: dict[str, httpx.Client], calls: Calls) -> None:
    resp = pages["lead"].get("/recordings.csv?agent=alice")
    assert resp.status_code == 200
    table = {r["id"]: r["capture"] for r in csv.DictReader(io.StringIO(resp.text))}
    assert table[calls.failed] == f"failed: {REASON}"
    assert table[calls.gapped] == "incomplete: 2.5 s without media"
    assert table[calls.complete] == "complete"
