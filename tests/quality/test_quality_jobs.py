"""The worker's quality jobs and the CLI, with a fixed clock: one scheduled sample per period (even with
two worker nodes), on-demand samples an auditor can re-derive, and training clips' retention and consent
sweep (crypto-shredded: key gone, blob gone)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from callvault.access import consents
from callvault.core.errors import Conflict
from callvault.identity import service as identity
from callvault.jobs.registry import all_jobs
from callvault.policy import service as policy_service
from callvault.policy.decide import Actor
from callvault.quality import sampling, training
from callvault.quality.models import QaReviewItem, QaSample, TrainingClip
from callvault.recordings.models import Recording
from tests.support.retention import PASSWORD, T, World, world_for


@pytest.fixture()
def a(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    yield from world_for(request, tmp_path, "a")


@pytest.fixture()
def b(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    yield from world_for(request, tmp_path, "b")


def test_policy_b_samples_five_percent_of_each_agents_calls_per_month_at_least_one(b: World) -> None:
    for i in range(3):
        b.ingest(started=T + timedelta(hours=i))
    code, out = b.cli("quality", "sample", "--from", "2026-01-01", "--to", "2026-01-31")
    assert code == 0 and "1 of 3 calls queued" in out, out


def test_the_worker_draws_the_last_week_once_however_often_it_runs(a: World) -> None:
    calls = [a.ingest(started=T + timedelta(hours=i)) for i in range(3)]  # Thursday 15 January 2026
    job = all_jobs()["quality.sample"]
    a.at(T + timedelta(days=2))  # Saturday: the week of the calls has not ended; the week before is empty
    assert job.run(a.runtime) == 0 and a.count(QaSample) == 1
    a.at(T + timedelta(days=7))  # the next Thursday: the calls' week is drawn, once
    assert job.run(a.runtime) == 2
    assert job.run(a.runtime) == 0
    assert a.count(QaSample) == 2 and a.count(QaReviewItem) == 2
    with a.runtime.db.unit_of_work() as session:
        week = session.query(QaSample).filter(QaSample.trigger == "schedule").order_by(QaSample.period_start).all()[-1]
        assert week.period_start.date().isoformat() == "2026-01-12" and len(week.selected) == 2
        assert set(week.selected) <= set(calls)
        policy = policy_service.current_policy(session, clock=a.clock)
        period = sampling.Period(week.period_start, week.period_end)
    # Drawing that week again is refused, naming the sample that has it: a period is sampled once.
    with pytest.raises(sampling.PeriodAlreadySampled, match=week.id), a.runtime.db.unit_of_work() as session:
        sampling.run_sample(session, policy=policy, period=period, trigger="schedule", actor="worker", clock=a.clock)


def test_two_draws_racing_for_one_period_store_one_sample_and_the_loser_hears_which(
    a: World, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two worker nodes (or a node and a reviewer's click) both look before either has stored its sample: the
    unique period key keeps the second out, and a person's draw is told which sample won (409), not a 500."""
    for i in range(3):
        a.ingest(started=T + timedelta(hours=i))
    a.at(T + timedelta(days=7))
    assert all_jobs()["quality.sample"].run(a.runtime) == 2
    with a.runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=a.clock)
        won = session.query(QaSample).order_by(QaSample.period_start.desc()).first()
        assert won is not None
        period = sampling.Period(won.period_start, won.period_end)
    real = sampling.earlier_sample
    monkeypatch.setattr(sampling, "earlier_sample", lambda *args: None)  # the other node's sample not yet seen
    with pytest.raises(IntegrityError), a.runtime.db.unit_of_work() as session:  # what the worker job swallows
        sampling.run_sample(session, policy=policy, period=period, trigger="schedule", actor="worker", clock=a.clock)
    too_early = [None]  # a reviewer's click looked too early, lost on the key, then looks again

    def racing(session: Session, policy_id: str, period: sampling.Period) -> QaSample | None:
        return too_early.pop() if too_early else real(session, policy_id, period)

    monkeypatch.setattr(sampling, "earlier_sample", racing)
    with pytest.raises(sampling.PeriodAlreadySampled, match=won.id):
        sampling.draw_on_demand(a.runtime.db, policy=policy, first=None, last=None, actor="lead", clock=a.clock)
    assert not too_early
    assert a.count(QaSample) == 1 and a.count(QaReviewItem) == 2


def test_the_worker_leaves_a_period_a_reviewer_already_drew(a: World) -> None:
    for i in range(3):
        a.ingest(started=T + timedelta(hours=i))
    a.at(T + timedelta(days=7))
    with a.runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=a.clock)
    drawn = sampling.draw_on_demand(a.runtime.db, policy=policy, first=None, last=None, actor="lead", clock=a.clock)
    assert len(drawn.selected) == 2
    assert all_jobs()["quality.sample"].run(a.runtime) == 0
    assert a.count(QaSample) == 1 and a.count(QaReviewItem) == 2


