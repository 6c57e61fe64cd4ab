"""Emergency ("break the glass") access and the accounting of disclosures (``emergency_access``).

A person whose role is among ``emergency_access.roles`` declares an emergency with a reason; for at most
``max_minutes`` ``decide()`` lets them reach any available recording (``emergency_access.actions``) beyond
their role's scope, each access audited with the declaration's id. Every declaration is a review task for
``reviewer_roles`` due ``review_within_days`` later; the reviewer (never the declarer) records ``justified``
or ``misuse`` (which files a misuse report); a review past its date is reported once to the misuse
recipients (job ``access.emergency_reviews``).

The accounting of disclosures lists, for a caller's number, every time their recordings left the
system or were reached in an emergency: downloads, exports, subject-request releases, and any access
under a declaration. It is read from the audit log, so it is as complete as the log.

Services take the session and the actor and never commit; every change is audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from callvault.access.models import EmergencyDeclaration
from callvault.audit import service as audit
from callvault.audit.models import AuditEntry
from callvault.core.clock import Clock, system_clock
from callvault.core.errors import AccessDenied, Conflict, FieldProblem, InvalidInput, NotFound
from callvault.core.ids import new_id
from callvault.oversight import service as oversight
from callvault.policy.decide import Actor, EmergencyFacts
from callvault.policy.schema import EmergencyAccessRules, PolicyDocument
from callvault.recordings.models import Recording

OUTCOMES = ("justified", "misuse")


def _rules(policy: PolicyDocument) -> EmergencyAccessRules:
    if policy.emergency_access is None:
        raise AccessDenied("this policy has no emergency access", reason="no emergency_access section",
                           clauses=())
    return policy.emergency_access


def _clauses(rules: EmergencyAccessRules) -> tuple[str, ...]:
    return tuple(c for c in (rules.clause,) if c)


def declare(
    session: Session, *, policy: PolicyDocument, actor: Actor, reason: str, minutes: int | None = None,
    source_ip: str | None = None, clock: Clock = system_clock,
) -> EmergencyDeclaration:
    """Declare an emergency: access for ``minutes`` (default and at most ``max_minutes``), with why."""
    rules = _rules(policy)
    if actor.role not in rules.roles:
        raise AccessDenied(f"role {actor.role} may not declare an emergency (emergency_access.roles: "
                           f"{', '.join(rules.roles)})", reason="not in emergency_access.roles",
                           clauses=_clauses(rules))
    problems = []
    if len(reason.strip()) < 10:
        problems.append(FieldProblem("reason", "say what the emergency is (at least 10 characters)"))
    length = rules.max_minutes if minutes is None else minutes
    if not 1 <= length <= rules.max_minutes:
        problems.append(FieldProblem("minutes", f"must be 1 to {rules.max_minutes} (emergency_access.max_minutes)"))
    if problems:
        raise InvalidInput("invalid emergency declaration:", problems)
    now = clock.now()
    row = EmergencyDeclaration(
        id=new_id(), user_id=actor.user_id, username=actor.username, role=actor.role, reason=reason.strip(),
        declared_at=now, ends_at=now + timedelta(minutes=length),
        review_due_on=now.date() + timedelta(days=rules.review_within_days))
    session.add(row)
    session.flush()
    audit.append(session, audit.AuditEvent(
        actor=actor.username, actor_role=actor.role, action="emergency.declared", object_type="emergency_declaration",
        object_id=row.id, reason=row.reason, source_ip=source_ip, clauses=_clauses(rules),
        details={"ends_at": row.ends_at.isoformat(), "review_due_on": row.review_due_on.isoformat(),
                 "reviewer_roles": list(rules.reviewer_roles)}), clock=clock)
    return row


def active_for(session: Session, *, user_id: str, now: datetime) -> EmergencyFacts | None:
    """The user's declaration in force at ``now`` (the latest ending), or None."""
    row = session.scalar(select(EmergencyDeclaration).where(
        EmergencyDeclaration.user_id == user_id, EmergencyDeclaration.ends_at > now,
        EmergencyDeclaration.ended_early_at.is_(None)).order_by(EmergencyDeclaration.ends_at.desc()).limit(1))
    if row is None:
        return None
    return EmergencyFacts(declaration_id=row.id, user_id=row.user_id, role=row.role, ends_at=row.ends_at)


