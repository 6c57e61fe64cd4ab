"""Misuse detection rules over the audit log (B12), run by the worker.

Each rule looks at one calendar day (in ``policy.misuse.detection.timezone``) and each user, and a hit
raises one misuse report with the audit entry seqs as evidence. The report's dedup key is
``<rule>:<user>:<day>``, so the job can run as often as it likes (and on several workers) and a hit
is reported once. The job examines yesterday and today, so a hit late in the day is not missed.

Rules (thresholds are policy data, ``MisuseDetection``):
    unusual_volume      distinct recordings played in the day ≥ ``volume_min_recordings`` and above
                        ``volume_factor`` times the user's daily average over the ``baseline_days`` before
    outside_hours       any content access (play, download, export, transcript) outside working hours/days
    repeated_denials    ≥ ``denials_per_day`` denied requests
    extension_probing   a user whose role reaches only their own extension denied recordings of
                        ≥ ``probing_extensions`` other extensions
    bulk_download       ≥ ``bulk_download_recordings`` distinct recordings downloaded/exported within
                        ``bulk_download_minutes``
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from callvault.audit.models import AuditEntry
from callvault.core.clock import Clock, system_clock
from callvault.identity.models import User
from callvault.oversight.models import MisuseReport
from callvault.oversight.service import Reporter, file_report
from callvault.policy.schema import MisuseDetection, PolicyDocument
from callvault.recordings.models import Recording

CONTENT_ACTIONS = ("recording.play", "recording.download", "recording.export", "recording.transcript")
BULK_ACTIONS = ("recording.download", "recording.export")
MAX_EVIDENCE = 200
SYSTEM = Reporter(username="system", role="system")


@dataclass(frozen=True)
class Hit:
    rule: str
    user: str
    day: date
    summary: str
    evidence: list[int]


@dataclass(frozen=True)
class _Row:
    seq: int
    at: datetime
    actor: str
    actor_role: str
    action: str
    object_id: str
    decision: str


def _day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), tzinfo=zone)
    return start, start + timedelta(days=1)


def _rows(session: Session, start: datetime, end: datetime) -> list[_Row]:
    result = session.execute(
        select(AuditEntry.seq, AuditEntry.at, AuditEntry.actor, AuditEntry.actor_role, AuditEntry.action,
               AuditEntry.object_id, AuditEntry.decision)
        .where(AuditEntry.at >= start, AuditEntry.at < end)
        .order_by(AuditEntry.seq)
    )
    return [_Row(*r) for r in result]


def _in_hours(at: datetime, rules: MisuseDetection, zone: ZoneInfo) -> bool:
    local = at.astimezone(zone)
    if local.isoweekday() not in rules.working_days:
        return False
    hhmm = local.strftime("%H:%M")
    return rules.working_hours[0] <= hhmm < rules.working_hours[1]


def _baseline(session: Session, user: str, day_start: datetime, days: int) -> float:
    """The user's average distinct recordings played per day over ``days`` before ``day_start``."""
    rows = session.execute(
        select(AuditEntry.at, AuditEntry.object_id)
        .where(AuditEntry.actor == user, AuditEntry.action == "recording.play", AuditEntry.decision == "allow",
               AuditEntry.at >= day_start - timedelta(days=days), AuditEntry.at < day_start)
    )
    distinct = {(at.date(), obj) for at, obj in rows}
    return len(distinct) / days


def _bulk_window(rows: list[_Row], minutes: int) -> tuple[int, list[int]]:
    """Most distinct recordings in any window of ``minutes``, and the seqs in that window."""
    best: tuple[int, list[int]] = (0, [])
    span = timedelta(minutes=minutes)
    left = 0
    for right in range(len(rows)):
        while rows[right].at - rows[left].at > span:
            left += 1
        window = rows[left:right + 1]
        count = len({r.object_id for r in window})
        if count > best[0]:
            best = (count, [r.seq for r in window])
    return best


