"""Misuse and breach reports (B12): intake, routing to the roles the policy names, status tracking.

Who sees what: anyone signed in may file a report and follow the ones they filed; the roles in
``policy.misuse.report_to_roles`` are mailed each new report and may list, read and move every
report, except one that names them as its subject (they are neither mailed nor shown it).
Every filing, status change and refused look is an audit entry; report text never goes in one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError as SqlIntegrityError
from sqlalchemy.orm import Session

from callvault.audit import service as audit
from callvault.core.clock import Clock, system_clock
from callvault.core.errors import AccessDenied, Conflict, FieldProblem, InvalidInput, NotFound
from callvault.core.ids import new_id
from callvault.identity.models import User
from callvault.integrations.webhooks_out import emit as webhooks
from callvault.notify import service as notify
from callvault.oversight.models import REPORT_STATUSES, MisuseReport
from callvault.policy.schema import PolicyDocument

TRANSITIONS: dict[str, tuple[str, ...]] = {
    "open": ("investigating", "closed"),
    "investigating": ("closed",),
    "closed": ("investigating",),
}
"""Allowed status moves; reopening a closed report sends it back to investigating."""


@dataclass(frozen=True)
class Reporter:
    """Who is acting on reports: a signed-in user, or ``system`` for detection."""

    username: str
    role: str
    source_ip: str | None = None


def is_recipient(policy: PolicyDocument, role: str) -> bool:
    return role in policy.misuse.report_to_roles


def recipients(session: Session, policy: PolicyDocument, *, exclude: str | None = None) -> list[User]:
    """Active users in the roles the policy routes misuse reports to, minus the report's subject."""
    users = session.scalars(select(User).where(User.role.in_(policy.misuse.report_to_roles),
                                               User.active.is_(True)).order_by(User.username))
    return [u for u in users if u.username != exclude]


def _notify_recipients(session: Session, report: MisuseReport, policy: PolicyDocument, *, mail_domain: str,
                       clock: Clock) -> int:
    queued = 0
    kind = f"detection rule {report.rule}" if report.source == "detection" else f"{report.reporter}"
    for user in recipients(session, policy, exclude=report.subject_user):
        body = (
            f"A misuse report was {'raised by' if report.source == 'detection' else 'filed by'} {kind}.\n\n"
            f"Report: {report.id}\nSummary: {report.summary}\nStatus: {report.status}\n"
            f"Evidence: {len(report.evidence)} audit entr{'y' if len(report.evidence) == 1 else 'ies'}\n\n"
            f"Sign in to callvault to read it: GET /api/v1/misuse-reports/{report.id}\n"
            f"You receive this because policy {policy.policy_id} ({policy.version}) routes misuse reports "
            f"to the role {user.role} (B12).\n"
        )
        mail = notify.enqueue(
            session, to=notify.address_for(user.username, getattr(user, "email", None), _domain(mail_domain)),
            recipient_user=user.username, subject=f"[callvault] Misuse report: {report.summary}"[:300], body=body,
            dedup_key=f"misuse:{report.id}:{user.username}", clock=clock)
        queued += mail is not None
    return queued


def _domain(mail_domain: str) -> notify.SmtpSettings:
    return notify.SmtpSettings(mail_domain=mail_domain)


def _clean_evidence(evidence: Sequence[int]) -> list[int]:
    if len(evidence) > 1000:
        raise InvalidInput("too much evidence", [FieldProblem("evidence", "at most 1000 audit entry seqs")])
    bad = [e for e in evidence if not isinstance(e, int) or e < 1]
    if bad:
        raise InvalidInput("invalid evidence", [FieldProblem("evidence", "audit entry seqs are whole numbers ≥ 1")])
    return sorted(set(evidence))