def open_reviews(session: Session, *, policy: PolicyDocument, actor: Actor) -> list[EmergencyDeclaration]:
    """The review tasks ``actor`` may do: unreviewed declarations by others, oldest due first."""
    rules = _rules(policy)
    if actor.role not in rules.reviewer_roles:
        raise AccessDenied(f"role {actor.role} does not review emergency access (emergency_access.reviewer_roles: "
                           f"{', '.join(rules.reviewer_roles)})", reason="not a reviewer role", clauses=_clauses(rules))
    return list(session.scalars(select(EmergencyDeclaration).where(
        EmergencyDeclaration.reviewed_at.is_(None), EmergencyDeclaration.user_id != actor.user_id)
        .order_by(EmergencyDeclaration.review_due_on, EmergencyDeclaration.declared_at)))


def accesses_under(session: Session, declaration_id: str) -> list[AuditEntry]:
    """Every content decision made under the declaration (what the reviewer reviews)."""
    return [e for e in session.scalars(select(AuditEntry).where(
        AuditEntry.object_type == "recording", AuditEntry.action.like("recording.%")).order_by(AuditEntry.seq))
        if (e.details or {}).get("emergency_declaration") == declaration_id]


def review(
    session: Session, *, policy: PolicyDocument, actor: Actor, declaration_id: str, outcome: str, notes: str,
    source_ip: str | None = None, clock: Clock = system_clock,
) -> EmergencyDeclaration:
    """Record the review of a declaration; ``misuse`` files a misuse report naming the declarer."""
    rules = _rules(policy)
    if actor.role not in rules.reviewer_roles:
        raise AccessDenied(f"role {actor.role} does not review emergency access", reason="not a reviewer role",
                           clauses=_clauses(rules))
    row = session.get(EmergencyDeclaration, declaration_id)
    if row is None:
        raise NotFound(f"no emergency declaration {declaration_id!r}")
    if row.user_id == actor.user_id:
        raise AccessDenied("nobody reviews their own emergency access", reason="own declaration",
                           clauses=_clauses(rules))
    if row.reviewed_at is not None:
        raise Conflict(f"emergency declaration {declaration_id} was already reviewed")
    problems = []
    if outcome not in OUTCOMES:
        problems.append(FieldProblem("outcome", f"must be one of {', '.join(OUTCOMES)}"))
    if not notes.strip():
        problems.append(FieldProblem("notes", "say what was reviewed and why it was (not) justified"))
    if problems:
        raise InvalidInput("invalid review:", problems)
    now = clock.now()
    accesses = accesses_under(session, row.id)
    row.reviewed_at, row.reviewed_by, row.review_outcome, row.review_notes = now, actor.username, outcome, notes.strip()
    if row.ends_at > now:
        row.ended_early_at = now  # a reviewed declaration is over
    session.flush()
    entry = audit.append(session, audit.AuditEvent(
        actor=actor.username, actor_role=actor.role, action="emergency.reviewed", object_type="emergency_declaration",
        object_id=row.id, reason=row.review_notes or "", source_ip=source_ip, clauses=_clauses(rules),
        details={"outcome": outcome, "declared_by": row.username, "accesses": len(accesses),
                 "late": now.date() > row.review_due_on}), clock=clock)
    if outcome == "misuse":
        oversight.file_report(
            session, policy=policy, reporter=oversight.Reporter(username=actor.username, role=actor.role),
            summary=f"Emergency access by {row.username} judged misuse on review",
            description=f"Declared {row.declared_at:%Y-%m-%d %H:%M} because: {row.reason}. {len(accesses)} "
                        f"access(es). Reviewer's notes: {row.review_notes}",
            subject_user=row.username, evidence=[entry.seq, *(e.seq for e in accesses)], source="person",
            rule="emergency_access_misuse", dedup_key=f"emergency-misuse:{row.id}", clock=clock)
    return row