def test_cli_sample_and_verify_and_a_tampered_sample_is_caught(a: World) -> None:
    for i in range(5):
        a.ingest(started=T + timedelta(hours=i))
    code, out = a.cli("quality", "sample", "--from", "2026-01-15", "--to", "2026-01-15")  # one day of a week
    assert code != 0 and "one whole week" in out and "2026-01-12 to 2026-01-18" in out, out
    assert a.count(QaSample) == 0
    # An administrator fills a week nobody sampled (here: long before the last one), as a whole week.
    code, out = a.cli("quality", "sample", "--from", "2026-01-12", "--to", "2026-01-18")
    assert code == 0 and "2 of 5 calls queued" in out, out
    sample_id = out.split()[1].rstrip(":")
    code, out = a.cli("quality", "verify", sample_id)
    assert code == 0 and "they match" in out
    with a.runtime.db.unit_of_work() as session:
        row = session.get(QaSample, sample_id)
        assert row is not None
        other = next(p[0] for p in row.population if p[0] not in row.selected)
        session.execute(update(QaSample).where(QaSample.id == sample_id).values(selected=[other, row.selected[0]]))
    code, out = a.cli("quality", "verify", sample_id)
    assert code == 1 and "does NOT" in out and "seed and population" in out
    assert a.count(QaReviewItem) == 2
    code, out = a.cli("quality", "sample", "--from", "2026-01-12", "--to", "2026-01-18")  # once per period
    assert code != 0 and f"already sampled: sample {sample_id}" in " ".join(out.split()), out
    assert a.count(QaSample) == 1 and a.count(QaReviewItem) == 2
    code, out = a.cli("quality", "sample", "--from", "2026-01-20", "--to", "2026-01-10")
    assert code != 0 and "before the first" in out


def _clip(a: World, rec: str | None = None) -> str:
    rec = rec or a.ingest()
    wav, spans, duration, rate = training.anonymise(a.audio(rec), None)
    with a.runtime.db.unit_of_work() as session:
        row = session.get(Recording, rec)
        assert row is not None
        policy = policy_service.current_policy(session, clock=a.clock)
        clip = training.store_clip(session, store=a.runtime.store, keyring=a.runtime.keyring, policy=policy,
                                   recording=row, wav=wav, masked_spans=spans, duration=duration, rate=rate,
                                   transcript_used=False, title="t", clock=a.clock,
                                   actor=Actor(user_id="u", username="lead", role="support_lead"))
        return clip.id


def _give_consent(a: World) -> None:
    with a.runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=a.clock)
        user = identity.create_user(session, actor="test", policy=policy, username="alice", role="specialist",
                                    password=PASSWORD, extension="2001", team="customer_support")
        consents.give(session, user=user, purpose="training", policy=policy, actor="alice", clock=a.clock)


def test_a_clip_is_destroyed_when_its_own_retention_ends(a: World) -> None:
    _give_consent(a)
    clip_id = _clip(a)
    with a.runtime.db.unit_of_work() as session:
        clip = session.get(TrainingClip, clip_id)
        assert clip is not None
        blob, due = clip.blob_key, clip.destroy_after
    assert due.date().isoformat() == "2026-07-15"  # policy A: six months
    job = all_jobs()["quality.clips"]
    a.at(due - timedelta(minutes=1))
    assert job.run(a.runtime) == 0 and a.runtime.store.exists(blob)
    a.at(due)
    assert job.run(a.runtime) == 1
    with a.runtime.db.unit_of_work() as session:
        clip = session.get(TrainingClip, clip_id)
        assert clip is not None and clip.state == "destroyed" and clip.destroyed_reason == "retention"
        assert clip.wrapped_key is None
    assert not a.runtime.store.exists(blob)


def test_a_clip_keeps_its_calls_clock_and_goes_when_the_call_would_have(a: World) -> None:
    """A3 (issue 23): a clip made five months after its call goes one month later, with the call, not
    six months after it was made."""
    _give_consent(a)
    rec = a.ingest()
    a.at(T.replace(month=6))
    clip_id = _clip(a, rec)
    with a.runtime.db.unit_of_work() as session:
        clip = session.get(TrainingClip, clip_id)
        assert clip is not None
        blob, due = clip.blob_key, clip.destroy_after
    assert due == a.row(rec).destroy_after == T.replace(month=7)  # the call's six months, not 2026-12-15
    job = all_jobs()["quality.clips"]
    a.at(due - timedelta(minutes=1))
    assert job.run(a.runtime) == 0 and a.runtime.store.exists(blob)
    a.at(due)
    assert job.run(a.runtime) == 1 and not a.runtime.store.exists(blob)


def test_no_clip_is_made_from_a_call_past_its_retention_that_only_a_legal_hold_keeps(a: World) -> None:
    _give_consent(a)
    rec = a.ingest()
    with a.runtime.db.unit_of_work() as session:
        session.execute(update(Recording).where(Recording.id == rec).values(on_hold=True))  # as a hold leaves it
    a.at(T.replace(month=8))
    with pytest.raises(Conflict, match="retention ended"):
        _clip(a, rec)
    assert a.count(TrainingClip) == 0


def test_a_clip_without_the_employees_consent_is_swept(a: World) -> None:
    clip_id = _clip(a)  # nobody consented (e.g. withdrawn through a path that did not destroy it at once)
    with a.runtime.db.unit_of_work() as session:  # until the sweep runs, the policy engine refuses it anyway
        policy = policy_service.current_policy(session, clock=a.clock)
        lead = Actor(user_id="u", username="lead", role="support_lead",
                     acknowledged_policy_sha256=policy.content_sha256)
        decision, _ = training.authorize_clip(session, policy=policy, actor=lead, clip_id=clip_id, clock=a.clock)
    assert not decision.allowed and "consent" in decision.reason and "A6" in decision.clauses
    assert all_jobs()["quality.clips"].run(a.runtime) == 1
    with a.runtime.db.unit_of_work() as session:
        clip = session.get(TrainingClip, clip_id)
        assert clip is not None and clip.destroyed_reason == "consent_withdrawn"
