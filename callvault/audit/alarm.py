"""The tamper alarm: raised when the log fails verification just before a checkpoint is signed.

Why: a checkpoint signed over a damaged log (a deleted row, a row edited without re-hashing) vouches for
the damage, and the anchor moves forward with it. So signing verifies what it signs
(``checkpoints.tamper_problem``), and on a mismatch nothing is signed and an alarm is raised:

* a row in ``audit_alarms`` (every node sees it: ``/readyz`` says ``degraded``, ``/metrics`` has
  ``callvault_audit_alarm 1``), and no node signs while it is open;
* an ``audit.tamper_detected`` entry (decision ``alarm``) and a CRITICAL log line;
* a mail to every active user in the policy's ``misuse.report_to_roles`` (B12), once per alarm.

It stays raised until an administrator acknowledges it (``callvault audit acknowledge-alarm --reason``,
or the page ``/admin/audit/alarm``: both ask ``acknowledgement_refusal``, then call ``acknowledge``;
audited either way). Signing then resumes only once the whole log verifies again, or, with ``--rebase``,
from the entries as they now stand: the chain is verified from the entry after the re-base point.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from callvault.audit import service as audit
from callvault.audit.models import AuditAlarm, AuditEntry
from callvault.core.clock import Clock, system_clock
from callvault.core.db import Database
from callvault.core.errors import Conflict, FieldProblem, IntegrityError, InvalidInput

if TYPE_CHECKING:  # only an annotation: the audit package stays below the policy one at import time
    from callvault.policy.schema import PolicyDocument

log = logging.getLogger("callvault.audit")


class AuditTampered(IntegrityError):
    """The entries a checkpoint was about to sign do not verify."""

    def __init__(self, message: str, *, first_bad_seq: int | None) -> None:
        super().__init__(message)
        self.first_bad_seq = first_bad_seq


class AlarmRaised(IntegrityError):
    """Signing is stopped: a tamper alarm is open."""


def open_alarm(session: Session) -> AuditAlarm | None:
    """The alarm still waiting for an administrator, if any."""
    return session.scalar(select(AuditAlarm).where(AuditAlarm.acknowledged_at.is_(None))
                          .order_by(AuditAlarm.id.desc()).limit(1))


def latest_alarm(session: Session) -> AuditAlarm | None:
    return session.scalar(select(AuditAlarm).order_by(AuditAlarm.id.desc()).limit(1))


def rebase_seq(session: Session) -> int:
    """The newest re-base point an administrator set (0: none): the chain is verified after it."""
    return int(session.scalar(select(func.max(AuditAlarm.rebase_seq))) or 0)


def refuse_if_open(session: Session) -> None:
    """Raise ``AlarmRaised`` while an alarm is open: nothing is signed over a log under suspicion."""
    alarm = open_alarm(session)
    if alarm is not None:
        raise AlarmRaised(
            f"audit tamper alarm #{alarm.id} (raised {alarm.raised_at.isoformat(timespec='seconds')}): "
            f"{alarm.problem}; no checkpoint is signed until an administrator runs "
            "`callvault audit acknowledge-alarm --reason ...`")


def raise_alarm(db: Database, exc: AuditTampered, *, actor: str, mail_domain: str,
                clock: Clock = system_clock) -> AuditAlarm | None:
    """Record ``exc`` as an open alarm (one at a time), audit it and mail the policy's recipients.

    Its own transaction, committed although signing failed. Returns the alarm, or None if the database
    refused (the CRITICAL log line stands)."""
    log.critical("audit log tampered: %s", exc.message)
    try:
        with db.unit_of_work() as session:
            alarm = open_alarm(session)
            if alarm is not None:
                return alarm
            alarm = AuditAlarm(raised_at=clock.now(), raised_by=actor, problem=exc.message[:2000],
                               first_bad_seq=exc.first_bad_seq)
            session.add(alarm)
            session.flush()
            audit.append(session, audit.AuditEvent(
                actor=actor, action="audit.tamper_detected", decision="alarm", object_type="audit_log",
                object_id=str(exc.first_bad_seq or ""), reason=exc.message[:2000],
                details={"alarm": alarm.id, "first_bad_seq": exc.first_bad_seq}), clock=clock)
            _mail(session, alarm, mail_domain=mail_domain, clock=clock)
            return alarm
    except Exception:
        log.exception("could not record the audit tamper alarm")
        return None


def _mail(session: Session, alarm: AuditAlarm, *, mail_domain: str, clock: Clock) -> int:
    """One mail per recipient per alarm (the dedup key), to the roles misuse reports go to (B12)."""
    # Imported here: the policy and identity domains build on audit, not the other way round.
    from callvault.identity.models import User
    from callvault.notify import service as notify
    from callvault.policy import service as policy_service

    policy = policy_service.current_policy(session, clock=clock)
    users = session.scalars(select(User).where(User.role.in_(policy.misuse.report_to_roles),
                                               User.active.is_(True)).order_by(User.username))
    smtp = notify.SmtpSettings(mail_domain=mail_domain)
    queued = 0
    for user in users:
        body = (f"callvault found its audit log tampered with and stopped signing checkpoints.\n\n"
                f"Alarm: #{alarm.id}, raised {alarm.raised_at.isoformat(timespec='seconds')} by {alarm.raised_by}\n"
                f"Problem: {alarm.problem}\n\n"
                "Run `callvault audit verify` for the details. An administrator acknowledges the alarm with\n"
                "`callvault audit acknowledge-alarm --reason ...` once it has been investigated.\n"
                f"You receive this because policy {policy.policy_id} ({policy.version}) routes suspected "
                f"breaches to the role {user.role} (B12).\n")
        mail = notify.enqueue(session, to=notify.address_for(user.username, getattr(user, "email", None), smtp),
                              recipient_user=user.username, subject=f"[callvault] Audit log tamper alarm #{alarm.id}",
                              body=body, dedup_key=f"audit-alarm:{alarm.id}:{user.username}", clock=clock)
        queued += mail is not None
    return queued


def acknowledgement_refusal(policy: PolicyDocument, *, username: str, role: str, active: bool) -> str | None:
    """Why this account may not acknowledge an alarm (None: it may). Only an active account whose role
    administers the system: the CLI and the page ask this one function, so neither can be looser."""
    allowed = policy.roles.get(role)
    if active and allowed is not None and allowed.can_administer:
        return None
    return (f"{username} (role {role}) does not administer the system: only an administrator acknowledges "
            "an audit alarm")


def record_refusal(session: Session, *, actor: str, actor_role: str, reason: str, source_ip: str | None = None,
                   clock: Clock = system_clock) -> None:
    """Put a refused acknowledgement on the record (the caller commits, then answers 403)."""
    audit.append(session, audit.AuditEvent(
        actor=actor, actor_role=actor_role, action="audit.alarm_acknowledged", decision="deny",
        object_type="audit_log", reason=reason, source_ip=source_ip), clock=clock)


def acknowledge(session: Session, *, actor: str, actor_role: str, reason: str, rebase: bool = False,
                source_ip: str | None = None, clock: Clock = system_clock) -> AuditAlarm:
    """Close the open alarm (the caller commits). With ``rebase``, accept the entries as they stand now.

    Without it, the next checkpoint verifies the whole log first and raises a new alarm if it still
    fails. The acknowledgement is an audit entry (``audit.alarm_acknowledged``) with the reason."""
    reason = reason.strip()
    if len(reason) < 10:
        raise InvalidInput("acknowledging an audit alarm needs a reason:",
                           [FieldProblem("reason", "say in at least 10 characters what was found and done")])
    alarm = open_alarm(session)
    if alarm is None:
        raise Conflict("no audit alarm is raised")
    alarm.acknowledged_at, alarm.acknowledged_by, alarm.ack_reason = clock.now(), actor, reason[:2000]
    if rebase:
        alarm.rebase_seq = int(session.scalar(select(func.max(AuditEntry.seq))) or 0)
    session.flush()
    audit.append(session, audit.AuditEvent(
        actor=actor, actor_role=actor_role, action="audit.alarm_acknowledged", decision="info",
        object_type="audit_log", object_id=str(alarm.id), reason=reason[:2000], source_ip=source_ip,
        details={"alarm": alarm.id, "rebase_seq": alarm.rebase_seq}), clock=clock)
    return alarm
