"""Internal access requests (B6), purpose-specific approvers (B9), and the time-boxed grants they create.

Contracts:
- A request names recordings, a purpose that needs approval under the policy, the CRM ticket it came
  through (B6) and a justification. The requester's role must be allowed the purpose and each recording
  must be within the requester's scope: a request can never lead to more than ``decide()`` would allow
  with the approval in hand.
- It is routed to the approver roles the policy names for that purpose, or, when the requester holds one
  of them, to the roles the purpose's ``approval.when_requester_is_approver`` names (B9: the approver's
  own investigation). The roles are copied onto the request, so a later policy change does not silently
  re-route it; approval is re-checked against the policy in force. ``deciders`` names the people who may
  decide it now, so a request whose only approver is its requester says so instead of waiting for ever.
- Nobody approves their own request, except where the purpose's rule is ``self_authorise_and_report``:
  the approver-role holder authorises it with a written reason, and a misuse report goes to the policy's
  recipients (B12). With ``forbid_own_recordings`` an approver cannot approve access to recordings of
  their own calls either.
- A request names the actions it needs (play, transcript, download, export); the approver approves all of
  them or fewer. Approval creates one grant per recording carrying exactly the approved actions, ending
  after ``grant_days``. Rejections, approvals, lapses and grant expiries are audited.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from callvault.access.models import AccessGrant, AccessRequest, RequestStatus
from callvault.audit import service as audit
from callvault.core.clock import Clock, system_clock
from callvault.core.errors import AccessDenied, Conflict, FieldProblem, InvalidInput, NotFound
from callvault.core.ids import new_id
from callvault.identity.models import User
from callvault.oversight import service as oversight
from callvault.policy.decide import GRANTABLE_ACTIONS, Action, Actor, Grant, decide, role_title
from callvault.policy.schema import PolicyDocument
from callvault.recordings.models import Recording
from callvault.recordings.service import facts

DEFAULT_GRANT_DAYS = 7
MAX_GRANT_DAYS = 90
MAX_RECORDINGS = 200
PENDING_LAPSE_DAYS = 30
"""A request nobody decided within this many days lapses (expired), so stale approvals are not given."""
REMIND_AFTER_HOURS = 24
DEFAULT_ACTIONS: tuple[str, ...] = ("play", "transcript")
"""What a request that names no actions asks for: to listen and to read what was said."""
SELF_AUTHORISATION_MIN_CHARS = 20
"""A self-authorisation needs a written reason at least this long: it is what the misuse recipients read."""
SELF_AUTHORISED_RULE = "self_authorised_access"
"""The misuse report's rule for an approver authorising their own request."""
forbid_own_recordings = True
"""An approver may not approve access to recordings of their own calls (conflict of interest)."""


@dataclass(frozen=True)
class NewRequest:
    """What a requester asks for."""

    recording_ids: tuple[str, ...]
    purpose: str
    crm_ref: str
    justification: str
    actions: tuple[str, ...] = DEFAULT_ACTIONS
    grant_days: int = DEFAULT_GRANT_DAYS


def _audit(session: Session, clock: Clock, **fields: object) -> None:
    audit.append(session, audit.AuditEvent(**fields), clock=clock)  # type: ignore[arg-type]


