"""Issue 28.5: break-the-glass access. A specialist declares an emergency with a reason; for its 30 minutes
they hear a call outside their extension, each access audited with the declaration; an executive reviews it
within 3 days or the overdue review is reported; the caller's accounting of disclosures lists it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from callvault.access import emergency
from callvault.audit.models import AuditEntry
from callvault.core.errors import AccessDenied
from callvault.oversight.models import MisuseReport
from callvault.policy import service as policy_service
from callvault.policy.decide import Action, Actor
from callvault.recordings import service as recordings
from tests.support.regulated import regulated_world
from tests.support.retention import World

CALLER = "+14165550142"


@pytest.fixture()
def fca(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    yield from regulated_world(request, tmp_path)


def _people(world: World) -> tuple[Actor, Actor]:
    with world.runtime.db.unit_of_work() as session:
        sha = policy_service.current_policy(session, clock=world.clock).content_sha256
    bob = Actor("u-bob", "bob", "specialist", extension="2002", team="customer_support", acknowledged_policy_sha256=sha)
    exec_ = Actor("u-exec", "erin", "executive", acknowledged_policy_sha256=sha)
    return bob, exec_


def _play(world: World, actor: Actor, rec: str) -> bool:
    with world.runtime.db.unit_of_work() as session:
        decision, _ = recordings.authorize_content(
            session, policy=policy_service.current_policy(session, clock=world.clock), actor=actor,
            action=Action.PLAY, recording_id=rec, purpose="spot_check", clock=world.clock)
        return decision.allowed


def test_a_declared_emergency_opens_another_extensions_call_for_its_minutes_and_each_access_names_it(
        fca: World) -> None:
    rec = fca.ingest()  # alice's call on extension 2001
    bob, _ = _people(fca)
    assert not _play(fca, bob, rec)
    with fca.runtime.db.unit_of_work() as session:
        declared = emergency.declare(session, policy=policy_service.current_policy(session, clock=fca.clock),
                                     actor=bob, reason="caller threatened self-harm, need the number they gave",
                                     clock=fca.clock)
        declaration = declared.id
    assert _play(fca, bob, rec)
    with fca.runtime.db.unit_of_work() as session:
        entry = session.scalar(select(AuditEntry).where(AuditEntry.action == "recording.play",
                                                        AuditEntry.decision == "allow"))
        assert entry is not None and entry.actor == "bob"
        assert entry.details["emergency_declaration"] == declaration
    fca.at(fca.clock.now() + timedelta(minutes=31))
    assert not _play(fca, bob, rec)


def test_an_executive_reviews_the_declaration_and_an_overdue_review_is_reported(fca: World) -> None:
    rec = fca.ingest()
    bob, erin = _people(fca)
    with fca.runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=fca.clock)
        first = emergency.declare(session, policy=policy, actor=bob, reason="fire alarm call, need the address",
                                  clock=fca.clock).id
        second = emergency.declare(session, policy=policy, actor=bob, reason="second emergency, same caller",
                                   clock=fca.clock).id
    _play(fca, bob, rec)
    with fca.runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=fca.clock)
        with pytest.raises(AccessDenied):
            emergency.open_reviews(session, policy=policy, actor=bob)
        assert {d.id for d in emergency.open_reviews(session, policy=policy, actor=erin)} == {first, second}
        emergency.review(session, policy=policy, actor=erin, declaration_id=first, outcome="justified",
                         notes="address was needed for the ambulance", clock=fca.clock)
    fca.at(fca.clock.now() + timedelta(days=4))
    with fca.runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=fca.clock)
        assert emergency.report_overdue_reviews(session, policy=policy, clock=fca.clock) == 1
        assert emergency.report_overdue_reviews(session, policy=policy, clock=fca.clock) == 0
        report = session.scalar(select(MisuseReport).where(MisuseReport.rule == "emergency_review_overdue"))
        assert report is not None and "bob" in report.summary


def test_the_callers_accounting_of_disclosures_lists_the_emergency_access(fca: World) -> None:
    rec = fca.ingest()
    other = fca.ingest(remote_number="+1 416 555 0199")
    bob, _ = _people(fca)
    with fca.runtime.db.unit_of_work() as session:
        emergency.declare(session, policy=policy_service.current_policy(session, clock=fca.clock), actor=bob,
                          reason="bomb threat on the line, police asked", clock=fca.clock)
    assert _play(fca, bob, rec) and _play(fca, bob, other)
    with fca.runtime.db.unit_of_work() as session:
        listed = emergency.disclosures(session, number=CALLER)
    assert [(d.recording_id, d.actor, d.action) for d in listed] == [(rec, "bob", "recording.play")]
    assert listed[0].emergency_declaration is not None


def test_a_role_the_policy_does_not_name_cannot_declare(fca: World) -> None:
    _, erin = _people(fca)
    with fca.runtime.db.unit_of_work() as session, pytest.raises(AccessDenied, match=r"emergency_access\.roles"):
        emergency.declare(session, policy=policy_service.current_policy(session, clock=fca.clock), actor=erin,
                          reason="just curious about this call", clock=fca.clock)
