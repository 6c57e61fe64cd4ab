"""A person's own time zone over the API, as on the account page: ``GET /api/v1/me`` shows it (null: the
policy's zone), ``PUT /api/v1/me/timezone`` sets it for every browser and node, audited; a name that is not
an IANA zone is refused naming the field and nothing changes."""

from __future__ import annotations

from sqlalchemy import select

from callvault.audit.models import AuditEntry
from tests.support.env import CallvaultEnv, LiveServer


def test_a_person_sets_and_clears_their_own_time_zone_and_the_page_agrees(
        server: LiveServer, env: CallvaultEnv) -> None:
    with server.client("alice") as alice:
        assert alice.get("/api/v1/me").json()["timezone"] is None
        set_ = alice.put("/api/v1/me/timezone", json={"timezone": "Australia/Sydney"})
        assert set_.status_code == 200, set_.text
        assert set_.json()["timezone"] == "Australia/Sydney"
        assert alice.get("/api/v1/me").json()["timezone"] == "Australia/Sydney"
        assert "Australia/Sydney" in alice.get("/account").text
        cleared = alice.put("/api/v1/me/timezone", json={"timezone": ""})
        assert cleared.status_code == 200 and cleared.json()["timezone"] is None
    with server.client("lead") as lead:
        assert lead.get("/api/v1/me").json()["timezone"] is None  # one person's choice is theirs alone
    with env.runtime.db.unit_of_work() as session:
        changes = [e.details["to"] for e in session.scalars(select(AuditEntry).where(
            AuditEntry.action == "account.timezone_changed", AuditEntry.actor == "alice").order_by(AuditEntry.seq))]
    assert changes == ["Australia/Sydney", None]


def test_a_name_that_is_not_a_time_zone_is_refused_naming_the_field(server: LiveServer) -> None:
    with server.client("alice") as alice:
        alice.put("/api/v1/me/timezone", json={"timezone": "Europe/London"})
        resp = alice.put("/api/v1/me/timezone", json={"timezone": "Mars/Olympus_Mons"})
        assert resp.status_code == 422
        assert [p["location"] for p in resp.json()["problems"]] == ["timezone"]
        assert "America/Toronto" in resp.json()["problems"][0]["message"]
        assert alice.get("/api/v1/me").json()["timezone"] == "Europe/London"