def _validate(policy: PolicyDocument, actor: Actor, new: NewRequest) -> list[FieldProblem]:
    problems: list[FieldProblem] = []
    rule = policy.purposes.get(new.purpose)
    if rule is None:
        problems.append(FieldProblem("purpose", f"{new.purpose!r} is not a purpose in the policy"))
    elif not rule.approval.required:
        problems.append(FieldProblem("purpose", f"{new.purpose!r} needs no approval; use it directly"))
    elif actor.role not in rule.roles:
        problems.append(FieldProblem("purpose", f"role {actor.role!r} may not use {new.purpose!r}; it is open to "
                                                f"{', '.join(rule.roles)}"))
    if not new.crm_ref.strip():
        problems.append(FieldProblem("crm_ref", "name the CRM ticket this request came through (B6)"))
    if len(new.crm_ref) > 100:
        problems.append(FieldProblem("crm_ref", "at most 100 characters"))
    if len(new.justification.strip()) < 10:
        problems.append(FieldProblem("justification", "say in a sentence why access is needed"))
    if not new.recording_ids:
        problems.append(FieldProblem("recording_ids", "name at least one recording"))
    if len(new.recording_ids) > MAX_RECORDINGS:
        problems.append(FieldProblem("recording_ids", f"at most {MAX_RECORDINGS} recordings per request"))
    bad = [a for a in new.actions if a not in GRANTABLE_ACTIONS]
    if not new.actions or bad:
        problems.append(FieldProblem("actions", f"choose from {', '.join(GRANTABLE_ACTIONS)}"))
    if not 1 <= new.grant_days <= MAX_GRANT_DAYS:
        problems.append(FieldProblem("grant_days", f"between 1 and {MAX_GRANT_DAYS} days"))
    return problems


def create_request(
    session: Session, *, policy: PolicyDocument, actor: Actor, new: NewRequest, source_ip: str | None = None,
    clock: Clock = system_clock,
) -> AccessRequest:
    """File a request; InvalidInput naming the field when it cannot lead anywhere."""
    problems = _validate(policy, actor, new)
    ids = tuple(dict.fromkeys(new.recording_ids))
    if not problems:
        for i, rec_id in enumerate(ids):
            row = session.get(Recording, rec_id)
            # What decide() says *apart from* the approval: any other denial would survive approval too.
            if row is None or row.state != "available":
                problems.append(FieldProblem(f"recording_ids[{i}]", "no such recording"))
                continue
            check = decide(policy=policy, actor=actor, action=Action.VIEW_METADATA, recording=facts(row), purpose=None)
            if not check.allowed:
                problems.append(FieldProblem(f"recording_ids[{i}]", "no such recording"))
    if problems:
        raise InvalidInput("cannot file the access request:", problems)
    rule = policy.purposes[new.purpose]
    req = AccessRequest(
        id=new_id(), requester_id=actor.user_id, purpose=new.purpose, crm_ref=new.crm_ref.strip(),
        justification=new.justification.strip(), recording_ids=list(ids), actions=sorted(set(new.actions)),
        grant_days=new.grant_days, approver_roles=list(rule.approval.approvers_for(actor.role)),
        status=RequestStatus.PENDING,
        created_at=clock.now(), decision_note="",
    )
    session.add(req)
    session.flush()
    _audit(session, clock, actor=actor.username, actor_role=actor.role, action="access.requested",
           object_type="access_request", object_id=req.id, purpose=new.purpose, source_ip=source_ip,
           clauses=("B6", "B9", *rule.clause_ids),
           details={"crm_ref": req.crm_ref, "recordings": len(ids), "actions": req.actions,
                    "approver_roles": req.approver_roles, "grant_days": req.grant_days})
    return req


def get_request(session: Session, request_id: str) -> AccessRequest:
    req = session.get(AccessRequest, request_id)
    if req is None:
        raise NotFound("no such access request")
    return req


def visible_requests(
    session: Session, *, actor: Actor, status: str | None = None, limit: int = 100
) -> list[AccessRequest]:
    """The caller's own requests and those their role may decide (approvers see pending work)."""
    stmt = select(AccessRequest).order_by(AccessRequest.created_at.desc()).limit(limit)
    if status:
        stmt = stmt.where(AccessRequest.status == status)
    rows = session.scalars(stmt.where(or_(AccessRequest.requester_id == actor.user_id,
                                          AccessRequest.status.is_not(None))))
    return [r for r in rows if r.requester_id == actor.user_id or actor.role in r.approver_roles]


