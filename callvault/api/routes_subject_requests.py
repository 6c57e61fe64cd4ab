"""Subject requests over HTTP (B7, B10): the public intake and verification, the staff queue, review and
release, and operators' requests for their own recordings. See ``callvault.subject_requests.service``."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from callvault.api.deps import Caller, get_caller, get_runtime, require_step_up, source_ip
from callvault.core.clock import Clock
from callvault.core.errors import AccessDenied, FieldProblem, InvalidInput
from callvault.core.ids import new_id
from callvault.identity.models import User
from callvault.notify.service import SmtpSettings
from callvault.policy import service as policy_service
from callvault.retention import shred
from callvault.runtime import Runtime
from callvault.subject_requests import limits, phone, proof, workflow
from callvault.subject_requests import service as subject
from callvault.subject_requests.models import SubjectRequest

router = APIRouter(tags=["subject requests"])

MAX_PUBLIC_BODY = 16 * 1024
"""The public form is a few fields; anything bigger is refused before it is parsed."""


class SubjectRequestCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone_numbers: list[Annotated[str, Field(max_length=40)]] = Field(min_length=1, max_length=subject.MAX_NUMBERS)
    email: str = Field(min_length=3, max_length=subject.MAX_EMAIL)
    date_from: date | None = None
    date_to: date | None = None
    description: str = Field(default="", max_length=subject.MAX_DESCRIPTION)
    call_date: date | None = Field(default=None, description="the date of one of the calls (required when no "
                                                            "code can be sent to the phone)")
    call_time: time | None = Field(default=None, description="its approximate local time, e.g. 14:30")
    agent_first_name: str = Field(default="", max_length=proof.MAX_NAME,
                                  description="the first name of the person you spoke to")
    call_reason: str = Field(default="", max_length=subject.MAX_DESCRIPTION, description="what the call was about")
    website: str = Field(default="", max_length=200, description="leave empty (a trap for robots)")
    asks_for: Literal["copy", "erasure"] = Field(
        default="copy", description="copies of the recordings, or their deletion where the policy's notice "
                                    "promises it (notice.caller_requests)")


class VerifyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=16)


class PhoneVerifyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone_number: str = Field(min_length=3, max_length=40)
    code: str = Field(min_length=1, max_length=16)


class PhoneVerified(BaseModel):
    id: str
    phone_number: str
    message: str


class Accepted(BaseModel):
    id: str
    status: str
    message: str


class Verified(BaseModel):
    id: str
    status: str
    due_on: date | None
    message: str
    phone_codes_sent: list[str] = []
    """Numbers a code was just sent to: confirm each with ``POST /subject-requests/{id}/verify-phone``."""


class ReviewBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    recording_ids: list[str] = Field(max_length=subject.MAX_SELECTION)
    redaction_note: str = Field(default="", max_length=subject.MAX_DESCRIPTION)


class ApproveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    link_days: int = Field(default=subject.LINK_DAYS_DEFAULT, ge=1, le=subject.LINK_DAYS_MAX)
    max_downloads: int = Field(default=subject.DOWNLOADS_DEFAULT, ge=1, le=subject.DOWNLOADS_MAX)
    facts_checked: list[Literal["call_time", "agent_name", "reason"]] = Field(
        default=[], max_length=3,
        description="for recordings of a number the caller did not confirm by phone code: the facts you checked "
                    "against them (recorded on the audit log)")


class ExtendBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=subject.MAX_DESCRIPTION,
                        description="why more time is needed, in words the requester will read (mailed as written)")


class RepresentativeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="who acts for the caller")
    relationship: str = Field(min_length=1, max_length=200, description="e.g. parent, attorney, guardian")
    proof_kind: str = Field(min_length=1, max_length=64,
                            description="the proof of authority staff checked: one of the policy's "
                                        "subject_requests.representatives.proof_kinds")


class RefuseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=subject.MAX_DESCRIPTION,
                        description="why, in words the requester will read: it is mailed to them as written")


class OwnRequestCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    date_from: date | None = None
    date_to: date | None = None
    description: str = Field(default="", max_length=subject.MAX_DESCRIPTION)


class SelectedRecording(BaseModel):
    recording_id: str
    party: str


class LinkRead(BaseModel):
    id: str
    created_at: datetime
    expires_at: datetime
    downloads: int
    max_downloads: int
    revoked_at: datetime | None


class PhoneProofRead(BaseModel):
    phone_number: str
    code_sent: bool
    send_error: str
    verified: bool


class IdentityRead(BaseModel):
    """How far the requester proved the phone number(s) are theirs (``subject_requests.proof``)."""

    phone_verified: bool
    """Every number confirmed by a code sent to it."""
    warning: str | None
    phones: list[PhoneProofRead]
    call_date: date | None
    call_time: time | None
    agent_first_name: str
    call_reason: str
    facts_given: list[str]
    facts_confirmed: list[str] | None
    facts_confirmed_by: str | None


class KeptRecording(BaseModel):
    recording_id: str
    reason: str
    """Why it was not deleted (a legal hold, an open case, the retention minimum…), in full."""


class ErasureRead(BaseModel):
    """What approving an erasure request did (``subject_requests.erasure``)."""

    destroyed: list[str]
    kept: list[KeptRecording]


class SubjectRequestRead(BaseModel):
    id: str
    kind: str
    asks_for: str = "copy"
    """``copy`` or ``erasure`` (only where the policy's notice promises deletion)."""
    erasure: ErasureRead | None = None
    """Set once an erasure request is approved: what was destroyed, what is kept and why."""
    status: str
    """As staff see it: ``overdue`` replaces to_review/ready once the due time has passed."""
    stored_status: str
    phone_numbers: list[str]
    email: str
    requester_username: str | None
    date_from: date | None
    date_to: date | None
    description: str
    region: str
    region_basis: str
    """Why this region's working days count: the number the caller rang, their country, or the default."""
    timezone: str
    received_at: datetime
    verified_at: datetime | None
    due_on: date | None
    due_at: datetime | None
    reviewed_by: str | None
    redaction_note: str
    approved_by: str | None
    refused_by: str | None = None
    refusal_reason: str = ""
    """The reviewer's written reason when the request was refused (mailed to the requester as written)."""
    extended_at: datetime | None = None
    extended_by: str | None = None
    extension_reason: str = ""
    """Why the deadline was extended (mailed to the requester with the new due date)."""
    representative: dict[str, str] | None = None
    """Who acts for the caller (name, relationship, proof_kind, checked_by, checked_at), when staff recorded one."""
    sent_at: datetime | None
    recordings: list[SelectedRecording] = []
    links: list[LinkRead] = []
    identity: IdentityRead | None = None


class FactsRead(BaseModel):
    """How a recording compares with the caller's stated facts: true, false, or null when not stated."""

    call_time: bool | None
    agent_name: bool | None
    call_time_note: str
    agent_note: str


class Candidate(BaseModel):
    id: str
    started_at: datetime
    duration_seconds: float
    direction: str
    remote_number: str | None
    local_number: str | None
    extension: str | None
    agent: str | None
    quarantined: bool
    party: str
    selected: bool
    phone_verified: bool
    """Its number was confirmed by a code; otherwise check ``facts`` before releasing it."""
    facts: FactsRead | None


class Summary(BaseModel):
    counts: dict[str, int]
    overdue: int
    next_due_on: date | None


def _read(session: Session, row: SubjectRequest, now: datetime, *, detail: bool = False) -> SubjectRequestRead:
    out = SubjectRequestRead(
        id=row.id, kind=row.kind, status=subject.display_status(row, now), stored_status=row.status,
        phone_numbers=list(row.phone_numbers), email=row.email, requester_username=row.requester_username,
        date_from=row.date_from, date_to=row.date_to, description=row.description, region=row.region,
        region_basis=row.region_basis,
        timezone=row.timezone, received_at=row.received_at, verified_at=row.verified_at, due_on=row.due_on,
        due_at=row.due_at, reviewed_by=row.reviewed_by, redaction_note=row.redaction_note,
        approved_by=row.approved_by, sent_at=row.sent_at, refused_by=row.refused_by,
        refusal_reason=row.refusal_reason or "", extended_at=row.extended_at, extended_by=row.extended_by,
        extension_reason=row.extension_reason or "", representative=row.representative, asks_for=row.asks_for,
        erasure=ErasureRead.model_validate(row.erasure_outcome) if row.erasure_outcome else None)
    if detail:
        out.recordings = [SelectedRecording(recording_id=s.recording_id, party=s.party)
                          for s in subject.selection(session, row.id)]
        out.links = [LinkRead(id=link.id, created_at=link.created_at, expires_at=link.expires_at,
                              downloads=link.downloads, max_downloads=link.max_downloads, revoked_at=link.revoked_at)
                     for link in subject.links_of(session, row.id)]
        out.identity = identity_of(session, row)
    return out


def identity_of(session: Session, row: SubjectRequest) -> IdentityRead | None:
    if row.kind != "caller":
        return None
    proofs = {p.phone_number: p for p in proof.proofs_of(session, row.id)}
    phones = [PhoneProofRead(phone_number=n, code_sent=bool(proofs[n].sent_at) if n in proofs else False,
                             send_error=proofs[n].send_error if n in proofs else "",
                             verified=n in proofs and proofs[n].verified_at is not None)
              for n in row.phone_numbers]
    warn = proof.needs_warning(session, row)
    return IdentityRead(phone_verified=not warn, warning=proof.UNVERIFIED_WARNING if warn else None, phones=phones,
                        call_date=row.call_date, call_time=row.call_time, agent_first_name=row.agent_first_name,
                        call_reason=row.call_reason, facts_given=proof.given_facts(row),
                        facts_confirmed=row.facts_confirmed, facts_confirmed_by=row.facts_confirmed_by)


def candidate_reads(session: Session, caller: Caller, row: SubjectRequest) -> list[Candidate]:
    """The candidates with, for a caller's request, how each compares with the stated facts."""
    chosen = {s.recording_id for s in subject.selection(session, row.id)}
    proven = proof.verified_numbers(session, row.id)
    out = []
    for r in subject.candidates(session, policy=caller.policy, actor=caller.actor, row=row):
        facts = None
        if row.kind == "caller":
            m = proof.check_facts(session, caller.policy, row, r)
            facts = FactsRead(call_time=m.call_time, agent_name=m.agent_name, call_time_note=m.call_time_note,
                              agent_note=m.agent_note)
        out.append(Candidate(id=r.id, started_at=r.started_at, duration_seconds=r.duration_seconds,
                             direction=r.direction, remote_number=r.remote_number, local_number=r.local_number,
                             extension=r.extension, agent=r.agent, quarantined=r.quarantined,
                             party=subject.party_of(row, r), selected=r.id in chosen,
                             phone_verified=row.kind != "caller" or r.remote_number in proven, facts=facts))
    return out


def rate_limited(exc: limits.RateLimited, clock: Clock) -> JSONResponse:
    retry = max(1, int((exc.until - clock.now()).total_seconds()))
    return JSONResponse({"error": "rate_limited", "message": exc.message}, status_code=429,
                        headers={"Retry-After": str(retry)})


def mail_domain(runtime: Runtime) -> str:
    return SmtpSettings.from_env(runtime.settings.env).mail_domain


def public_url(runtime: Runtime, request: Request) -> str:
    """Where links in mails point: ``CALLVAULT_PUBLIC_URL`` (set it in production), else this request's URL."""
    return runtime.settings.env.get("CALLVAULT_PUBLIC_URL") or str(request.base_url)


def _staff(caller: Caller, runtime: Runtime, action: str, object_id: str = "") -> None:
    """Refuse (after committing the audited denial) anyone the policy does not give subject access to."""
    reason = subject.staff_denial(caller.policy, caller.actor)
    if reason is None:
        return
    with runtime.db.unit_of_work() as session:
        subject.audit_staff_denial(session, actor=caller.actor, action=action, reason=reason, object_id=object_id,
                                   source_ip=caller.source_ip, clock=runtime.clock)
    raise AccessDenied(reason, reason=reason, clauses=subject.CLAUSES)


# ------------------------------------------------------------------------------------------------ public
@router.post("/subject-requests", response_model=Accepted, status_code=202, max_body_size=MAX_PUBLIC_BODY,
             responses={413: {"description": "the request body is over 16 KiB"},
                        429: {"description": "too many requests from this address or for this email"}})
def submit(body: SubjectRequestCreate, request: Request, runtime: Runtime = Depends(get_runtime)) -> JSONResponse:
    """Ask for copies of your own call recordings (no account needed). A code is mailed to ``email``;
    confirm it with ``POST /subject-requests/{id}/verify`` and the request starts.

    Anyone can reach this, so the body limit is enforced while it is read (``max_body_size``: a
    chunked body without Content-Length is cut off at 16 KiB too), before anything parses it."""
    message = "if the address is right, a verification code is on its way to it"
    if body.website:
        # A robot filled the hidden field: answer exactly as for a person, store and send nothing.
        return JSONResponse(Accepted(id=new_id(), status="awaiting_verification", message=message).model_dump(),
                            status_code=202)
    new = subject.NewRequest(phone_numbers=body.phone_numbers, email=body.email, date_from=body.date_from,
                             date_to=body.date_to, description=body.description, call_date=body.call_date,
                             call_time=body.call_time, agent_first_name=body.agent_first_name,
                             call_reason=body.call_reason, asks_for=body.asks_for)
    try:
        with runtime.db.unit_of_work() as session:
            policy = policy_service.current_policy(session, clock=runtime.clock)
            row = subject.submit(session, policy=policy, new=new, source_ip=source_ip(request),
                                 counters=runtime.counters, keyring=runtime.keyring,
                                 phone_proof=phone.verifier_from_env(runtime.settings.env) is not None,
                                 clock=runtime.clock)
            out = Accepted(id=row.id, status=row.status, message=message)
    except limits.RateLimited as exc:
        return rate_limited(exc, runtime.clock)
    return JSONResponse(out.model_dump(), status_code=202)


@router.post("/subject-requests/{request_id}/verify", response_model=Verified, max_body_size=MAX_PUBLIC_BODY,
             responses={429: {"description": "too many wrong codes from this address"}})
def verify(request_id: str, body: VerifyBody, request: Request,
           runtime: Runtime = Depends(get_runtime)) -> JSONResponse:
    """Confirm the emailed code. The clock starts now; an acknowledgement with the due date is mailed.
    Where a phone provider is configured, a second code is then sent to each of the numbers
    (``phone_codes_sent``): entering it proves the number is the requester's."""
    verifier = phone.verifier_from_env(runtime.settings.env)
    try:
        with runtime.db.unit_of_work() as session:
            policy = policy_service.current_policy(session, clock=runtime.clock)
            outcome = subject.verify(session, policy=policy, request_id=request_id, code=body.code,
                                     counters=runtime.counters,
                                     source_ip=source_ip(request), mail_domain=mail_domain(runtime),
                                     clock=runtime.clock)
            row = outcome.request
            out = Verified(id=request_id, status=row.status if row else "unknown",
                           due_on=row.due_on if row else None, message=outcome.message)
    except limits.RateLimited as exc:
        return rate_limited(exc, runtime.clock)
    if not outcome.ok:
        raise InvalidInput(outcome.message, [FieldProblem("code", outcome.message)])
    if verifier is not None:
        out.phone_codes_sent = phone.send_codes(runtime.db, verifier, policy=policy, request_id=request_id,
                                                counters=runtime.counters, source_ip=source_ip(request),
                                                clock=runtime.clock)
    return JSONResponse(out.model_dump(mode="json"))


@router.post("/subject-requests/{request_id}/verify-phone", response_model=PhoneVerified,
             max_body_size=MAX_PUBLIC_BODY, responses={429: {"description": "too many wrong codes from this address"}})
def verify_phone(request_id: str, body: PhoneVerifyBody, request: Request,
                 runtime: Runtime = Depends(get_runtime)) -> JSONResponse:
    """Confirm the code sent to one of the request's phone numbers: it proves the number is yours, so its
    recordings can be released without the team having to check facts about the calls."""
    try:
        with runtime.db.unit_of_work() as session:
            policy = policy_service.current_policy(session, clock=runtime.clock)
            outcome = proof.verify_phone(session, policy=policy, request_id=request_id, phone_number=body.phone_number,
                                         code=body.code, source_ip=source_ip(request), counters=runtime.counters,
                                         clock=runtime.clock)
    except limits.RateLimited as exc:
        return rate_limited(exc, runtime.clock)
    if not outcome.ok:
        raise InvalidInput(outcome.message, [FieldProblem("code", outcome.message)])
    return JSONResponse(PhoneVerified(id=request_id, phone_number=body.phone_number,
                                      message=outcome.message).model_dump())


# ------------------------------------------------------------------------------------------------- staff
@router.get("/subject-requests", response_model=list[SubjectRequestRead])
def list_requests(
    caller: Caller = Depends(get_caller), runtime: Runtime = Depends(get_runtime),
    status: Annotated[str | None, Query(description="awaiting_verification, to_review, ready, sent, refused, overdue")]
    = None,
) -> list[SubjectRequestRead]:
    """The queue, soonest due first."""
    _staff(caller, runtime, "list")
    now = runtime.clock.now()
    with runtime.db.unit_of_work() as session:
        return [_read(session, row, now) for row in subject.queue(session, status=status, clock=runtime.clock)]


@router.get("/subject-requests/summary", response_model=Summary)
def summary(caller: Caller = Depends(get_caller), runtime: Runtime = Depends(get_runtime)) -> Summary:
    """Counts per status and how many are overdue (for the dashboard and reports)."""
    _staff(caller, runtime, "summary")
    with runtime.db.unit_of_work() as session:
        return Summary.model_validate(subject.summary(session, clock=runtime.clock))


@router.get("/subject-requests/{request_id}", response_model=SubjectRequestRead)
def show(request_id: str, caller: Caller = Depends(get_caller),
         runtime: Runtime = Depends(get_runtime)) -> SubjectRequestRead:
    _staff(caller, runtime, "show", request_id)
    with runtime.db.unit_of_work() as session:
        return _read(session, subject.get(session, request_id), runtime.clock.now(), detail=True)


@router.get("/subject-requests/{request_id}/candidates", response_model=list[Candidate])
def candidates(request_id: str, caller: Caller = Depends(get_caller),
               runtime: Runtime = Depends(get_runtime)) -> list[Candidate]:
    """Recordings that match the requester's number(s) (or, for an operator, their name/extension)."""
    _staff(caller, runtime, "candidates", request_id)
    with runtime.db.unit_of_work() as session:
        return candidate_reads(session, caller, subject.get(session, request_id))


@router.post("/subject-requests/{request_id}/review", response_model=SubjectRequestRead)
def review(request_id: str, body: ReviewBody, caller: Caller = Depends(get_caller),
           runtime: Runtime = Depends(get_runtime)) -> SubjectRequestRead:
    """Confirm which recordings belong to the requester (replaces any earlier choice) and note redaction needs."""
    _staff(caller, runtime, "review", request_id)
    with runtime.db.unit_of_work() as session:
        row = subject.review(session, policy=caller.policy, actor=caller.actor, request_id=request_id,
                             recording_ids=body.recording_ids, redaction_note=body.redaction_note,
                             source_ip=caller.source_ip, clock=runtime.clock)
        return _read(session, row, runtime.clock.now(), detail=True)


@router.post("/subject-requests/{request_id}/approve", response_model=SubjectRequestRead)
def approve(request_id: str, request: Request, body: ApproveBody | None = None,
            caller: Caller = Depends(get_caller), runtime: Runtime = Depends(get_runtime)) -> SubjectRequestRead:
    """Release: every recording is decided for ``subject_access`` (audited), then the link is mailed.

    A recording whose number the caller did not confirm by phone code is released only when
    ``facts_checked`` names enough of the caller's facts, each matching it; otherwise 403, audited.
    It mails a link outside (or destroys an erasure's recordings), so it also needs a fresh step-up code
    (403 ``step_up_required``, as a download): a stolen token alone cannot send recordings out."""
    from callvault.identity import step_up

    _staff(caller, runtime, "approve", request_id)
    require_step_up(runtime, caller, step_up.APPROVE_REQUEST)
    body = body or ApproveBody()
    with runtime.db.unit_of_work() as session:
        outcome = subject.approve(session, policy=caller.policy, actor=caller.actor, request_id=request_id,
                                  public_url=public_url(runtime, request), link_days=body.link_days,
                                  max_downloads=body.max_downloads, source_ip=caller.source_ip, clock=runtime.clock,
                                  keyring=runtime.keyring, facts_checked=body.facts_checked)
        denials, refusal = outcome.denials, outcome.refusal
        if not denials and refusal is None:
            out = _read(session, outcome.request, runtime.clock.now(), detail=True)
    # An erasure request's destroyed recordings: the keys died with the commit; now the blobs go.
    shred.finish(runtime.db, runtime.store, runtime.keyring, outcome.pending, clock=runtime.clock)
    if refusal is not None:
        raise AccessDenied(f"nothing was released: {refusal}", reason=refusal, clauses=subject.CLAUSES)
    if denials:
        reason = "; ".join(f"{rid}: {d.reason}" for rid, d in denials)
        done = "deleted" if outcome.request.asks_for == "erasure" else "released"
        raise AccessDenied(f"nothing was {done}: {reason}", reason=reason, clauses=subject.CLAUSES)
    return out


@router.post("/subject-requests/{request_id}/refuse", response_model=SubjectRequestRead)
def refuse(request_id: str, body: RefuseBody, caller: Caller = Depends(get_caller),
           runtime: Runtime = Depends(get_runtime)) -> SubjectRequestRead:
    """Refuse a verified request with a written reason, mailed to the requester; nothing is released."""
    _staff(caller, runtime, "refuse", request_id)
    with runtime.db.unit_of_work() as session:
        row = subject.refuse(session, policy=caller.policy, actor=caller.actor, request_id=request_id,
                             reason=body.reason, source_ip=caller.source_ip, clock=runtime.clock)
        return _read(session, row, runtime.clock.now(), detail=True)


@router.post("/subject-requests/{request_id}/extend", response_model=SubjectRequestRead)
def extend(request_id: str, body: ExtendBody, caller: Caller = Depends(get_caller),
           runtime: Runtime = Depends(get_runtime)) -> SubjectRequestRead:
    """Extend the deadline once, in writing, by the policy's extension; the requester is mailed the new date.
    409 when the policy allows none, it was already extended, the deadline passed or the request is closed."""
    _staff(caller, runtime, "extend", request_id)
    with runtime.db.unit_of_work() as session:
        row = workflow.extend(session, policy=caller.policy, actor=caller.actor, request_id=request_id,
                              reason=body.reason, source_ip=caller.source_ip, clock=runtime.clock)
        return _read(session, row, runtime.clock.now(), detail=True)


@router.post("/subject-requests/{request_id}/representative", response_model=SubjectRequestRead)
def representative(request_id: str, body: RepresentativeBody, caller: Caller = Depends(get_caller),
                   runtime: Runtime = Depends(get_runtime)) -> SubjectRequestRead:
    """Record who acts for the caller and which proof of their authority was checked (HIPAA 164.502(g));
    409 where the policy takes no representatives, 422 for a proof kind it does not list."""
    _staff(caller, runtime, "representative", request_id)
    with runtime.db.unit_of_work() as session:
        row = workflow.record_representative(session, policy=caller.policy, actor=caller.actor,
                                             request_id=request_id, name=body.name, relationship=body.relationship,
                                             proof_kind=body.proof_kind, source_ip=caller.source_ip,
                                             clock=runtime.clock)
        return _read(session, row, runtime.clock.now(), detail=True)


@router.post("/subject-requests/{request_id}/revoke-links")
def revoke_links(request_id: str, caller: Caller = Depends(get_caller),
                 runtime: Runtime = Depends(get_runtime)) -> dict[str, int]:
    """Stop every download link of a request from working (e.g. the mail went to the wrong person)."""
    _staff(caller, runtime, "revoke_links", request_id)
    with runtime.db.unit_of_work() as session:
        return {"revoked": subject.revoke_links(session, actor=caller.actor, request_id=request_id,
                                                source_ip=caller.source_ip, clock=runtime.clock)}


# ------------------------------------------------------------------------------------------- operators
@router.post("/me/subject-requests", response_model=SubjectRequestRead, status_code=201)
def file_own(body: OwnRequestCreate, caller: Caller = Depends(get_caller),
             runtime: Runtime = Depends(get_runtime)) -> SubjectRequestRead:
    """Request copies of your own recordings as an operator (B10): your account is the identity check."""
    with runtime.db.unit_of_work() as session:
        user = session.get(User, caller.user.id)
        assert user is not None
        row = subject.file_own(session, policy=caller.policy, user=user, date_from=body.date_from,
                               date_to=body.date_to, description=body.description, source_ip=caller.source_ip,
                               mail_domain=mail_domain(runtime), clock=runtime.clock)
        return _read(session, row, runtime.clock.now())


@router.get("/me/subject-requests", response_model=list[SubjectRequestRead])
def own_requests(caller: Caller = Depends(get_caller),
                 runtime: Runtime = Depends(get_runtime)) -> list[SubjectRequestRead]:
    with runtime.db.unit_of_work() as session:
        user = session.get(User, caller.user.id)
        assert user is not None
        return [_read(session, row, runtime.clock.now()) for row in subject.own_requests(session, user=user)]