def evaluate_day(session: Session, *, policy: PolicyDocument, day: date) -> list[Hit]:
    """Every rule's hits for one day."""
    rules = policy.misuse.detection
    zone = ZoneInfo(rules.timezone)
    start, end = _day_bounds(day, zone)
    rows = _rows(session, start, end)
    by_actor: dict[str, list[_Row]] = defaultdict(list)
    for row in rows:
        by_actor[row.actor].append(row)
    hits: list[Hit] = []
    own_extension_roles = {name for name, role in policy.roles.items() if role.content_scope == "own_extension"}
    for actor, items in sorted(by_actor.items()):
        allowed_content = [r for r in items if r.decision == "allow" and r.action in CONTENT_ACTIONS]
        plays = [r for r in allowed_content if r.action == "recording.play"]
        played = {r.object_id for r in plays}
        if len(played) >= rules.volume_min_recordings:
            base = _baseline(session, actor, start, rules.baseline_days)
            if len(played) > rules.volume_factor * base:
                hits.append(Hit("unusual_volume", actor, day,
                                f"{actor} played {len(played)} recordings on {day} "
                                f"(usual: {base:.1f} a day)", [r.seq for r in plays]))
        late = [r for r in allowed_content if not _in_hours(r.at, rules, zone)]
        if late:
            hits.append(Hit("outside_hours", actor, day,
                            f"{actor} reached recording content {len(late)} time(s) outside working hours on {day}",
                            [r.seq for r in late]))
        denied = [r for r in items if r.decision == "deny"]
        if len(denied) >= rules.denials_per_day:
            hits.append(Hit("repeated_denials", actor, day,
                            f"{actor} was refused {len(denied)} time(s) on {day}", [r.seq for r in denied]))
        roles_used = {r.actor_role for r in items}
        if roles_used & own_extension_roles:
            hit = _probing(session, actor, day, [r for r in denied if r.action.startswith("recording.")], rules)
            if hit is not None:
                hits.append(hit)
        bulk = [r for r in items if r.decision == "allow" and r.action in BULK_ACTIONS]
        if bulk:
            count, seqs = _bulk_window(bulk, rules.bulk_download_minutes)
            if count >= rules.bulk_download_recordings:
                hits.append(Hit("bulk_download", actor, day,
                                f"{actor} downloaded {count} recordings within {rules.bulk_download_minutes} "
                                f"minutes on {day}", seqs))
    return hits


def _probing(session: Session, actor: str, day: date, denied: list[_Row], rules: MisuseDetection) -> Hit | None:
    if not denied:
        return None
    own = session.scalar(select(User.extension).where(User.username == actor))
    ids = {r.object_id for r in denied}
    extensions = dict(session.execute(select(Recording.id, Recording.extension).where(Recording.id.in_(ids))).all())
    others = {extensions.get(r.object_id) for r in denied} - {None, own}
    if len(others) < rules.probing_extensions:
        return None
    evidence = [r.seq for r in denied if extensions.get(r.object_id) not in (None, own)]
    return Hit("extension_probing", actor, day,
               f"{actor} tried to reach recordings of {len(others)} other extensions on {day}", evidence)


def days_to_check(now: datetime, zone: ZoneInfo) -> Iterable[date]:
    today = now.astimezone(zone).date()
    return (today - timedelta(days=1), today)


def run_detection(session: Session, *, policy: PolicyDocument, mail_domain: str = "localhost",
                  clock: Clock = system_clock) -> list[MisuseReport]:
    """Evaluate yesterday and today; raise a report for each new hit. Returns the reports raised."""
    rules = policy.misuse.detection
    if not rules.enabled:
        return []
    raised: list[MisuseReport] = []
    for day in days_to_check(clock.now(), ZoneInfo(rules.timezone)):
        for hit in evaluate_day(session, policy=policy, day=day):
            report = file_report(
                session, policy=policy, reporter=SYSTEM, summary=hit.summary,
                description=f"Raised by detection rule {hit.rule}; thresholds are in the policy "
                            f"(misuse.detection). Evidence lists audit entry seqs.",
                subject_user=hit.user, evidence=hit.evidence[:MAX_EVIDENCE], source="detection", rule=hit.rule,
                dedup_key=f"{hit.rule}:{hit.user}:{hit.day.isoformat()}"[:200], mail_domain=mail_domain,
                clock=clock,
            )
            if report is not None:
                raised.append(report)
    return raised
