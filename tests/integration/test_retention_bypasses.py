"""Ways around retention an outside tester found (December 2026), each reproduced as they did it.

1. An administrator re-linked a recording held with its case's legal hold to a resolved case: the hold no
   longer covered it and the next sweep destroyed it (A9, B9, B11).
2. A ``stop`` filed at the call's start months after the call destroyed a stored recording, even one that was
   evidence (an open case), where ``personal`` is refused (A3, A9, A14, B4).
3. The sweep destroyed a recording a verified caller's request, not yet answered, covered (B7, A4).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from callvault.capture import control
from callvault.capture.models import RecordingControl
from callvault.capture.personal import PersonalRefused
from callvault.core.errors import Conflict
from callvault.core.ids import new_id
from callvault.policy import service as policy_service
from callvault.policy.decide import Actor
from callvault.policy.schema import PolicyDocument
from callvault.quality import review, sampling
from callvault.quality.models import QaReviewItem
from callvault.retention import service as retention
from callvault.retention.sweep import sweep
from callvault.subject_requests.models import RequestStatus, SubjectRequest
from tests.support.retention import T, World, world_for


@pytest.fixture()
def a(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    yield from world_for(request, tmp_path, "a")


def _policy(world: World) -> PolicyDocument:
    with world.runtime.db.unit_of_work() as session:
        return policy_service.current_policy(session, clock=world.clock)


def _sweep(world: World) -> None:
    sweep(db=world.runtime.db, store=world.runtime.store, keyring=world.runtime.keyring, clock=world.clock)


def _open(world: World, ref: str, *, resolve: bool = False) -> None:
    policy = _policy(world)
    with world.runtime.db.unit_of_work() as session:
        retention.open_case(session, policy=policy, actor="exec", actor_role="executive", ref=ref, kind="complaint",
                            clock=world.clock)
        if resolve:
            retention.resolve_case(session, policy=policy, actor="exec", actor_role="executive", ref=ref,
                                   clock=world.clock)


def _link(world: World, rec: str, ref: str) -> None:
    with world.runtime.db.unit_of_work() as session:
        retention.link_recording(session, policy=_policy(world), actor="it", actor_role="it_staff", ref=ref,
                                 recording_id=rec, clock=world.clock)


def test_relinking_a_recording_held_with_its_case_to_a_resolved_case_is_refused_and_it_is_kept(a: World) -> None:
    rec = a.ingest(case_ref="COMPLAINT-1")
    _open(a, "COMPLAINT-1")
    with a.runtime.db.unit_of_work() as session:
        retention.place_hold(session, policy=_policy(a), actor="exec", actor_role="executive", reason="litigation",
                             owner="exec", review_on=date(2026, 4, 1), case_ref="COMPLAINT-1", clock=a.clock)
    a.at(T + timedelta(days=2))
    _open(a, "JUNK", resolve=True)

    with pytest.raises(Conflict, match="legal hold") as refused:
        _link(a, rec, "JUNK")
    assert "retention.legal_hold.roles" in refused.value.message

    a.at(T + timedelta(days=2, minutes=1))
    _sweep(a)
    row = a.row(rec)
    assert row.case_ref == "COMPLAINT-1" and row.on_hold and a.playable(rec)


def test_a_link_may_keep_a_recording_longer_but_never_bring_its_destruction_forward(a: World) -> None:
    rec = a.ingest(case_ref="COMPLAINT-2")
    _open(a, "COMPLAINT-2")
    kept_until = a.row(rec).destroy_after
    a.at(T + timedelta(days=2))
    _open(a, "JUNK", resolve=True)  # policy A: a resolved case's recordings go at once (grace 0 days)

    with pytest.raises(Conflict, match="earlier") as refused:
        _link(a, rec, "JUNK")
    assert "COMPLAINT-2" in refused.value.message
    assert a.row(rec).case_ref == "COMPLAINT-2" and a.row(rec).destroy_after == kept_until

    loose = a.ingest()  # no case: linking it to an open case changes nothing it had
    _open(a, "COMPLAINT-3")
    _link(a, loose, "COMPLAINT-3")
    assert a.row(loose).case_ref == "COMPLAINT-3"


def _stop_at_start(world: World, rec: str) -> str:
    return world.stop(rec, world.row(rec).started_at)


def test_a_stop_cannot_destroy_a_recording_that_is_evidence_even_within_the_window(a: World) -> None:
    rec = a.ingest(case_ref="COMPLAINT-9")
    _open(a, "COMPLAINT-9")
    a.at(T + timedelta(minutes=5))  # within the 15 minutes an agent's control may still reach it

    with pytest.raises(PersonalRefused, match="case COMPLAINT-9"):
        _stop_at_start(a, rec)
    assert a.playable(rec)


def test_a_stop_filed_long_after_the_call_is_refused_even_when_nothing_else_keeps_the_recording(a: World) -> None:
    rec = a.ingest()
    a.at(T + timedelta(days=90))

    with pytest.raises(PersonalRefused, match="minutes"):
        _stop_at_start(a, rec)
    assert a.playable(rec)

    soon = a.ingest(started=T + timedelta(days=90))  # the agent's stop relayed a minute after the call: applied
    assert "destroyed" in _stop_at_start(a, soon)


def test_a_stop_a_hold_deferred_is_not_applied_once_released_while_the_recording_is_still_evidence(a: World) -> None:
    rec = a.ingest(case_ref="COMPLAINT-11")
    with a.runtime.db.unit_of_work() as session:
        hold = retention.place_hold(session, policy=_policy(a), actor="exec", actor_role="executive",
                                    reason="regulator", owner="exec", review_on=date(2026, 4, 1), recording_id=rec,
                                    clock=a.clock)
    assert _stop_at_start(a, rec) == control.HELD_OUTCOME
    _open(a, "COMPLAINT-11")
    a.at(T + timedelta(days=3))
    with a.runtime.db.unit_of_work() as session:
        retention.release_hold(session, policy=_policy(a), actor="exec", actor_role="executive", hold_id=hold.id,
                               reason="closed", clock=a.clock)

    control.apply_deferred(db=a.runtime.db, store=a.runtime.store, keyring=a.runtime.keyring, clock=a.clock)

    assert a.playable(rec)
    with a.runtime.db.unit_of_work() as session:
        [stop] = session.scalars(select(RecordingControl).where(RecordingControl.recording_id == rec))
        assert stop.applied_at is not None and stop.outcome.startswith("not applied")
        assert "case COMPLAINT-11" in stop.outcome


def test_the_sweep_keeps_what_a_verified_callers_request_covers_until_it_is_answered(a: World) -> None:
    asked = a.ingest()  # the caller +1 416 555 0142 (IN_SCOPE["a"])
    other = a.ingest(remote_number="+1 416 555 0199")
    a.at(T.replace(month=7, day=10))
    request_id = new_id()
    with a.runtime.db.unit_of_work() as session:  # verified a few days before the calls' 6-month date
        session.add(SubjectRequest(
            id=request_id, kind="caller", status=RequestStatus.TO_REVIEW, phone_numbers=["+14165550142"],
            email="caller@example.org", region="CA-ON", timezone="America/Toronto", received_at=a.clock.now(),
            verified_at=a.clock.now(), due_on=date(2026, 7, 21), due_at=a.clock.now() + timedelta(days=11)))
    a.at(T.replace(month=7, day=20))

    result = sweep(db=a.runtime.db, store=a.runtime.store, keyring=a.runtime.keyring, clock=a.clock)

    assert a.intact_or_fully_destroyed(other) == "destroyed"
    assert a.intact_or_fully_destroyed(asked) == "intact", "destroyed while the caller's request was in hand"
    assert result.kept_for_requests == 1
    with a.runtime.db.unit_of_work() as session:
        row = session.get(SubjectRequest, request_id)
        assert row is not None
        row.status = RequestStatus.SENT  # answered: the recording goes at the next sweep
    _sweep(a)
    assert a.intact_or_fully_destroyed(asked) == "destroyed"


@pytest.fixture()
def b(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    yield from world_for(request, tmp_path, "b")


def test_a_reviewers_comments_and_coaching_note_go_with_the_recording_they_quote(b: World) -> None:
    """Outside tester: comments pinned to moments of a call ("at 1:20 the caller gives their account number…")
    and the coaching note were still served after the recording was destroyed (B11: content destroyed)."""
    rec = b.ingest()
    policy = _policy(b)
    assert policy.quality_review is not None
    with b.runtime.db.unit_of_work() as session:
        sample = sampling.run_sample(session, policy=policy, trigger="manual", actor="admin", clock=b.clock,
                                     period=sampling.period_containing(T, policy.quality_review.sampling))
        [item] = session.scalars(select(QaReviewItem).where(QaReviewItem.sample_id == sample.id))
        lead = Actor(user_id="", username="lead", role="support_lead",
                     acknowledged_policy_sha256=policy.content_sha256)
        review.add_comment(session, policy=policy, actor=lead, item=item, at_seconds=1.0, duration=2.0,
                           text="the caller reads out their account number 77231904 here", clock=b.clock)
        card = policy.quality_review.scorecard
        review.submit(session, policy=policy, actor=lead, item=item, clock=b.clock,
                      answers={q.id: "yes" for s in card.sections for q in s.questions},
                      coaching_note="confirm the account number 77231904 before the refund")
        item_id = item.id
    b.at(T.replace(year=2027, month=1, day=20))  # past policy B's 12 months

    _sweep(b)

    assert b.intact_or_fully_destroyed(rec) == "destroyed"
    with b.runtime.db.unit_of_work() as session:
        assert review.comments(session, item_id) == []
        [kept] = review.reviews_of_item(session, item_id)
        assert "77231904" not in kept.coaching_note and kept.score is not None  # the score stays, the words go