def deciders(session: Session, *, policy: PolicyDocument, req: AccessRequest) -> list[str]:
    """Who may decide ``req`` now: active users in its approver roles, never its requester (unless the
    policy lets an approver self-authorise) nor, with ``forbid_own_recordings``, the agent of a call in it."""
    rule = policy.purposes.get(req.purpose)
    requester = session.get(User, req.requester_id)
    self_ok = rule is not None and requester is not None and rule.approval.may_self_authorise(requester.role)
    conflicted: set[str | None] = set()
    if forbid_own_recordings:
        conflicted = set(session.scalars(select(Recording.agent).where(Recording.id.in_(req.recording_ids))))
    users = session.scalars(select(User).where(User.role.in_(req.approver_roles), User.active.is_(True))
                            .order_by(User.username))
    return [u.username for u in users
            if (u.id != req.requester_id or self_ok) and u.username not in conflicted]


def _who_decides(session: Session, policy: PolicyDocument, req: AccessRequest) -> str:
    names = [n for n in deciders(session, policy=policy, req=req) if n != requester_name(session, req)]
    roles = " or ".join(role_title(r) for r in req.approver_roles)
    if names:
        return f"{', '.join(names)} ({roles}) may decide it"
    return (f"nobody else can decide it yet: no other active user holds {roles}; an administrator must give that "
            "role to someone, or the policy must say who decides an approver's own request "
            "(approval.when_requester_is_approver)")


def _decider_problem(
    policy: PolicyDocument, actor: Actor, req: AccessRequest, session: Session, verb: str
) -> str | None:
    rule = policy.purposes.get(req.purpose)
    requester = session.get(User, req.requester_id)
    approvers = (rule.approval.approvers_for(requester.role if requester else "")
                 if rule is not None and rule.approval.required else ())
    if req.requester_id == actor.user_id:
        if verb == "approve" and rule is not None and rule.approval.may_self_authorise(actor.role) \
                and actor.role in req.approver_roles:
            return None
        return f"nobody may approve or reject their own access request (B9); {_who_decides(session, policy, req)}"
    if actor.role not in approvers or actor.role not in req.approver_roles:
        names = " or ".join(role_title(r) for r in (approvers or req.approver_roles))
        return f"only {names} may decide this request for purpose {req.purpose!r}"
    if forbid_own_recordings:
        agents = set(session.scalars(select(Recording.agent).where(Recording.id.in_(req.recording_ids))))
        if actor.username in agents:
            return "this request includes recordings of your own calls; another approver must decide it"
    return None


def _decide_request(
    session: Session, *, policy: PolicyDocument, actor: Actor, request_id: str, source_ip: str | None,
    clock: Clock, verb: str,
) -> AccessRequest:
    req = get_request(session, request_id)
    problem = _decider_problem(policy, actor, req, session, verb)
    if problem is not None:
        _audit(session, clock, actor=actor.username, actor_role=actor.role, action=f"access.{verb}",
               decision="deny", object_type="access_request", object_id=req.id, purpose=req.purpose,
               reason=problem, source_ip=source_ip, clauses=("B6", "B9"))
        raise AccessDenied(problem, clauses=("B6", "B9"))
    if req.status != RequestStatus.PENDING:
        raise Conflict(f"this request is already {req.status}")
    return req


def _approved_actions(req: AccessRequest, actions: Sequence[str] | None) -> list[str]:
    """What the approver approves: everything asked (None) or a non-empty part of it, never more."""
    if actions is None:
        return list(req.actions)
    chosen = sorted(set(actions))
    if not chosen or any(a not in req.actions for a in chosen):
        raise InvalidInput("cannot approve:", [FieldProblem(
            "actions", f"approve one or more of the actions asked for: {', '.join(req.actions)}")])
    return chosen


