"""Legal holds follow the policy (issue 23 point 7): only the roles it names place, renew or release them,
the review date is required and bounded, and an unreviewed hold is reported and then lapses instead of
keeping a recording forever."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from callvault.audit.models import AuditEntry
from callvault.core.errors import AccessDenied, InvalidInput
from callvault.oversight.models import MisuseReport
from callvault.oversight.reports import build_report, to_csv
from callvault.policy import service as policy_service
from callvault.retention import service as retention
from callvault.retention.models import LegalHold
from callvault.retention.sweep import sweep
from tests.support.retention import T, World, world_for


@pytest.fixture()
def a(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    yield from world_for(request, tmp_path, "a")


@pytest.fixture()
def b(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    yield from world_for(request, tmp_path, "b")


def _place(world: World, rec: str, *, role: str, review_on: date, actor: str = "someone") -> LegalHold:
    with world.runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=world.clock)
        return retention.place_hold(session, policy=policy, actor=actor, actor_role=role, reason="litigation",
                                    owner=actor, review_on=review_on, recording_id=rec, clock=world.clock)


def _actions(world: World, object_id: str) -> list[str]:
    with world.runtime.db.unit_of_work() as session:
        return list(session.scalars(select(AuditEntry.action).where(AuditEntry.object_id == object_id)
                                    .order_by(AuditEntry.seq)))


def test_a_qa_reviewer_who_reaches_every_call_cannot_hold_one_only_the_head_of_customer_success_can(
        b: World) -> None:
    rec = b.ingest()
    with pytest.raises(AccessDenied, match="may not place legal holds") as refused:
        _place(b, rec, role="qa_reviewer", review_on=date(2026, 3, 1), actor="qa")
    assert "head_of_customer_success" in refused.value.reason
    hold = _place(b, rec, role="head_of_customer_success", review_on=date(2026, 3, 1), actor="head")
    assert b.row(rec).on_hold
    with pytest.raises(AccessDenied, match="may not release legal holds"), b.runtime.db.unit_of_work() as session:
        retention.release_hold(session, policy=policy_service.current_policy(session, clock=b.clock), actor="lead",
                               actor_role="support_lead", hold_id=hold.id, reason="done", clock=b.clock)
    assert b.row(rec).on_hold


def test_a_hold_to_2035_is_refused_naming_the_review_date_and_the_bound(a: World) -> None:
    rec = a.ingest()
    with pytest.raises(InvalidInput) as refused:
        _place(a, rec, role="executive", review_on=date(2035, 1, 1))
    problem = refused.value.problems[0]
    assert problem.location == "review_date" and "max_review_months" in problem.message
    assert "2026-04-15" in problem.message  # T (2026-01-15) + 3 months, policy A's bound
    assert not a.row(rec).on_hold


def test_an_unreviewed_hold_is_reported_then_lapses_and_the_recording_goes(a: World) -> None:
    rec = a.ingest()
    hold = _place(a, rec, role="executive", review_on=date(2026, 4, 1), actor="exec")
    a.at(datetime(2026, 4, 3, 9, 0, tzinfo=UTC))
    result = sweep(db=a.runtime.db, store=a.runtime.store, keyring=a.runtime.keyring, clock=a.clock)
    assert (result.holds_overdue, result.holds_lapsed) == (1, 0)
    with a.runtime.db.unit_of_work() as session:
        reports = list(session.scalars(select(MisuseReport.summary).where(
            MisuseReport.rule == "legal_hold_review_overdue")))
        compliance = build_report(session, start=T, end=a.clock.now(), today=a.clock.now().date())
    assert len(reports) == 1 and "past its review date" in reports[0]
    assert [h.review_overdue for h in compliance.holds] == [True]
    assert "OVERDUE" in to_csv(compliance)
    # A second sweep does not report it again; the hold still protects within the lapse period.
    assert sweep(db=a.runtime.db, store=a.runtime.store, keyring=a.runtime.keyring, clock=a.clock).holds_overdue == 0
    a.at(T.replace(month=7, day=20))  # past the 6-month cap and 110 days past the review date
    result = sweep(db=a.runtime.db, store=a.runtime.store, keyring=a.runtime.keyring, clock=a.clock)
    assert result.holds_lapsed == 1 and result.destroyed == 1
    assert a.intact_or_fully_destroyed(rec) == "destroyed"
    with a.runtime.db.unit_of_work() as session:
        row = session.get(LegalHold, hold.id)
        assert row is not None and row.released_by == "system" and "lapsed" in (row.release_reason or "")
    assert _actions(a, hold.id) == ["retention.hold_placed", "retention.hold_review_overdue",
                                    "retention.hold_lapsed"]


def test_a_renewed_hold_keeps_its_recording_and_the_renewal_is_audited(a: World) -> None:
    rec = a.ingest()
    hold = _place(a, rec, role="support_lead", review_on=date(2026, 4, 1), actor="lead")
    a.at(datetime(2026, 3, 30, 9, 0, tzinfo=UTC))
    with a.runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=a.clock)
        with pytest.raises(InvalidInput, match="renewal"):
            retention.renew_hold(session, policy=policy, actor="lead", actor_role="support_lead", hold_id=hold.id,
                                 review_on=date(2027, 1, 1), reason="still open", clock=a.clock)
        retention.renew_hold(session, policy=policy, actor="lead", actor_role="support_lead", hold_id=hold.id,
                             review_on=date(2026, 6, 29), reason="claim still open", clock=a.clock)
    a.at(T.replace(month=7, day=20))
    result = sweep(db=a.runtime.db, store=a.runtime.store, keyring=a.runtime.keyring, clock=a.clock)
    assert result.destroyed == 0 and result.holds_lapsed == 0 and a.playable(rec)
    assert "retention.hold_renewed" in _actions(a, hold.id)
    a.at(a.clock.now() + timedelta(days=40))
    assert sweep(db=a.runtime.db, store=a.runtime.store, keyring=a.runtime.keyring, clock=a.clock).destroyed == 1
