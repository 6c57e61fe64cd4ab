"""A caller's request beyond the plain answer: a written extension, a written denial, a personal representative.

The laws behind the general deadlines (``subject_requests.deadline``) let an organisation take longer once,
telling the requester why in writing before the first deadline passes (HIPAA 164.524(b)(2)(ii): 30 days
more; GDPR Art. 12(3): two months more), and refuse a request only in writing with the reason (HIPAA
164.524(d)(2)). HIPAA 164.502(g) lets a personal representative act for the individual; staff check their
authority and the request records who they are and which proof was checked.

The written denial is ``service.refuse`` (the one refusal path: status ``refused``, the reason mailed to the
requester as written, audited), which the API, CLI and request page call directly.

Each step is for the queue's staff (``subject_access`` roles, as reviewing and releasing), is audited, and
mails the requester. The caller commits.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from callvault.core.clock import Clock, system_clock
from callvault.core.errors import AccessDenied, Conflict, FieldProblem, InvalidInput
from callvault.notify import service as notify
from callvault.policy.decide import Actor
from callvault.policy.schema import PolicyDocument
from callvault.subject_requests import service
from callvault.subject_requests.models import RequestStatus, SubjectRequest

_OPEN = (RequestStatus.TO_REVIEW, RequestStatus.READY)


def _staff_only(session: Session, policy: PolicyDocument, actor: Actor, action: str, request_id: str,
                source_ip: str | None, clock: Clock) -> SubjectRequest:
    denial = service.staff_denial(policy, actor)
    if denial is not None:
        service.audit_staff_denial(session, actor=actor, action=action, reason=denial, object_id=request_id,
                                   source_ip=source_ip, clock=clock)
        raise AccessDenied(denial, clauses=service.CLAUSES)
    row = service.get(session, request_id)
    if row.requester_user_id and row.requester_user_id == actor.user_id:
        raise AccessDenied("you cannot decide your own request; another member of the team must",
                           clauses=service.CLAUSES)
    return row


def _reason(reason: str, what: str) -> str:
    text = reason.strip()
    if len(text) < 10:
        raise InvalidInput(f"a {what} must be explained in writing:",
                           [FieldProblem("reason", "say why, in a sentence the requester can read")])
    return text


def extend(session: Session, *, policy: PolicyDocument, actor: Actor, request_id: str, reason: str,
           source_ip: str | None = None, clock: Clock = system_clock) -> SubjectRequest:
    """Push the deadline back by the policy's extension, once, before it passes; the reason is mailed."""
    row = _staff_only(session, policy, actor, "extend", request_id, source_ip, clock)
    deadline = policy.subject_requests.effective_deadline
    text = _reason(reason, "deadline extension")
    if not deadline.extendable:
        raise Conflict(f"policy {policy.policy_id} {policy.version} allows no extension of the "
                       f"{deadline.describe()} deadline (subject_requests.deadline names none)")
    if row.status not in _OPEN or row.verified_at is None:
        raise Conflict(f"this request is {row.status}; only an open request's deadline can be extended")
    if row.extended_at is not None:
        raise Conflict(f"this request's deadline was already extended on {row.extended_at:%d %B %Y}; "
                       "the policy allows one extension")
    now = clock.now()
    if row.due_at is not None and row.due_at <= now:
        raise Conflict(f"the deadline passed on {row.due_on}; an extension must be sent before it passes")
    before = row.due_on
    cal = service.calendar_of(policy, row)
    row.due_on, row.due_at = cal.due_by(row.verified_at, deadline, extended=True)
    row.extended_at, row.extended_by, row.extension_reason = now, actor.username, text
    row.reminders_sent = []
    notify.enqueue(session, to=row.email, subject=f"Your request for recordings: we need until {row.due_on}",
                   dedup_key=f"subject:{row.id}:extended", clock=clock, body=(
        f"We need more time to answer your request {row.id}. We will answer by {row.due_on:%A %d %B %Y} "
        f"(instead of {before:%A %d %B %Y}).\n\nWhy: {text}\n"))
    service._event(session, actor=actor.username, role=actor.role, action="extended", row=row,
                   source_ip=source_ip, details={"from": str(before), "to": str(row.due_on), "reason": text},
                   clock=clock)
    return row


def record_representative(session: Session, *, policy: PolicyDocument, actor: Actor, request_id: str, name: str,
                          relationship: str, proof_kind: str, source_ip: str | None = None,
                          clock: Clock = system_clock) -> SubjectRequest:
    """Record that ``name`` acts for the caller, and which proof of their authority staff checked."""
    row = _staff_only(session, policy, actor, "representative", request_id, source_ip, clock)
    rules = policy.subject_requests.representatives
    if not rules.allowed:
        raise Conflict(f"policy {policy.policy_id} {policy.version} does not take requests from representatives "
                       "(subject_requests.representatives.allowed is false)")
    problems = []
    if not name.strip():
        problems.append(FieldProblem("name", "the representative's name"))
    if not relationship.strip():
        problems.append(FieldProblem("relationship", "how they act for the caller, e.g. parent, attorney"))
    if proof_kind not in rules.proof_kinds:
        problems.append(FieldProblem("proof_kind", f"one of {', '.join(rules.proof_kinds)}"))
    if problems:
        raise InvalidInput("the representative cannot be recorded:", problems)
    if row.status not in _OPEN and row.status != RequestStatus.AWAITING_VERIFICATION:
        raise Conflict(f"this request is {row.status}; a representative is recorded before it is answered")
    now = clock.now()
    row.representative = {"name": name.strip()[:200], "relationship": relationship.strip()[:200],
                          "proof_kind": proof_kind, "checked_by": actor.username, "checked_at": now.isoformat()}
    service._event(session, actor=actor.username, role=actor.role, action="representative", row=row,
                   source_ip=source_ip, details={"relationship": row.representative["relationship"],
                                                "proof_kind": proof_kind}, clock=clock)
    return row