def report_overdue_reviews(session: Session, *, policy: PolicyDocument, clock: Clock = system_clock) -> int:
    """Report (once) every declaration whose review is past its due date, to the misuse recipients."""
    if policy.emergency_access is None:
        return 0
    now = clock.now()
    count = 0
    for row in session.scalars(select(EmergencyDeclaration).where(
            EmergencyDeclaration.reviewed_at.is_(None), EmergencyDeclaration.review_due_on < now.date(),
            EmergencyDeclaration.overdue_reported_at.is_(None))):
        row.overdue_reported_at = now
        audit.append(session, audit.AuditEvent(
            actor="system", actor_role="system", action="emergency.review_overdue", decision="info",
            object_type="emergency_declaration", object_id=row.id, reason=f"review was due {row.review_due_on}",
            details={"declared_by": row.username, "reviewer_roles": list(policy.emergency_access.reviewer_roles)},
            clauses=_clauses(policy.emergency_access)), clock=clock)
        oversight.file_report(
            session, policy=policy, reporter=oversight.Reporter(username="system", role="system"),
            summary=f"Emergency access by {row.username} not reviewed by {row.review_due_on.isoformat()}",
            description=f"Declared {row.declared_at:%Y-%m-%d %H:%M} because: {row.reason}. Reviewers: "
                        f"{', '.join(policy.emergency_access.reviewer_roles)}.",
            subject_user=row.username, source="detection", rule="emergency_review_overdue",
            dedup_key=f"emergency-overdue:{row.id}", clock=clock)
        count += 1
    session.flush()
    return count


# ------------------------------------------------------------------------------ accounting of disclosures
DISCLOSING_ACTIONS = ("recording.download", "recording.export")


@dataclass(frozen=True)
class Disclosure:
    """One time a caller's recording left the system or was reached in an emergency."""

    at: datetime
    recording_id: str
    action: str
    actor: str
    actor_role: str | None
    purpose: str | None
    reason: str
    emergency_declaration: str | None
    audit_seq: int


def disclosures(session: Session, *, number: str, since: date | None = None) -> list[Disclosure]:
    """Every release of ``number``'s recordings (E.164), oldest first: allowed downloads and exports (a
    subject-request release exports each recording it sends, so it is here too) and every allowed access
    under an emergency declaration. Usable as the accounting a caller's subject request asks for."""
    ids = set(session.scalars(select(Recording.id).where(Recording.remote_number == number)))
    if not ids:
        return []
    found: list[Disclosure] = []
    for entry in session.scalars(select(AuditEntry).where(
            AuditEntry.decision == "allow", AuditEntry.object_type == "recording", AuditEntry.object_id.in_(ids))
            .order_by(AuditEntry.seq)):
        if since is not None and entry.at.date() < since:
            continue
        declaration = (entry.details or {}).get("emergency_declaration")
        if entry.action in DISCLOSING_ACTIONS or declaration:
            found.append(Disclosure(at=entry.at, recording_id=entry.object_id, action=entry.action, actor=entry.actor,
                                    actor_role=entry.actor_role, purpose=entry.purpose, reason=entry.reason or "",
                                    emergency_declaration=declaration, audit_seq=entry.seq))
    return found


# ------------------------------------------------------------------------------ the reviewer's queue
@dataclass(frozen=True)
class ReviewTask:
    """One declaration awaiting review, with what was done under it and whether its review is late."""

    declaration: EmergencyDeclaration
    accesses: list[AuditEntry]
    overdue: bool


def review_queue(session: Session, *, policy: PolicyDocument, actor: Actor, clock: Clock = system_clock,
                 ) -> list[ReviewTask]:
    """``open_reviews`` with each declaration's accesses and an overdue flag (due date before today), so
    a reviewer sees what to judge and which reviews are already late (those were reported to misuse)."""
    today = clock.now().date()
    return [ReviewTask(declaration=row, accesses=accesses_under(session, row.id), overdue=row.review_due_on < today)
            for row in open_reviews(session, policy=policy, actor=actor)]
