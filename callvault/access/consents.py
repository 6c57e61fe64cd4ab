"""Employees' consents to purposes (A6: training needs the recorded employee's consent on file).

Kept apart from ``access.service`` so ``recordings.service`` can look consents up without an import
cycle (access requests read recordings; recordings read consents).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from callvault.access.models import EmployeeConsent
from callvault.audit import service as audit
from callvault.core.clock import Clock, system_clock
from callvault.core.errors import FieldProblem, InvalidInput, NotFound
from callvault.core.ids import new_id
from callvault.identity.models import User
from callvault.policy.schema import PolicyDocument


def consents_of_agent(session: Session, agent: str | None) -> frozenset[str]:
    """Purposes the employee named ``agent`` (their username, as in call metadata) has consented to now."""
    if not agent:
        return frozenset()
    rows = session.scalars(
        select(EmployeeConsent.purpose).join(User, User.id == EmployeeConsent.user_id)
        .where(User.username == agent.lower(), EmployeeConsent.revoked_at.is_(None)))
    return frozenset(rows)


def active(session: Session, *, user: User) -> list[EmployeeConsent]:
    return list(session.scalars(select(EmployeeConsent).where(
        EmployeeConsent.user_id == user.id, EmployeeConsent.revoked_at.is_(None)).order_by(EmployeeConsent.purpose)))


def give(
    session: Session, *, user: User, purpose: str, policy: PolicyDocument, actor: str, source_ip: str | None = None,
    clock: Clock = system_clock,
) -> EmployeeConsent:
    """Record that ``user`` consents to their recordings being used for ``purpose`` (idempotent)."""
    if purpose not in policy.purposes:
        raise InvalidInput("cannot record the consent:", [FieldProblem(
            "purpose", f"{purpose!r} is not a purpose in the policy; choose one of {', '.join(policy.purposes)}")])
    existing = session.scalar(select(EmployeeConsent).where(
        EmployeeConsent.user_id == user.id, EmployeeConsent.purpose == purpose, EmployeeConsent.revoked_at.is_(None)))
    if existing is not None:
        return existing
    row = EmployeeConsent(id=new_id(), user_id=user.id, purpose=purpose, given_at=clock.now(), recorded_by=actor[:64])
    session.add(row)
    session.flush()
    audit.append(session, audit.AuditEvent(
        actor=actor, action="consent.given", object_type="user", object_id=user.id, purpose=purpose,
        details={"employee": user.username}, source_ip=source_ip, clauses=("A6",)), clock=clock)
    return row


def revoke(
    session: Session, *, user: User, purpose: str, actor: str, source_ip: str | None = None,
    clock: Clock = system_clock,
) -> None:
    """Withdraw a consent; from now on the purpose cannot use this employee's recordings."""
    row = session.scalar(select(EmployeeConsent).where(
        EmployeeConsent.user_id == user.id, EmployeeConsent.purpose == purpose, EmployeeConsent.revoked_at.is_(None)))
    if row is None:
        raise NotFound(f"{user.username} has no consent to {purpose!r} on file")
    row.revoked_at, row.revoked_by = clock.now(), actor[:64]
    audit.append(session, audit.AuditEvent(
        actor=actor, action="consent.revoked", object_type="user", object_id=user.id, purpose=purpose,
        details={"employee": user.username}, source_ip=source_ip, clauses=("A6",)), clock=clock)
