"""Random selection of calls for quality review (B8): reproducible by an auditor, unknowable in advance.

How a sample is drawn, so anyone can re-derive it from the stored ``seed`` and ``population``:

1. The population is every call that started in the period and may be reviewed: available (not
   destroyed, which includes calls marked personal), not quarantined, not under a legal hold, with an
   agent on file. What was left out is counted by reason.
2. Per agent, the sample size is ``calls_per_agent`` or ``ceil(percent% of the agent's calls)``,
   never more than the agent has.
3. The agent's calls are ordered by the stratification keys (team, direction) and, inside a stratum, by
   ``HMAC-SHA256(seed, recording_id)``; then a systematic sample is taken with a random start
   ``u = HMAC-SHA256(seed, "start|" + agent) / 2^256 * step``, ``step = calls / n``: the calls at
   positions ``floor(u + k * step)``, k = 0..n-1.

Every call of an agent therefore has the same chance ``n / calls`` of being chosen (uniform), and each
stratum gets its proportional share of the sample (within one call), which is what stratification is
for. The seed is 128 bits from ``secrets`` drawn when the sample is run, after the period has ended, so
nobody (an agent included) can know which calls will be chosen. Nothing here uses Python's ``random``: the
HMAC construction can be re-implemented in any language by an auditor.

Why a sample cannot be steered onto a chosen call (a reviewer may listen to a drawn call without the access
request and approval every other call needs, B6/B9, so a draw the reviewer can shape is a way round them):

- a period is **sampled once** per policy: a draw over a period overlapping an earlier sample's is refused
  (``PeriodAlreadySampled``, 409, naming that sample); there is no redraw. Drawing again until the wanted
  call comes up would otherwise work sooner or later, whatever the seed;
- a period is **one whole calendar unit** of the policy's rule (``sampling.period``: day, week, month or
  quarter, in ``sampling.timezone``), **already ended**: no window of a few days around one call, where an
  agent with one call is drawn for certain, and no draw while calls of the period can still come in;
- on demand, a reviewer draws only the **last complete period** (what the worker draws anyway): an older
  period that was never sampled (before quality review was set up, imported history) would let them pick
  one in which the wanted call is its agent's only call. An administrator fills such a gap from the command
  line (``callvault quality sample --from --to``), on the record like every draw;
- the seed comes from ``secrets`` inside the draw; nothing the requester sends reaches it.

Every refused draw is written to the audit log (``quality.sample``, decision ``deny``, with the reason).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import secrets
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from itertools import groupby
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.orm import Session

from callvault.audit import service as audit
from callvault.core.clock import Clock, system_clock
from callvault.core.db import Database
from callvault.core.errors import Conflict, FieldProblem, InvalidInput, NotFound
from callvault.core.ids import new_id
from callvault.core.instants import day_problem
from callvault.policy.schema import PolicyDocument, QualityReviewRules, SamplingRule, add_months
from callvault.quality.models import QaReviewItem, QaSample, ReviewItemState
from callvault.recordings.models import Recording, RecordingState

PopulationEntry = tuple[str, str, str, str]
"""``(recording_id, agent, team, direction)``; team is ``""`` when none is on file."""

MAX_PERIOD_DAYS = 92


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime
    """Exclusive."""


def rules_of(policy: PolicyDocument) -> QualityReviewRules:
    """The policy's quality review rules, or a clear error when the policy has none."""
    if policy.quality_review is None:
        raise InvalidInput(f"policy {policy.policy_id} version {policy.version} has no quality_review section, "
                           "so calls are not sampled for review; add one to the policy file")
    return policy.quality_review


