"""Internal access requests (B6, B9), the caller's grants, and employees' own consents (A6)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from callvault.access import consents
from callvault.access import service as access
from callvault.access.models import AccessGrant, AccessRequest, RequestStatus
from callvault.api.deps import Caller, get_caller, get_runtime
from callvault.core.errors import AccessDenied, NotFound
from callvault.identity import service as identity
from callvault.notify.service import SmtpSettings
from callvault.policy.schema import PolicyDocument
from callvault.quality import training
from callvault.runtime import Runtime

router = APIRouter(tags=["access"])

GrantAction = Literal["play", "transcript", "download", "export"]


def _listen_and_read() -> list[GrantAction]:
    return ["play", "transcript"]


class AccessRequestCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    recording_ids: list[str] = Field(min_length=1, max_length=access.MAX_RECORDINGS)
    purpose: str = Field(min_length=1, max_length=64)
    crm_ref: str = Field(min_length=1, max_length=100, description="the CRM ticket this request came through (B6)")
    justification: str = Field(min_length=1, max_length=4000)
    actions: list[GrantAction] = Field(
        default_factory=_listen_and_read, min_length=1,
        description="what the grant should allow; the approver may approve fewer (default: play, transcript)")
    grant_days: int = Field(default=access.DEFAULT_GRANT_DAYS, ge=1, le=access.MAX_GRANT_DAYS)


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field(default="", max_length=2000)
    grant_days: int | None = Field(default=None, ge=1, le=access.MAX_GRANT_DAYS)
    actions: list[GrantAction] | None = Field(
        default=None, description="approve only these of the actions asked (default: all of them); ignored "
                                  "when rejecting")


class AccessRequestRead(BaseModel):
    id: str
    requester: str
    purpose: str
    crm_ref: str
    justification: str
    recording_ids: list[str]
    actions: list[str]
    approved_actions: list[str] | None
    grant_days: int
    approver_roles: list[str]
    approvers: list[str] = Field(description="who may decide it now (usernames); empty once decided")
    status: str
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    decision_note: str


class GrantRead(BaseModel):
    id: str
    request_id: str
    recording_id: str
    purpose: str
    actions: list[str]
    approved_by_role: str
    starts_at: datetime
    ends_at: datetime


class ConsentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    purpose: str = Field(min_length=1, max_length=64)


class ConsentRead(BaseModel):
    purpose: str
    given_at: datetime


def _read(session: Session, policy: PolicyDocument, req: AccessRequest) -> AccessRequestRead:
    pending = req.status == RequestStatus.PENDING
    return AccessRequestRead(
        id=req.id, requester=access.requester_name(session, req), purpose=req.purpose, crm_ref=req.crm_ref,
        justification=req.justification, recording_ids=list(req.recording_ids), actions=list(req.actions),
        approved_actions=list(req.approved_actions) if req.approved_actions is not None else None,
        grant_days=req.grant_days, approver_roles=list(req.approver_roles),
        approvers=access.deciders(session, policy=policy, req=req) if pending else [], status=req.status,
        created_at=req.created_at, decided_at=req.decided_at, decided_by=req.decided_by,
        decision_note=req.decision_note)


def _grant(g: AccessGrant) -> GrantRead:
    return GrantRead(id=g.id, request_id=g.request_id, recording_id=g.recording_id, purpose=g.purpose,
                     actions=list(g.actions), approved_by_role=g.approved_by_role, starts_at=g.starts_at,
                     ends_at=g.ends_at)


@router.post("/access-requests", response_model=AccessRequestRead, status_code=201)
def create_request(body: AccessRequestCreate, caller: Caller = Depends(get_caller),
                   runtime: Runtime = Depends(get_runtime)) -> AccessRequestRead:
    """Ask for access to recordings for a purpose that needs approval; routed to the policy's approvers."""
    with runtime.db.unit_of_work() as session:
        req = access.create_request(session, policy=caller.policy, actor=caller.actor, new=access.NewRequest(
            recording_ids=tuple(body.recording_ids), purpose=body.purpose, crm_ref=body.crm_ref,
            justification=body.justification, actions=tuple(body.actions), grant_days=body.grant_days),
            source_ip=caller.source_ip, clock=runtime.clock)
        return _read(session, caller.policy, req)