def approve(
    session: Session, *, policy: PolicyDocument, actor: Actor, request_id: str, note: str = "",
    grant_days: int | None = None, actions: Sequence[str] | None = None, source_ip: str | None = None,
    mail_domain: str = "localhost", clock: Clock = system_clock,
) -> list[AccessGrant]:
    """Approve a pending request: one grant per recording, carrying the approved ``actions`` (all those
    asked when None), ending after the granted days.

    A refused attempt (wrong role, own request) is audited; the caller commits before refusing. Where the
    policy lets an approver authorise their own request, ``note`` is the written reason it needs, and
    the authorisation is reported to the misuse recipients (B12).
    """
    req = _decide_request(session, policy=policy, actor=actor, request_id=request_id, source_ip=source_ip,
                          clock=clock, verb="approve")
    days = req.grant_days if grant_days is None else grant_days
    if not 1 <= days <= min(req.grant_days, MAX_GRANT_DAYS):
        raise InvalidInput("cannot approve:", [FieldProblem(
            "grant_days", f"between 1 and {req.grant_days} (what was requested)")])
    approved = _approved_actions(req, actions)
    own = req.requester_id == actor.user_id
    if own and len(note.strip()) < SELF_AUTHORISATION_MIN_CHARS:
        raise InvalidInput("cannot authorise your own request:", [FieldProblem(
            "note", f"write why you authorise it yourself (at least {SELF_AUTHORISATION_MIN_CHARS} characters); "
                    f"it is reported to {', '.join(role_title(r) for r in policy.misuse.report_to_roles)} (B12)")])
    now = clock.now()
    req.status, req.decided_at, req.decided_by, req.decision_note = (
        RequestStatus.APPROVED, now, actor.username, note.strip()[:2000])
    req.approved_actions = approved
    grants = [AccessGrant(
        id=new_id(), request_id=req.id, user_id=req.requester_id, recording_id=rec_id, purpose=req.purpose,
        actions=list(approved), approved_by_id=actor.user_id, approved_by_role=actor.role, starts_at=now,
        ends_at=now + timedelta(days=days)) for rec_id in req.recording_ids]
    session.add_all(grants)
    session.flush()
    entry = audit.append(session, audit.AuditEvent(
        actor=actor.username, actor_role=actor.role, action="access.approved", decision="allow",
        object_type="access_request", object_id=req.id, purpose=req.purpose, source_ip=source_ip,
        reason=note.strip()[:500], clauses=("B6", "B9", "B12") if own else ("B6", "B9"),
        details={"grants": [g.id for g in grants], "ends_at": grants[0].ends_at.isoformat(),
                 "actions": approved, "requested_actions": list(req.actions), "self_authorised": own}), clock=clock)
    if own:
        oversight.file_report(
            session, policy=policy, reporter=oversight.Reporter(username="system", role="system"),
            summary=f"{actor.username} authorised their own access request for purpose {req.purpose!r}",
            description=(f"{actor.username} ({actor.role}) authorised their own request {req.id} (CRM "
                         f"{req.crm_ref}) to {', '.join(approved)} {len(req.recording_ids)} recording(s) for "
                         f"{req.purpose!r} for {days} days, as policy {policy.policy_id} allows "
                         "(approval.when_requester_is_approver: self_authorise_and_report). Their reason: "
                         f"{note.strip()[:1500]}"),
            subject_user=actor.username, evidence=[entry.seq], source="detection", rule=SELF_AUTHORISED_RULE,
            dedup_key=f"{SELF_AUTHORISED_RULE}:{req.id}", mail_domain=mail_domain, clock=clock)
    return grants


def reject(
    session: Session, *, policy: PolicyDocument, actor: Actor, request_id: str, note: str,
    source_ip: str | None = None, clock: Clock = system_clock,
) -> AccessRequest:
    """Reject a pending request, saying why (the requester sees the note)."""
    if not note.strip():
        raise InvalidInput("cannot reject:", [FieldProblem("note", "say why the request is rejected")])
    req = _decide_request(session, policy=policy, actor=actor, request_id=request_id, source_ip=source_ip,
                          clock=clock, verb="reject")
    req.status, req.decided_at, req.decided_by, req.decision_note = (
        RequestStatus.REJECTED, clock.now(), actor.username, note.strip()[:2000])
    _audit(session, clock, actor=actor.username, actor_role=actor.role, action="access.rejected", decision="deny",
           object_type="access_request", object_id=req.id, purpose=req.purpose, source_ip=source_ip,
           reason=note.strip()[:500], clauses=("B6", "B9"))
    return req