def file_report(
    session: Session, *, policy: PolicyDocument, reporter: Reporter, summary: str, description: str = "",
    subject_user: str | None = None, evidence: Sequence[int] = (), source: str = "person",
    rule: str | None = None, dedup_key: str | None = None, mail_domain: str = "localhost",
    clock: Clock = system_clock,
) -> MisuseReport | None:
    """Store a report, audit it and queue a mail per recipient. Returns None for a duplicate ``dedup_key``."""
    summary = summary.strip()
    if not summary:
        raise InvalidInput("a report needs a summary", [FieldProblem("summary", "must not be blank")])
    if dedup_key is not None and session.scalar(
            select(MisuseReport.id).where(MisuseReport.dedup_key == dedup_key)) is not None:
        return None
    now = clock.now()
    report = MisuseReport(
        id=new_id(), created_at=now, updated_at=now, source=source, reporter=reporter.username, rule=rule,
        subject_user=(subject_user or None), summary=summary[:300], description=description,
        evidence=_clean_evidence(evidence), status="open", dedup_key=dedup_key,
        due_at=(now + timedelta(days=policy.misuse.report_deadline_days)
                if policy.misuse.report_deadline_days is not None else None),
    )
    try:
        with session.begin_nested():
            session.add(report)
            session.flush()
    except SqlIntegrityError:
        return None  # a concurrent detection run raised the same hit
    audit.append(session, audit.AuditEvent(
        actor=reporter.username, actor_role=reporter.role,
        action="misuse.detected" if source == "detection" else "misuse.reported",
        object_type="misuse_report", object_id=report.id, source_ip=reporter.source_ip, clauses=("B12",),
        details={"rule": rule, "subject_user": report.subject_user, "evidence": report.evidence[:50]},
    ), clock=clock)
    _notify_recipients(session, report, policy, mail_domain=mail_domain, clock=clock)
    webhooks.emit(session, "misuse.reported", {
        "report_id": report.id, "source": source, "rule": rule, "subject_user": report.subject_user,
        "evidence_entries": len(report.evidence), "created_at": now.isoformat()}, clock=clock)
    return report


def overdue_reports(session: Session, *, now: datetime) -> list[MisuseReport]:
    """Reports not closed whose deadline (``misuse.report_deadline_days``) has passed, oldest deadline first."""
    return list(session.scalars(select(MisuseReport).where(
        MisuseReport.status != "closed", MisuseReport.due_at.is_not(None), MisuseReport.due_at <= now)
        .order_by(MisuseReport.due_at)))


def is_overdue(report: MisuseReport, now: datetime) -> bool:
    """Past its deadline and not closed: what the misuse page and the compliance report flag."""
    return report.status != "closed" and report.due_at is not None and report.due_at <= now


def mail_overdue(session: Session, *, policy: PolicyDocument, mail_domain: str, clock: Clock = system_clock) -> int:
    """Mail the recipients of each report that has passed its deadline, once per report and recipient.

    Once is held by the outbox's dedup key (``misuse:<id>:overdue:<user>``), not by process memory or a new
    column: a rerun, or a second worker, queues nothing more. The first mail of a report is audited
    (``misuse.overdue``) so the register shows when the deadline was missed. Returns the mails queued."""
    queued = 0
    for report in overdue_reports(session, now=clock.now()):
        sent_now = 0
        for user in recipients(session, policy, exclude=report.subject_user):
            body = (f"Misuse report {report.id} passed its deadline on {report.due_at:%d %B %Y %H:%M} UTC and is "
                    f"still {report.status}.\n\nSummary: {report.summary}\nAssigned to: "
                    f"{report.assignee or 'nobody'}\n\nPolicy {policy.policy_id} ({policy.version}) gives "
                    f"{policy.misuse.report_deadline_days} days to close a report (misuse.report_deadline_days).\n"
                    f"Sign in to callvault to handle it: /misuse\n")
            mail = notify.enqueue(
                session, to=notify.address_for(user.username, getattr(user, "email", None), _domain(mail_domain)),
                recipient_user=user.username, subject=f"[callvault] OVERDUE misuse report: {report.summary}"[:300],
                body=body, dedup_key=f"misuse:{report.id}:overdue:{user.username}", clock=clock)
            sent_now += mail is not None
        if sent_now:
            audit.append(session, audit.AuditEvent(
                actor="system", action="misuse.overdue", object_type="misuse_report", object_id=report.id,
                clauses=("B12",), details={"due_at": report.due_at.isoformat() if report.due_at else None,
                                           "recipients_mailed": sent_now}), clock=clock)
        queued += sent_now
    return queued


def _deny(session: Session, who: Reporter, action: str, report_id: str, reason: str, clock: Clock) -> None:
    audit.append(session, audit.AuditEvent(
        actor=who.username, actor_role=who.role, action=action, decision="deny", object_type="misuse_report",
        object_id=report_id[:200], reason=reason, source_ip=who.source_ip, clauses=("B12",),
    ), clock=clock)


def list_reports(session: Session, *, policy: PolicyDocument, viewer: Reporter, status: str | None = None,
                 limit: int = 200) -> list[MisuseReport]:
    """Reports the viewer may see: all but those about themselves for recipients; their own otherwise."""
    if status is not None and status not in REPORT_STATUSES:
        raise InvalidInput("invalid filter", [FieldProblem("status", f"one of {', '.join(REPORT_STATUSES)}")])
    query = select(MisuseReport).order_by(MisuseReport.created_at.desc()).limit(max(1, min(limit, 500)))
    if status:
        query = query.where(MisuseReport.status == status)
    if is_recipient(policy, viewer.role):
        query = query.where(or_(MisuseReport.subject_user.is_(None), MisuseReport.subject_user != viewer.username))
    else:
        query = query.where(MisuseReport.reporter == viewer.username)
    return list(session.scalars(query))


