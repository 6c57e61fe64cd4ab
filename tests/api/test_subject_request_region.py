"""B7: a caller's request counts working days in the region of the number they rang (issue 23 point 11)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.audio import CALL_START, metadata, upload, wav_bytes
from tests.support.env import LiveServer

UK_NUMBER = "+442036953777"


def _request_for(server: LiveServer, caller: str, email: str) -> dict[str, Any]:
    with server.client() as public:
        # No phone provider here, so the caller states facts about a call (issue 24 point 2).
        resp = public.post("/api/v1/subject-requests", json={"phone_numbers": [caller], "email": email,
                                                              "call_date": CALL_START.date().isoformat(),
                                                              "call_reason": "an order"})
        assert resp.status_code == 202, resp.text
    with server.client("lead") as lead:
        shown = lead.get(f"/api/v1/subject-requests/{resp.json()['id']}")
        assert shown.status_code == 200, shown.text
        found: dict[str, Any] = shown.json()
    return found


@pytest.mark.parametrize("caller", ["+12125550147", "+61291234567"])
def test_a_caller_who_rang_the_uk_number_gets_the_uk_calendar_whatever_their_country(
        server_b: LiveServer, caller: str) -> None:
    with server_b.client("admin") as admin:
        meta = metadata(agent="sam", extension="3001", team="sales", remote_number=caller, local_number=UK_NUMBER)
        assert upload(admin, wav_bytes(0.5, seed=int(caller[-3:])), meta).status_code == 201
    shown = _request_for(server_b, caller, f"{caller[1:]}@example.com")
    assert shown["region"] == "UK-EU-NA" and shown["timezone"] == "Europe/London"
    assert UK_NUMBER in shown["region_basis"]


def test_with_no_call_a_us_caller_is_served_by_the_number_for_their_country(server_b: LiveServer) -> None:
    shown = _request_for(server_b, "+13125550199", "nocall@example.com")
    assert shown["region"] == "UK-EU-NA"
    assert "no recorded call" in shown["region_basis"] and "US" in shown["region_basis"]