def open_requests_naming(session: Session, *, recording_id: str, now: datetime) -> list[str]:
    """Ids of access requests on ``recording_id`` still in hand at ``now``: pending, or approved with a
    grant in force. While one is, the recording is wanted for the purpose it names (B6, B9)."""
    pending = [r.id for r in session.scalars(select(AccessRequest).where(
        AccessRequest.status == RequestStatus.PENDING).order_by(AccessRequest.created_at))
        if recording_id in (r.recording_ids or [])]
    granted = list(session.scalars(select(AccessGrant.request_id).where(
        AccessGrant.recording_id == recording_id, AccessGrant.revoked_at.is_(None), AccessGrant.ends_at > now)))
    return list(dict.fromkeys([*pending, *granted]))


def active_grants(session: Session, *, user_id: str, now: datetime) -> list[AccessGrant]:
    """Grants of ``user_id`` in force at ``now`` (started, not ended, not revoked)."""
    return list(session.scalars(select(AccessGrant).where(
        AccessGrant.user_id == user_id, AccessGrant.revoked_at.is_(None), AccessGrant.starts_at <= now,
        AccessGrant.ends_at > now).order_by(AccessGrant.ends_at)))


def grants_for_decision(
    session: Session, *, user_id: str, recording_id: str, now: datetime
) -> tuple[Grant, ...]:
    """The policy engine's view of the user's grants in force on one recording."""
    rows = session.scalars(select(AccessGrant).where(
        AccessGrant.user_id == user_id, AccessGrant.recording_id == recording_id, AccessGrant.revoked_at.is_(None),
        AccessGrant.starts_at <= now, AccessGrant.ends_at > now))
    return tuple(Grant(grant_id=g.id, user_id=g.user_id, recording_id=g.recording_id, purpose=g.purpose,
                       approved_by_role=g.approved_by_role, actions=frozenset(g.actions), ends_at=g.ends_at,
                       approved_by=g.approved_by_id) for g in rows)


def revoke_grant(
    session: Session, *, policy: PolicyDocument, actor: Actor, grant_id: str, source_ip: str | None = None,
    clock: Clock = system_clock,
) -> AccessGrant:
    """End a grant early: its holder, or anyone whose role may approve the holder's requests for the purpose.

    A refusal is audited (decision ``deny``) before ``AccessDenied`` is raised: the caller commits it.
    """
    grant = session.get(AccessGrant, grant_id)
    if grant is None:
        raise NotFound("no such grant")
    rule = policy.purposes.get(grant.purpose)
    holder = session.get(User, grant.user_id)
    # Those who could approve the holder's request (B9: for an approver's own, the policy's alternates).
    approvers = rule.approval.approvers_for(holder.role if holder else "") if rule is not None else ()
    if grant.user_id != actor.user_id and actor.role not in approvers:
        problem = "only the holder or an approver for this purpose may revoke the grant"
        _audit(session, clock, actor=actor.username, actor_role=actor.role, action="access.grant_revoked",
               decision="deny", object_type="access_grant", object_id=grant.id, purpose=grant.purpose,
               reason=problem, source_ip=source_ip, clauses=("B6", "B9"))
        raise AccessDenied(problem, clauses=("B6", "B9"))
    if grant.revoked_at is None:
        grant.revoked_at, grant.revoked_by = clock.now(), actor.username
        _audit(session, clock, actor=actor.username, actor_role=actor.role, action="access.grant_revoked",
               object_type="access_grant", object_id=grant.id, purpose=grant.purpose, source_ip=source_ip,
               clauses=("B6", "B9"), details={"recording_id": grant.recording_id})
    return grant