def get_report(session: Session, *, policy: PolicyDocument, viewer: Reporter, report_id: str,
               clock: Clock = system_clock) -> MisuseReport | None:
    """One report if the viewer may see it; otherwise None, with the refused look audited (caller commits)."""
    report = session.get(MisuseReport, report_id)
    if report is None:
        return None
    if report.reporter == viewer.username and report.source == "person":
        return report
    if is_recipient(policy, viewer.role) and report.subject_user != viewer.username:
        return report
    _deny(session, viewer, "misuse.read", report_id, "not a recipient of misuse reports, or the report's subject",
          clock)
    return None


def _handled_report(session: Session, policy: PolicyDocument, actor: Reporter, report_id: str, action: str,
                    clock: Clock) -> MisuseReport:
    """The report ``actor`` is about to handle; an audited ``AccessDenied`` unless they are a recipient and the
    report is not about themselves."""
    report = session.get(MisuseReport, report_id)
    if report is None:
        raise NotFound("no such misuse report")
    if not is_recipient(policy, actor.role) or report.subject_user == actor.username:
        reason = (f"role {actor.role} does not handle misuse reports" if not is_recipient(policy, actor.role)
                  else "nobody may handle a report about themselves")
        _deny(session, actor, action, report_id, reason, clock)
        raise AccessDenied(reason, clauses=("B12",))
    return report


def change_status(session: Session, *, policy: PolicyDocument, actor: Reporter, report_id: str, status: str,
                  note: str = "", clock: Clock = system_clock) -> MisuseReport:
    """Move a report along ``TRANSITIONS`` (recipients only, never on a report about themselves); audited.

    A refusal is audited before ``AccessDenied`` is raised: the caller commits, then answers.
    """
    if status not in REPORT_STATUSES:
        raise InvalidInput("invalid status", [FieldProblem("status", f"one of {', '.join(REPORT_STATUSES)}")])
    report = _handled_report(session, policy, actor, report_id, "misuse.status_changed", clock)
    if status not in TRANSITIONS[report.status]:
        raise Conflict(f"a {report.status} report cannot become {status}; "
                       f"allowed: {', '.join(TRANSITIONS[report.status])}")
    if status == "closed" and not note.strip():
        raise InvalidInput("a closing note is needed", [FieldProblem("note", "say how the report was resolved")])
    previous = report.status
    report.status = status
    report.closing_note = note.strip()[:2000] if status == "closed" else None
    report.updated_at = clock.now()
    audit.append(session, audit.AuditEvent(
        actor=actor.username, actor_role=actor.role, action="misuse.status_changed", decision="allow",
        object_type="misuse_report", object_id=report.id, reason=note[:2000], source_ip=actor.source_ip,
        clauses=("B12",), details={"from": previous, "to": status},
    ), clock=clock)
    session.flush()
    return report


def assign(session: Session, *, policy: PolicyDocument, actor: Reporter, report_id: str, assignee: str | None,
           clock: Clock = system_clock) -> MisuseReport:
    """Give a report to one recipient to handle (``assignee=None`` takes it back); audited ``misuse.assigned``.

    Only recipients assign, never on a report about themselves, and only to an active user in the roles the
    policy routes reports to who is not the report's subject: whoever is named must be allowed to read it.
    A refusal is audited before ``AccessDenied`` is raised: the caller commits, then answers.
    """
    report = _handled_report(session, policy, actor, report_id, "misuse.assigned", clock)
    name = (assignee or "").strip() or None
    if name is not None and name not in {u.username for u in recipients(session, policy,
                                                                           exclude=report.subject_user)}:
        raise InvalidInput("invalid assignee", [FieldProblem(
            "assignee", f"{name[:64]} is not an active {' or '.join(policy.misuse.report_to_roles)} "
                        "who may handle this report")])
    previous = report.assignee
    report.assignee = name
    report.updated_at = clock.now()
    audit.append(session, audit.AuditEvent(
        actor=actor.username, actor_role=actor.role, action="misuse.assigned", decision="allow",
        object_type="misuse_report", object_id=report.id, source_ip=actor.source_ip, clauses=("B12",),
        details={"from": previous, "to": name},
    ), clock=clock)
    session.flush()
    return report
