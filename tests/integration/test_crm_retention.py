"""A CRM's case events drive A9: recordings kept for an issue enter the grace period when the ticket
is resolved, go back to the cap when it is reopened before destruction, and late or repeated events
change nothing. The CRM may do none of this unless the policy says so."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from callvault.audit.models import AuditEntry
from callvault.integrations.crm import service as crm
from callvault.integrations.crm.generic import GenericConnector
from callvault.policy import service as policy_service
from callvault.policy.schema import IntegrationRules
from callvault.retention.sweep import sweep
from tests.conftest import POLICY_A, fresh_database
from tests.support.crm import generic_event
from tests.support.retention import T, World, make_world

GRACE_DAYS = 14
CAP = T.replace(month=7)  # policy A: six months after the call


@pytest.fixture()
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    doc = yaml.safe_load(POLICY_A.read_text(encoding="utf-8"))
    doc["retention"]["post_resolution_grace_days"] = GRACE_DAYS
    doc["integrations"] = {"crm": {"resolve_cases": True}}
    policy = tmp_path / "policy-a-crm.yaml"
    policy.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    (tmp_path / "db").mkdir()
    with fresh_database(request.config.getoption("--db"), tmp_path / "db") as url:
        w = make_world(tmp_path / "data", url, policy, "a")
        yield w
        w.close()


def send(world: World, event_id: str, kind: str, ref: str, at: Any, **policy_override: Any) -> crm.Outcome:
    """Parse a generic-format event (as the endpoint does) and apply it under the policy in force."""
    [event] = GenericConnector().parse(generic_event(event_id, kind, ref, at.isoformat()))
    with world.runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=world.clock)
        if policy_override:
            policy = policy.model_copy(update=policy_override)
        [out] = crm.apply_events(session, policy=policy, connector="generic", events=[event], clock=world.clock)
    return out


def dates(world: World, *rec_ids: str) -> list[tuple[Any, str | None]]:
    return [(world.row(r).destroy_after, world.row(r).retention_rule) for r in rec_ids]


def test_resolution_starts_the_grace_period_and_a_reopen_before_destruction_restores_the_cap(world: World) -> None:
    ref = "ZD-4711"
    recs = [world.ingest(case_ref=ref, seed=i) for i in range(2)]
    other = world.ingest(case_ref="ZD-other")
    assert dates(world, *recs) == [(CAP, "max_age")] * 2

    resolved_at = T + timedelta(days=10)
    world.at(resolved_at + timedelta(minutes=3))
    out = send(world, "e1", "case.resolved", ref, resolved_at)
    assert out.outcome == "applied" and "2 recording(s)" in out.detail
    assert dates(world, *recs) == [(resolved_at + timedelta(days=GRACE_DAYS), "case_resolved")] * 2
    assert dates(world, other) == [(CAP, "max_age")]

    # The same event again (the CRM retried): nothing moves.
    assert send(world, "e1", "case.resolved", ref, resolved_at).outcome == "duplicate"
    # The ticket is reopened two days later, before anything was destroyed: back to the cap.
    out = send(world, "e2", "case.reopened", ref, T + timedelta(days=12))
    assert out.outcome == "applied" and dates(world, *recs) == [(CAP, "max_age")] * 2
    # A resolve sent at day 11 that arrives now is older than the reopen: ignored.
    late = send(world, "e3", "case.resolved", ref, T + timedelta(days=11))
    assert late.outcome == "stale" and dates(world, *recs) == [(CAP, "max_age")] * 2
    # Resolved again at day 13: destroyed after the grace period, by the sweep.
    again = T + timedelta(days=13)
    assert send(world, "e4", "case.resolved", ref, again).outcome == "applied"
    world.at(again + timedelta(days=GRACE_DAYS, seconds=1))
    sweep(db=world.runtime.db, store=world.runtime.store, keyring=world.runtime.keyring, clock=world.clock)
    assert [world.intact_or_fully_destroyed(r) for r in recs] == ["destroyed", "destroyed"]
    assert world.intact_or_fully_destroyed(other) == "intact"
    assert world.record(recs[0]) is not None and world.record(recs[0]).rule == "case_resolved"  # type: ignore[union-attr]
    # Reopening now cannot bring destroyed recordings back; it says so.
    reopened = send(world, "e5", "case.reopened", ref, world.clock.now())
    assert reopened.outcome == "applied" and "0 recording(s)" in reopened.detail

    with world.runtime.db.unit_of_work() as session:
        trail = [(e.action, e.details.get("outcome")) for e in session.scalars(
            select(AuditEntry).where(AuditEntry.object_id == f"generic:{ref}").order_by(AuditEntry.seq))]
    assert trail == [("crm.ticket_resolved", "applied"), ("crm.ticket_resolved", "duplicate"),
                     ("crm.ticket_reopened", "applied"), ("crm.ticket_resolved", "stale"),
                     ("crm.ticket_resolved", "applied"), ("crm.ticket_reopened", "applied")]


def test_the_crm_may_not_resolve_cases_unless_the_policy_lets_it(world: World) -> None:
    rec = world.ingest(case_ref="ZD-9")
    out = send(world, "d1", "case.resolved", "ZD-9", T + timedelta(days=1), integrations=IntegrationRules())
    assert out.outcome == "refused" and "integrations.crm.resolve_cases" in out.detail
    assert dates(world, rec) == [(CAP, "max_age")]
    # A ticket no recording is kept for changes nothing, and says why.
    none = send(world, "d2", "case.resolved", "ZD-nothing", T + timedelta(days=1))
    assert none.outcome == "noop" and "no recording is kept for this ticket" in none.detail


def test_administrators_link_crm_users_and_read_what_each_event_did_from_the_cli(world: World) -> None:
    code, output = world.cli("crm", "link-user", "zendesk", "1508849302", "admin")
    assert code == 0, output
    code, output = world.cli("crm", "link-user", "zendesk", "77", "nobody-here")
    assert code == 5 and "nobody-here" in output
    code, output = world.cli("crm", "link-user", "hubspot", "77", "admin")
    assert code == 5 and "generic, zendesk" in output
    code, output = world.cli("crm", "users", "--json")
    assert code == 0 and '"external_id": "1508849302"' in output and '"username": "admin"' in output
    send(world, "c1", "case.resolved", "ZD-none", T + timedelta(days=1))
    code, output = world.cli("crm", "events", "--json")
    assert code == 0 and '"outcome": "noop"' in output and '"ticket_ref": "ZD-none"' in output
    code, output = world.cli("crm", "unlink-user", "zendesk", "1508849302")
    assert code == 0, output
    code, output = world.cli("crm", "unlink-user", "zendesk", "1508849302")
    assert code == 5 and "is not linked" in output