def _unit_days(local: date, rule: SamplingRule) -> tuple[date, date]:
    """The first day of the rule's period holding the local day ``local``, and the first day after it."""
    if rule.period == "day":
        return local, local + timedelta(days=1)
    if rule.period == "week":
        first = local - timedelta(days=local.weekday())
        return first, first + timedelta(days=7)
    if rule.period == "quarter":
        first = local.replace(month=(local.month - 1) // 3 * 3 + 1, day=1)
        return first, add_months(first, 3)
    first = local.replace(day=1)
    return first, (first + timedelta(days=32)).replace(day=1)


def period_containing(moment: datetime, rule: SamplingRule) -> Period:
    """The day, week (Monday first), month or calendar quarter holding ``moment``, in the rule's time zone."""
    zone = ZoneInfo(rule.timezone)
    first, after = _unit_days(moment.astimezone(zone).date(), rule)
    return Period(_midnight(first, zone), _midnight(after, zone))


def previous_period(now: datetime, rule: SamplingRule) -> Period:
    """The last period that has fully ended at ``now`` (what the schedule samples)."""
    current = period_containing(now, rule)
    return period_containing(current.start - timedelta(seconds=1), rule)


def period_between(first: date, last: date, rule: SamplingRule) -> Period:
    """Any span of days, from the start of ``first`` to the end of ``last`` (inclusive) in the rule's zone.

    Not what a person may draw: ``requested_period`` holds every draw asked for to one whole, ended period."""
    for name, day in (("first_day", first), ("last_day", last)):
        if problem := day_problem(day):  # midnight of 9999-12-31 + 1 day, or year 1 east of UTC: a 500 before
            raise InvalidInput("cannot sample that period:", [FieldProblem(name, problem)])
    if last < first:
        raise InvalidInput("cannot sample that period:", [FieldProblem("last_day", "the last day is before the first")])
    if (last - first).days >= MAX_PERIOD_DAYS:
        raise InvalidInput("cannot sample that period:", [FieldProblem(
            "last_day", f"a sample covers at most {MAX_PERIOD_DAYS} days; run one per period instead")])
    zone = ZoneInfo(rule.timezone)
    return Period(_midnight(first, zone), _midnight(last + timedelta(days=1), zone))


_UNIT_NAMES = {"day": "day", "week": "week (Monday to Sunday)", "month": "month", "quarter": "calendar quarter"}


def requested_period(first: date | None, last: date | None, rule: SamplingRule, *, now: datetime,
                     latest_only: bool) -> Period:
    """The period a person asked to draw, held to what cannot be aimed at one call (see the module doc).

    No days: the last complete period. Days given must be the first and the last day of one whole period of
    the policy's rule (``sampling.period`` in ``sampling.timezone``) that has ended at ``now``; with
    ``latest_only`` (reviewers, over the API and the pages) it must be the last complete one. Raises
    ``InvalidInput`` naming ``first_day`` / ``last_day`` and the days that would do.
    """
    latest = previous_period(now, rule)
    if first is None and last is None:
        return latest
    for name, day in (("first_day", first), ("last_day", last)):
        if day is not None and (problem := day_problem(day)):  # year 1 east of UTC, 9999-12-31 + 1 day
            raise InvalidInput("cannot sample that period:", [FieldProblem(name, problem)])
    if first is not None and last is not None and last < first:
        raise InvalidInput("cannot sample that period:", [FieldProblem("last_day", "the last day is before the first")])
    zone = ZoneInfo(rule.timezone)
    held = first if first is not None else last
    assert held is not None
    start, after = _unit_days(held, rule)
    end = after - timedelta(days=1)
    problems = [FieldProblem(name, f"must be {want.isoformat()}, the {which} day of that {rule.period}")
                for name, day, want, which in (("first_day", first, start, "first"), ("last_day", last, end, "last"))
                if day != want]
    if problems:
        raise InvalidInput(
            f"cannot sample that period: a sample covers one whole {_UNIT_NAMES[rule.period]} in {rule.timezone} "
            f"(the policy's sampling rule, B8), never a window around chosen calls; the {rule.period} holding "
            f"{held.isoformat()} runs {start.isoformat()} to {end.isoformat()}:", problems)
    period = Period(_midnight(start, zone), _midnight(after, zone))
    if period.end > now:
        raise InvalidInput("cannot sample that period:", [FieldProblem(
            "last_day", f"that {rule.period} has not ended (it ends {after.isoformat()} 00:00 {rule.timezone}); "
            "a period is sampled once it is over, so that nobody can know the selection in advance (B8)")])
    if latest_only and period != latest:
        raise InvalidInput("cannot sample that period:", [FieldProblem(
            "first_day", f"a reviewer draws only the last complete {rule.period} ({_local_days(latest, zone)}); an "
            "earlier period that was not sampled when it ended is drawn by an administrator with `callvault quality "
            "sample --from --to`, so that nobody picks a period in which a call they want is drawn for certain (B8)")])
    return period


def _local_days(period: Period, zone: ZoneInfo) -> str:
    first = period.start.astimezone(zone).date()
    last = (period.end.astimezone(zone) - timedelta(days=1)).date()
    return f"{first.isoformat()} to {last.isoformat()}"


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(ZoneInfo("UTC"))


# ------------------------------------------------------------------------------------------ selection
def _key(seed: str, message: str) -> bytes:
    return hmac.new(bytes.fromhex(seed), message.encode(), hashlib.sha256).digest()


def sample_size(rule: SamplingRule, calls: int) -> int:
    """How many of an agent's ``calls`` are chosen."""
    if rule.calls_per_agent is not None:
        return min(rule.calls_per_agent, calls)
    assert rule.percent is not None
    return min(calls, math.ceil(calls * rule.percent / 100 - 1e-9))


def _stratum(entry: PopulationEntry, rule: SamplingRule) -> tuple[str, ...]:
    fields = {"team": entry[2], "direction": entry[3]}
    return tuple(fields[s] for s in rule.stratify_by)


def select_calls(seed: str, population: Sequence[PopulationEntry], rule: SamplingRule) -> list[str]:
    """The recording ids chosen from ``population`` with ``seed`` (see the module doc); pure and deterministic."""
    chosen: list[str] = []
    by_agent = sorted(population, key=lambda e: e[1])
    for agent, group in groupby(by_agent, key=lambda e: e[1]):
        calls = sorted(group, key=lambda e: (_stratum(e, rule), _key(seed, e[0])))
        n = sample_size(rule, len(calls))
        if n == 0:
            continue
        step = len(calls) / n
        start = int.from_bytes(_key(seed, f"start|{agent}"), "big") / 2**256 * step
        positions = sorted({min(len(calls) - 1, math.floor(start + k * step)) for k in range(n)})
        chosen.extend(calls[p][0] for p in positions)
    return sorted(chosen)


def population_digest(population: Sequence[PopulationEntry]) -> str:
    """SHA-256 of the population as canonical JSON, so a copy handed to an auditor can be checked."""
    return hashlib.sha256(json.dumps([list(e) for e in population], separators=(",", ":")).encode()).hexdigest()


# -------------------------------------------------------------------------------------------- running
def eligible(session: Session, period: Period,
             rule: SamplingRule | None = None) -> tuple[list[PopulationEntry], Counter[str]]:
    """The calls of ``period`` that may be sampled, and the others counted by why they were left out
    (``filtered``: outside the rule's ``teams`` / ``directions``)."""
    rows = session.execute(
        select(Recording.id, Recording.agent, Recording.team, Recording.direction, Recording.state,
               Recording.quarantined, Recording.on_hold, Recording.retention_rule)
        .where(Recording.started_at >= period.start, Recording.started_at < period.end))
    population: list[PopulationEntry] = []
    excluded: Counter[str] = Counter()
    for rid, agent, team, direction, state, quarantined, on_hold, retention_rule in rows:
        if state != RecordingState.AVAILABLE:
            excluded["personal" if retention_rule == "personal_call" else "not_available"] += 1
        elif quarantined:
            excluded["quarantined"] += 1
        elif on_hold:
            excluded["on_hold"] += 1
        elif not agent:
            excluded["no_agent"] += 1
        elif rule is not None and ((rule.teams and team not in rule.teams)
                                   or (rule.directions and direction not in rule.directions)):
            excluded["filtered"] += 1
        else:
            population.append((rid, agent, team or "", direction))
    population.sort()
    return population, excluded


class PeriodAlreadySampled(Conflict):
    """A draw over a period an earlier sample of the same policy already covers (409): a period is sampled once.

    Why: a reviewer may listen to a drawn call without an access request (B8); if they could draw again, they
    would draw until the call they want came up (B6, B9 bypassed). ``sample_id`` names the earlier sample, which
    stays the period's only one."""

    def __init__(self, earlier: QaSample) -> None:
        zone = ZoneInfo(str(earlier.rule.get("timezone") or "UTC"))
        message = (f"that period was already sampled: sample {earlier.id} covers "
                   f"{_local_days(Period(earlier.period_start, earlier.period_end), zone)} (drawn "
                   f"{earlier.created_at:%Y-%m-%d %H:%M} UTC by {earlier.run_by}). A period is sampled once and never "
                   "drawn again, so that nobody can redraw until a call they want comes up (B8); a call it did not "
                   "draw needs an access request.")
        super().__init__(message)
        self.sample_id = earlier.id
        self.reason = message
        self.clauses: tuple[str, ...] = ("B8",)


def earlier_sample(session: Session, policy_id: str, period: Period) -> QaSample | None:
    """The oldest sample of ``policy_id`` whose period overlaps ``period`` (the one a new draw would repeat)."""
    return session.scalars(select(QaSample).where(
        QaSample.policy_id == policy_id, QaSample.period_start < period.end, QaSample.period_end > period.start,
    ).order_by(QaSample.created_at, QaSample.id).limit(1)).first()


def run_sample(
    session: Session, *, policy: PolicyDocument, period: Period, trigger: str, actor: str,
    clock: Clock = system_clock, source_ip: str | None = None,
) -> QaSample:
    """Draw a sample for ``period`` and put the chosen calls in the review queue (the caller commits).

    A period is sampled once: a period overlapping an earlier sample of the policy raises
    ``PeriodAlreadySampled``. Every draw carries a unique ``schedule_key`` (policy, unit, start), so two draws
    racing for the same period (two worker nodes, a second click) cannot both pass that check: the second
    fails on flush. People reach this through ``draw_on_demand``, which also holds the period to one whole,
    ended period of the rule.
    """
    qr = rules_of(policy)
    earlier = earlier_sample(session, policy.policy_id, period)
    if earlier is not None:
        raise PeriodAlreadySampled(earlier)
    population, excluded = eligible(session, period, qr.sampling)
    seed = secrets.token_hex(16)
    selected = select_calls(seed, population, qr.sampling)
    sample = QaSample(
        id=new_id(), policy_id=policy.policy_id, policy_version=policy.version, period_start=period.start,
        period_end=period.end, trigger=trigger, schedule_key=period_key(policy, period),
        seed=seed, rule=qr.sampling.model_dump(mode="json"), population=[list(e) for e in population],
        population_sha256=population_digest(population), selected=selected, excluded=dict(excluded),
        run_by=actor[:64], created_at=clock.now())
    session.add(sample)
    session.flush()
    facts = {e[0]: e for e in population}
    for rid in selected:
        _, agent, team, direction = facts[rid]
        session.add(QaReviewItem(id=new_id(), sample_id=sample.id, recording_id=rid, agent=agent, team=team or None,
                                 direction=direction, state=ReviewItemState.OPEN, created_at=clock.now()))
    audit.append(session, audit.AuditEvent(
        actor=actor, action="quality.sample", object_type="qa_sample", object_id=sample.id,
        purpose=qr.purpose, source_ip=source_ip, clauses=("B8",),
        details={"trigger": trigger, "period_start": period.start.isoformat(), "period_end": period.end.isoformat(),
                 "population": len(population), "selected": len(selected), "excluded": dict(excluded),
                 "population_sha256": sample.population_sha256, "seed": seed}), clock=clock)
    return sample


def period_key(policy: PolicyDocument, period: Period) -> str:
    """``policy:unit:start``, unique among samples: the same period cannot be drawn twice even by racing draws."""
    return f"{policy.policy_id}:{rules_of(policy).sampling.period}:{period.start.isoformat()}"


def run_due(session: Session, *, policy: PolicyDocument, clock: Clock = system_clock) -> QaSample | None:
    """The worker's draw: the last complete period, once per policy and period; None when already drawn (by the
    worker or by a person who did not wait for it)."""
    if policy.quality_review is None:
        return None
    period = previous_period(clock.now(), policy.quality_review.sampling)
    if earlier_sample(session, policy.policy_id, period) is not None:
        return None
    return run_sample(session, policy=policy, period=period, trigger="schedule", actor="worker", clock=clock)


def draw_on_demand(
    db: Database, *, policy: PolicyDocument, first: date | None, last: date | None, actor: str,
    actor_role: str = "", latest_only: bool = True, clock: Clock = system_clock, source_ip: str | None = None,
) -> QaSample:
    """A person's draw (API, the queue page's button, the CLI), committed: the last complete period, or the days
    asked for when they are one whole, ended period (``requested_period``) not sampled before.

    A refusal (``InvalidInput`` for the period, ``PeriodAlreadySampled``) is written to the audit log before it is
    raised: repeated attempts to draw around one call are what an auditor looks for. A draw that lost a race for
    the same period to another one is answered like any second draw, naming the sample that won.
    """
    qr = rules_of(policy)
    try:
        period = requested_period(first, last, qr.sampling, now=clock.now(), latest_only=latest_only)
        try:
            with db.unit_of_work() as session:
                return run_sample(session, policy=policy, period=period, trigger="on_demand", actor=actor,
                                  clock=clock, source_ip=source_ip)
        except SAIntegrityError:
            with db.read_only() as session:
                earlier = earlier_sample(session, policy.policy_id, period)
            if earlier is None:
                raise
            raise PeriodAlreadySampled(earlier) from None
    except (InvalidInput, PeriodAlreadySampled) as refused:
        with db.unit_of_work() as session:
            audit.append(session, audit.AuditEvent(
                actor=actor, actor_role=actor_role, action="quality.sample", decision="deny", object_type="qa_sample",
                object_id=getattr(refused, "sample_id", ""), purpose=qr.purpose, reason=refused.message,
                clauses=("B8",), source_ip=source_ip,
                details={"trigger": "on_demand", "first_day": first.isoformat() if first else None,
                         "last_day": last.isoformat() if last else None}), clock=clock)
        raise


def rederive(sample: QaSample) -> list[str]:
    """The selection recomputed from the stored seed, rule and population (an auditor's check)."""
    population = [(str(a), str(b), str(c), str(d)) for a, b, c, d in sample.population]
    if population_digest(population) != sample.population_sha256:
        raise InvalidInput(f"sample {sample.id}: the stored population does not match its SHA-256")
    return select_calls(sample.seed, population, SamplingRule.model_validate(sample.rule))


def get_sample(session: Session, sample_id: str) -> QaSample:
    row = session.get(QaSample, sample_id)
    if row is None:
        raise NotFound(f"no sample {sample_id}")
    return row


def recent_samples(session: Session, limit: int = 50) -> list[QaSample]:
    return list(session.scalars(select(QaSample).order_by(QaSample.created_at.desc()).limit(limit)))