@router.get("/access-requests", response_model=list[AccessRequestRead])
def list_requests(
    caller: Caller = Depends(get_caller), runtime: Runtime = Depends(get_runtime),
    status: Annotated[Literal["pending", "approved", "rejected", "expired", "cancelled"] | None,
                      Query(description="e.g. pending: what waits for you (approvers)")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[AccessRequestRead]:
    """Your own requests, and the requests your role may decide."""
    with runtime.db.unit_of_work() as session:
        rows = access.visible_requests(session, actor=caller.actor, status=status, limit=limit)
        return [_read(session, caller.policy, r) for r in rows]


@router.get("/access-requests/{request_id}", response_model=AccessRequestRead)
def get_request(request_id: str, caller: Caller = Depends(get_caller),
                runtime: Runtime = Depends(get_runtime)) -> AccessRequestRead:
    with runtime.db.unit_of_work() as session:
        req = access.get_request(session, request_id)
        if req.requester_id != caller.user.id and caller.user.role not in req.approver_roles:
            raise NotFound("no such access request")
        return _read(session, caller.policy, req)


def _decide(request_id: str, body: Decision, caller: Caller, runtime: Runtime, verb: str) -> AccessRequestRead:
    denied: AccessDenied | None = None
    with runtime.db.unit_of_work() as session:
        try:
            if verb == "approve":
                access.approve(session, policy=caller.policy, actor=caller.actor, request_id=request_id,
                               note=body.note, grant_days=body.grant_days, actions=body.actions,
                               source_ip=caller.source_ip,
                               mail_domain=SmtpSettings.from_env(runtime.settings.env).mail_domain,
                               clock=runtime.clock)
            else:
                access.reject(session, policy=caller.policy, actor=caller.actor, request_id=request_id,
                              note=body.note, source_ip=caller.source_ip, clock=runtime.clock)
        except AccessDenied as exc:
            denied = exc  # the refusal is on the audit log: commit it, then refuse
        else:
            req = access.get_request(session, request_id)
            return _read(session, caller.policy, req)
    raise denied


@router.post("/access-requests/{request_id}/approve", response_model=AccessRequestRead)
def approve(request_id: str, body: Decision | None = None, caller: Caller = Depends(get_caller),
            runtime: Runtime = Depends(get_runtime)) -> AccessRequestRead:
    """Approve (an approver role for the purpose, not the requester unless the policy lets an approver
    self-authorise with a written ``note``): creates time-boxed grants carrying the approved actions."""
    return _decide(request_id, body or Decision(), caller, runtime, "approve")


@router.post("/access-requests/{request_id}/reject", response_model=AccessRequestRead)
def reject(request_id: str, body: Decision, caller: Caller = Depends(get_caller),
           runtime: Runtime = Depends(get_runtime)) -> AccessRequestRead:
    """Reject with a note saying why."""
    return _decide(request_id, body, caller, runtime, "reject")


@router.get("/grants", response_model=list[GrantRead])
def my_grants(caller: Caller = Depends(get_caller), runtime: Runtime = Depends(get_runtime)) -> list[GrantRead]:
    """Your grants in force now."""
    with runtime.db.unit_of_work() as session:
        return [_grant(g) for g in access.active_grants(session, user_id=caller.user.id, now=runtime.clock.now())]


@router.post("/grants/{grant_id}/revoke", response_model=GrantRead)
def revoke_grant(grant_id: str, caller: Caller = Depends(get_caller),
                 runtime: Runtime = Depends(get_runtime)) -> GrantRead:
    """End a grant early (its holder, or an approver for its purpose)."""
    denied: AccessDenied | None = None
    with runtime.db.unit_of_work() as session:
        try:
            return _grant(access.revoke_grant(session, policy=caller.policy, actor=caller.actor, grant_id=grant_id,
                                              source_ip=caller.source_ip, clock=runtime.clock))
        except AccessDenied as exc:
            denied = exc  # the refusal is on the audit log: commit it, then refuse
    raise denied


@router.get("/me/consents", response_model=list[ConsentRead])
def my_consents(caller: Caller = Depends(get_caller), runtime: Runtime = Depends(get_runtime)) -> list[ConsentRead]:
    """The purposes you have consented to your recordings being used for (A6)."""
    with runtime.db.unit_of_work() as session:
        user = identity.get_user(session, caller.user.username)
        return [ConsentRead(purpose=c.purpose, given_at=c.given_at) for c in consents.active(session, user=user)]


@router.post("/me/consents", response_model=ConsentRead, status_code=201)
def give_consent(body: ConsentCreate, caller: Caller = Depends(get_caller),
                 runtime: Runtime = Depends(get_runtime)) -> ConsentRead:
    """Consent to your recordings being used for a purpose (e.g. training, A6); revocable."""
    with runtime.db.unit_of_work() as session:
        user = identity.get_user(session, caller.user.username)
        row = consents.give(session, user=user, purpose=body.purpose, policy=caller.policy,
                            actor=caller.user.username, source_ip=caller.source_ip, clock=runtime.clock)
        return ConsentRead(purpose=row.purpose, given_at=row.given_at)


@router.delete("/me/consents/{purpose}", status_code=204)
def withdraw_consent(purpose: str, caller: Caller = Depends(get_caller),
                     runtime: Runtime = Depends(get_runtime)) -> None:
    """Withdraw a consent; effective at once."""
    with runtime.db.unit_of_work() as session:
        user = identity.get_user(session, caller.user.username)
        consents.revoke(session, user=user, purpose=purpose, actor=caller.user.username,
                        source_ip=caller.source_ip, clock=runtime.clock)
        # A6: withdrawing training consent withdraws the anonymised clips made from this employee's calls.
        withdrawn = training.withdraw_for_agent(session, keyring=runtime.keyring, agent=user.username,
                                                actor=caller.user.username, clock=runtime.clock) \
            if purpose == training.clip_purpose(caller.policy) else []
    training.delete_blobs(runtime.store, withdrawn)