def end_for_ticket(
    session: Session, *, request_id: str, actor: str, reason: str, clock: Clock = system_clock,
) -> tuple[int, bool]:
    """The CRM ticket behind a request is finished: its grants end now and, if still pending, it is
    cancelled. Only ever reduces access, so an integration may do it. Returns (grants ended, cancelled)."""
    req = get_request(session, request_id)
    now = clock.now()
    cancelled = False
    if req.status == RequestStatus.PENDING:
        req.status, req.decided_at, req.decided_by = RequestStatus.CANCELLED, now, actor[:64]
        req.decision_note = reason.strip()[:2000]
        cancelled = True
        _audit(session, clock, actor=actor, actor_role="integration", action="access.request_cancelled",
               decision="deny", object_type="access_request", object_id=req.id, purpose=req.purpose,
               reason=reason[:500], clauses=("B6",), details={"crm_ref": req.crm_ref})
    grants = list(session.scalars(select(AccessGrant).where(
        AccessGrant.request_id == req.id, AccessGrant.revoked_at.is_(None), AccessGrant.ends_at > now)))
    for grant in grants:
        grant.revoked_at, grant.revoked_by = now, actor[:64]
        _audit(session, clock, actor=actor, actor_role="integration", action="access.grant_revoked",
               object_type="access_grant", object_id=grant.id, purpose=grant.purpose, reason=reason[:500],
               clauses=("B6", "B9"), details={"recording_id": grant.recording_id, "crm_ref": req.crm_ref})
    return len(grants), cancelled


def record_expiries(session: Session, *, clock: Clock = system_clock, limit: int = 500) -> int:
    """Put ended grants and lapsed pending requests on the audit log, once each (a job)."""
    now = clock.now()
    done = 0
    grants = session.scalars(select(AccessGrant).where(
        AccessGrant.ends_at <= now, AccessGrant.expiry_recorded_at.is_(None), AccessGrant.revoked_at.is_(None))
        .limit(limit).with_for_update(skip_locked=True))
    for grant in grants:
        grant.expiry_recorded_at = now
        _audit(session, clock, actor="system", action="access.grant_expired", object_type="access_grant",
               object_id=grant.id, purpose=grant.purpose, clauses=("B6", "B9"),
               details={"recording_id": grant.recording_id, "ended_at": grant.ends_at.isoformat()})
        done += 1
    lapsed = session.scalars(select(AccessRequest).where(
        AccessRequest.status == RequestStatus.PENDING,
        AccessRequest.created_at <= now - timedelta(days=PENDING_LAPSE_DAYS)).limit(limit)
        .with_for_update(skip_locked=True))
    for req in lapsed:
        req.status, req.decided_at, req.decided_by = RequestStatus.EXPIRED, now, "system"
        req.decision_note = f"nobody decided it within {PENDING_LAPSE_DAYS} days"
        _audit(session, clock, actor="system", action="access.request_expired", decision="deny",
               object_type="access_request", object_id=req.id, purpose=req.purpose, reason=req.decision_note,
               clauses=("B6", "B9"))
        done += 1
    return done


def remind_waiting(
    session: Session, *, clock: Clock = system_clock, after_hours: int = REMIND_AFTER_HOURS, limit: int = 500
) -> list[AccessRequest]:
    """Flag pending requests waiting longer than ``after_hours`` (once per waiting period); audited.

    The audit entry names the approver roles, so the oversight/notification side can mail them.
    """
    now = clock.now()
    cutoff = now - timedelta(hours=after_hours)
    rows = list(session.scalars(select(AccessRequest).where(
        AccessRequest.status == RequestStatus.PENDING, AccessRequest.created_at <= cutoff,
        or_(AccessRequest.reminded_at.is_(None), AccessRequest.reminded_at <= cutoff))
        .limit(limit).with_for_update(skip_locked=True)))
    for req in rows:
        req.reminded_at = now
        waited = now - req.created_at
        _audit(session, clock, actor="system", action="access.reminder", object_type="access_request",
               object_id=req.id, purpose=req.purpose, clauses=("B6", "B9"),
               reason=f"waiting {int(waited.total_seconds() // 3600)} hours for {' or '.join(req.approver_roles)}",
               details={"approver_roles": req.approver_roles, "crm_ref": req.crm_ref})
    return rows


def requester_name(session: Session, req: AccessRequest) -> str:
    user = session.get(User, req.requester_id)
    return user.username if user else "(deleted)"
