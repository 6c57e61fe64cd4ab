"""Finding recordings by every filter the catalog offers, within the caller's scope."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from tests.support.audio import metadata, upload, wav_bytes
from tests.support.env import LiveServer

BASE = datetime.combine(datetime.now(UTC).date() - timedelta(days=40), time(9, 0), tzinfo=UTC)
"""The first call's start: recent by the clock the suite runs on (A3: an older call may be refused on arrival)."""


def _day(days: int) -> str:
    """Midnight UTC ``days`` after BASE's day, as a search bound."""
    return datetime.combine(BASE.date() + timedelta(days=days), time(0), tzinfo=UTC).isoformat()


@pytest.fixture(scope="module")
def catalog(server: LiveServer) -> dict[str, str]:
    """Six calls varying in every searchable field; returns call_id → recording id."""
    calls = [
        dict(call_id="s-1", extension="2001", agent="alice", direction="inbound", remote_number="+14165550101",
             local_number="+14165911668", offset=0),
        dict(call_id="s-2", extension="2001", agent="alice", direction="outbound", remote_number="+14165550102",
             local_number="+14165911668", offset=1,
             consent={"agent_notice_at": (BASE + timedelta(days=1)).isoformat()}),  # at the call's start
        dict(call_id="s-3", extension="2002", agent="bob", direction="inbound", remote_number="+14165550101",
             local_number="+14165911669", offset=2),
        dict(call_id="s-4", extension="2002", agent="bob", direction="inbound", remote_number="+14165550104",
             local_number="+14165911668", offset=3),
        dict(call_id="s-5", extension="2001", agent="alice", direction="inbound", remote_number="+14165550105",
             local_number="+14165911668", offset=10),
        dict(call_id="s-6", extension="2002", agent="bob", direction="inbound", remote_number="+14165550106",
             local_number="+14165911668", offset=20),
    ]
    ids = {}
    with server.client("admin") as admin:
        for i, call in enumerate(calls):
            started = BASE + timedelta(days=int(call.pop("offset")))  # type: ignore[call-overload]
            meta = metadata(started_at=started.isoformat(), ended_at=(started + timedelta(seconds=1)).isoformat(),
                            **call)
            if "consent" not in call:
                meta["consent"] = {"announcement_played_at": started.isoformat(), "announcement_version": "1"}
            resp = upload(admin, wav_bytes(1.0, seed=100 + i), meta)
            assert resp.status_code == 201, resp.text
            ids[str(call["call_id"])] = resp.json()["id"]
    return ids


def _calls(client: object, **params: str) -> list[str]:
    resp = client.get("/api/v1/recordings", params={"limit": "200", **params})  # type: ignore[attr-defined]
    assert resp.status_code == 200, resp.text
    return sorted(item["call_id"] for item in resp.json()["items"] if item["call_id"].startswith("s-"))


@pytest.mark.parametrize("params, expected", [
    ({"extension": "2002"}, ["s-3", "s-4", "s-6"]),
    ({"agent": "alice"}, ["s-1", "s-2", "s-5"]),
    ({"team": "customer_support"}, ["s-1", "s-2", "s-3", "s-4", "s-5", "s-6"]),
    ({"team": "billing"}, []),                                     # policy A records no other team (A1)
    ({"direction": "outbound"}, ["s-2"]),
    ({"remote_number": "+1 (416) 555-0101"}, ["s-1", "s-3"]),      # normalised before matching
    ({"remote_number": "416-555-0101"}, ["s-1", "s-3"]),           # national format, default region
    ({"local_number": "+14165911669"}, ["s-3"]),
    ({"started_from": _day(1), "started_to": _day(10)}, ["s-2", "s-3", "s-4"]),
    ({"extension": "2001", "direction": "inbound"}, ["s-1", "s-5"]),
])
def test_leadership_finds_recordings_by_each_filter(server: LiveServer, catalog: dict[str, str],
                                                    params: dict[str, str], expected: list[str]) -> None:
    with server.client("lead") as lead:
        assert _calls(lead, **params) == expected


def test_specialist_search_only_returns_own_extension(server: LiveServer, catalog: dict[str, str]) -> None:
    with server.client("alice") as alice:
        assert _calls(alice) == ["s-1", "s-2", "s-5"]
        assert _calls(alice, extension="2002") == []


def test_metadata_shows_normalised_numbers_and_consent(server: LiveServer, catalog: dict[str, str]) -> None:
    with server.client("lead") as lead:
        item = lead.get(f"/api/v1/recordings/{catalog['s-2']}").json()
    assert item["remote_number"] == "+14165550102"
    assert item["consent_state"] == "agent_notice"
    assert item["direction"] == "outbound"
    assert item["duration_seconds"] == pytest.approx(1.0)


def test_results_page_through_with_a_cursor_without_repeats(server: LiveServer, catalog: dict[str, str]) -> None:
    seen: list[str] = []
    with server.client("lead") as lead:
        cursor = None
        while True:
            params = {"limit": "2", "started_to": _day(31)}
            if cursor:
                params["cursor"] = cursor
            page = lead.get("/api/v1/recordings", params=params).json()
            seen += [item["call_id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
    assert seen == ["s-6", "s-5", "s-4", "s-3", "s-2", "s-1"]  # newest first, each once


@pytest.mark.parametrize("params, location", [
    ({"started_from": "yesterday"}, "started_from"),
    ({"started_from": "2026-10-01T00:00:00"}, "started_from"),
    ({"remote_number": "call me"}, "remote_number"),
    ({"direction": "up"}, "direction"),
    ({"cursor": "garbage!"}, "cursor"),
    ({"limit": "100000"}, "limit"),
])
def test_bad_filters_get_a_clear_error(server: LiveServer, params: dict[str, str], location: str) -> None:
    with server.client("lead") as lead:
        resp = lead.get("/api/v1/recordings", params=params)
    assert resp.status_code == 422
    assert location in [p["location"] for p in resp.json()["problems"]]


def test_quarantined_recording_is_hidden_from_leadership_and_cannot_be_played(server: LiveServer) -> None:
    meta = metadata(call_id="no-consent")
    meta.pop("consent")
    with server.client("admin") as admin:
        rec_id = upload(admin, wav_bytes(1.0, seed=77), meta).json()["id"]
    with server.client("lead") as lead:
        assert "no-consent" not in [i["call_id"] for i in lead.get("/api/v1/recordings?limit=200").json()["items"]]
        play = lead.get(f"/api/v1/recordings/{rec_id}/audio", params={"purpose": "spot_check"})
    assert play.status_code == 404  # hidden from the lead, so it answers as an unknown id (issue 24)
    assert play.json()["message"] == "no such recording"
