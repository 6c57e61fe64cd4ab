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
for. The seed is 128 bits from ``secrets`` drawn when the sample is run, after the period has ended for
scheduled runs, so nobody (an agent included) can know which calls will be chosen. Nothing here uses
Python's ``random``: the HMAC construction can be re-implemented in any language by an auditor.
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
from sqlalchemy.orm import Session

from callvault.audit import service as audit
from callvault.core.clock import Clock, system_clock
from callvault.core.errors import FieldProblem, InvalidInput, NotFound
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


def period_containing(moment: datetime, rule: SamplingRule) -> Period:
    """The day, week (Monday first), month or calendar quarter holding ``moment``, in the rule's time zone."""
    zone = ZoneInfo(rule.timezone)
    local = moment.astimezone(zone).date()
    if rule.period == "day":
        first, after = local, local + timedelta(days=1)
    elif rule.period == "week":
        first = local - timedelta(days=local.weekday())
        after = first + timedelta(days=7)
    elif rule.period == "quarter":
        first = local.replace(month=(local.month - 1) // 3 * 3 + 1, day=1)
        after = add_months(first, 3)
    else:
        first = local.replace(day=1)
        after = (first + timedelta(days=32)).replace(day=1)
    return Period(_midnight(first, zone), _midnight(after, zone))


def previous_period(now: datetime, rule: SamplingRule) -> Period:
    """The last period that has fully ended at ``now`` (what the schedule samples)."""
    current = period_containing(now, rule)
    return period_containing(current.start - timedelta(seconds=1), rule)


def period_between(first: date, last: date, rule: SamplingRule) -> Period:
    """An on-demand period: from the start of ``first`` to the end of ``last`` (inclusive) in the rule's zone."""
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


def run_sample(
    session: Session, *, policy: PolicyDocument, period: Period, trigger: str, actor: str,
    clock: Clock = system_clock, source_ip: str | None = None,
) -> QaSample:
    """Draw a sample for ``period`` and put the chosen calls in the review queue (the caller commits).

    Scheduled draws carry a unique ``schedule_key``: a second worker drawing the same period fails on
    commit instead of doubling the queue.
    """
    qr = rules_of(policy)
    population, excluded = eligible(session, period, qr.sampling)
    seed = secrets.token_hex(16)
    selected = select_calls(seed, population, qr.sampling)
    sample = QaSample(
        id=new_id(), policy_id=policy.policy_id, policy_version=policy.version, period_start=period.start,
        period_end=period.end, trigger=trigger,
        schedule_key=scheduled_key(policy, period) if trigger == "schedule" else None,
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


def scheduled_key(policy: PolicyDocument, period: Period) -> str:
    return f"{policy.policy_id}:{rules_of(policy).sampling.period}:{period.start.isoformat()}"


def run_due(session: Session, *, policy: PolicyDocument, clock: Clock = system_clock) -> QaSample | None:
    """The worker's draw: the last complete period, once per policy and period; None when already drawn."""
    if policy.quality_review is None:
        return None
    period = previous_period(clock.now(), policy.quality_review.sampling)
    if session.scalar(select(QaSample.id).where(QaSample.schedule_key == scheduled_key(policy, period))):
        return None
    return run_sample(session, policy=policy, period=period, trigger="schedule", actor="worker", clock=clock)


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
