"""Subject requests (B7, B10, A4): intake, verification, the staff queue, review, release and delivery.

Life of a caller's request::

    submit ──► awaiting_verification ──verify──► to_review ──review──► ready ──approve──► sent
                 (code mailed)          (clock starts,       (recordings      (link mailed)
                                         acknowledgement)     confirmed)
                                              └────────────────────┴──refuse──► refused (reason mailed)

``overdue`` is shown instead of the stored status for any request not yet sent whose due time has
passed. An operator's own request (B10) starts at ``to_review``: their account is the identity check.

Who may work the queue: the roles that may use the ``subject_access`` purpose in the policy in force
(and have acknowledged it). Releasing is content access: every recording is decided by ``decide()``
for ``subject_access`` as the approver, at approval and again at every download, and audited.
Nothing decrypted is ever stored: the package is built while it is downloaded (``package.py``).

Services take the session and never commit; a denial is appended to the audit log and returned (or
raised only after the edge has committed it).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from datetime import time as time_of_day
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from callvault.audit import service as audit
from callvault.capture.metadata import normalise_number
from callvault.core.clock import Clock, system_clock
from callvault.core.errors import AccessDenied, Conflict, FieldProblem, InvalidInput, NotFound
from callvault.core.ids import new_id
from callvault.identity.counters import Counters
from callvault.identity.models import User
from callvault.integrations.webhooks_out import emit as webhooks
from callvault.notify import service as notify
from callvault.policy.decide import Action, Actor, Decision, SubjectMatchFacts, has_acknowledged
from callvault.policy.schema import PolicyDocument
from callvault.recordings import service as recordings
from callvault.recordings.models import Recording, RecordingState
from callvault.retention.shred import Pending
from callvault.storage.keys import Keyring
from callvault.subject_requests import limits, proof
from callvault.subject_requests import region as region_of
from callvault.subject_requests.models import (
    DeliveryLink,
    RequesterKind,
    RequestStatus,
    SubjectRequest,
    SubjectRequestRecording,
)
from callvault.subject_requests.workdays import Calendar, calendar_for

PURPOSE = "subject_access"
CLAUSES = ("B7", "B10", "A4")
CODE_DIGITS = 6
CODE_TTL = timedelta(minutes=30)
MAX_CODE_ATTEMPTS = 5
"""Wrong codes before a request's code is void (a new submission is needed): 5 guesses in 10**6."""
MAX_NUMBERS = 5
MAX_DESCRIPTION = 4000
MAX_EMAIL = 254
MAX_SELECTION = 500
LINK_DAYS_DEFAULT, LINK_DAYS_MAX = 7, 30
DOWNLOADS_DEFAULT, DOWNLOADS_MAX = 3, 10
UNVERIFIED_KEEP = timedelta(days=7)
"""Unconfirmed requests (and the personal data in them) are deleted after this."""
_EMAIL_RE = re.compile(r"^[^@\s<>\"',;]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)+$")
PUBLIC_ACTOR = "(public)"


# ----------------------------------------------------------------------------------------------- helpers
def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _code_hash(request_id: str, code: str) -> str:
    # Salted with the request id so equal codes on two requests do not share a hash.
    return _sha256(f"subject-request:{request_id}:{code}")


def staff_roles(policy: PolicyDocument) -> tuple[str, ...]:
    """Roles that work the queue: those that may use the ``subject_access`` purpose."""
    purpose = policy.purposes.get(PURPOSE)
    return tuple(purpose.roles) if purpose is not None else ()


def staff_denial(policy: PolicyDocument, actor: Actor) -> str | None:
    """Why ``actor`` may not work the queue, or None."""
    roles = staff_roles(policy)
    if actor.role not in roles:
        allowed = ", ".join(roles) or "no role (the policy has no subject_access purpose)"
        return f"role {actor.role!r} may not handle subject requests; the policy gives this to: {allowed}"
    if policy.acknowledgement_required and not has_acknowledged(policy, actor):
        return f"{actor.username} has not acknowledged policy version {policy.version}"
    return None


def audit_staff_denial(session: Session, *, actor: Actor, action: str, reason: str, object_id: str = "",
                       source_ip: str | None = None, clock: Clock = system_clock) -> None:
    audit.append(session, audit.AuditEvent(
        actor=actor.username, actor_role=actor.role, action=f"subject_request.{action}", decision="deny",
        object_type="subject_request", object_id=object_id[:200], purpose=PURPOSE, reason=reason,
        clauses=CLAUSES, source_ip=source_ip), clock=clock)


def _event(session: Session, *, actor: str, role: str, action: str, row: SubjectRequest,
           source_ip: str | None = None, details: dict[str, object] | None = None, clock: Clock) -> None:
    audit.append(session, audit.AuditEvent(
        actor=actor, actor_role=role, action=f"subject_request.{action}", decision="info",
        object_type="subject_request", object_id=row.id, purpose=PURPOSE, clauses=CLAUSES, source_ip=source_ip,
        details=details), clock=clock)


def _rules(policy: PolicyDocument) -> None:
    if not policy.subject_requests.enabled:
        raise NotFound("this organisation does not take requests for recordings through callvault")


def calendar_of(policy: PolicyDocument, row: SubjectRequest) -> Calendar:
    rules = policy.subject_requests
    region = row.region if row.region in rules.regions else (rules.default_region or row.region)
    return calendar_for(rules, region, row.phone_numbers)


def _default_country(policy: PolicyDocument) -> str:
    rules = policy.subject_requests
    region = rules.regions.get(rules.default_region or "")
    return region.country if region is not None else "CA"


def display_status(row: SubjectRequest, now: datetime) -> str:
    """The status staff see: ``overdue`` for anything unsent past its due time."""
    if row.status in (RequestStatus.TO_REVIEW, RequestStatus.READY) and row.due_at is not None and row.due_at <= now:
        return "overdue"
    return row.status


def get(session: Session, request_id: str) -> SubjectRequest:
    row = session.get(SubjectRequest, request_id[:36])
    if row is None:
        raise NotFound("no such subject request")
    return row


def _team(session: Session, policy: PolicyDocument) -> list[User]:
    roles = staff_roles(policy)
    if not roles:
        return []
    return list(session.scalars(select(User).where(User.role.in_(roles), User.active.is_(True))
                                .order_by(User.username)))


def _mail_team(session: Session, policy: PolicyDocument, *, subject: str, body: str, dedup: str,
               mail_domain: str, clock: Clock) -> int:
    smtp = notify.SmtpSettings(mail_domain=mail_domain)
    sent = 0
    for user in _team(session, policy):
        if notify.enqueue(session, to=notify.address_for(user.username, None, smtp), subject=subject, body=body,
                          dedup_key=f"{dedup}:{user.id}"[:200], recipient_user=user.username, clock=clock):
            sent += 1
    return sent


# ------------------------------------------------------------------------------------------------ intake
CALLER_REQUEST_LABELS = {"copy": "copies of call recordings", "erasure": "deletion of call recordings"}
"""How each right in ``notice.caller_requests`` is named to the caller (form, mail, refusals)."""


@dataclass(frozen=True)
class NewRequest:
    """What a person typed into the form (or sent to the API)."""

    phone_numbers: Sequence[str]
    email: str
    date_from: date | None = None
    date_to: date | None = None
    description: str = ""
    call_date: date | None = None
    """Facts about one of the calls (``proof``): what a reviewer checks when no code can reach the phone."""
    call_time: time_of_day | None = None
    agent_first_name: str = ""
    call_reason: str = ""
    asks_for: str = "copy"
    """``copy`` or ``erasure``: refused unless the policy's notice promises it (``notice.caller_requests``)."""


def _validate(policy: PolicyDocument, new: NewRequest, *, today: date) -> tuple[list[str], str]:
    problems: list[FieldProblem] = []
    numbers: list[str] = []
    raw_numbers = [n for n in new.phone_numbers if n and n.strip()]
    if not raw_numbers:
        problems.append(FieldProblem("phone_numbers", "give at least one phone number you called from or were "
                                                      "called on"))
    if len(raw_numbers) > MAX_NUMBERS:
        problems.append(FieldProblem("phone_numbers", f"give at most {MAX_NUMBERS} numbers"))
    for i, raw in enumerate(raw_numbers[:MAX_NUMBERS]):
        if len(raw) > 40:
            problems.append(FieldProblem(f"phone_numbers[{i}]", "too long to be a phone number"))
            continue
        try:
            number = normalise_number(raw.strip(), _default_country(policy))
        except ValueError as exc:
            problems.append(FieldProblem(f"phone_numbers[{i}]", f"{exc}; include the country code, e.g. +44 ..."))
            continue
        if number not in numbers:
            numbers.append(number)
    email = (new.email or "").strip()
    if len(email) > MAX_EMAIL or not _EMAIL_RE.match(email):
        problems.append(FieldProblem("email", "give the email address we should send your recordings to"))
    if new.date_from and new.date_to and new.date_from > new.date_to:
        problems.append(FieldProblem("date_to", "the end of the date range is before its start"))
    if new.date_from and new.date_from > today + timedelta(days=1):
        problems.append(FieldProblem("date_from", "the date range starts in the future"))
    if len(new.description or "") > MAX_DESCRIPTION:
        problems.append(FieldProblem("description", f"at most {MAX_DESCRIPTION} characters"))
    if problems:
        raise InvalidInput("the request cannot be accepted:", problems)
    return numbers, email


def submit(
    session: Session, *, policy: PolicyDocument, new: NewRequest, source_ip: str | None, counters: Counters,
    keyring: Keyring, phone_proof: bool = False, clock: Clock = system_clock,
) -> SubjectRequest:
    """Record a caller's request and mail a verification code to the nominated address.

    Rate-limited per client address and per email (``limits``): every accepted submission counts
    (a refused one sends no mail, so it cannot be used to flood anyone). The caller commits.
    Without ``phone_proof`` (no provider to send a code to the number) the facts ``proof`` needs are
    required: the email code alone proves nothing about the phone number.
    """
    _rules(policy)
    now = clock.now()
    email_key = (new.email or "").strip().lower() or None
    limits.check(session, counters, [(limits.SUBMIT_PER_ADDRESS, source_ip), (limits.SUBMIT_PER_EMAIL, email_key)],
                 now=now)
    facts = proof.StatedFacts(call_date=new.call_date, call_time=new.call_time,
                              agent_first_name=(new.agent_first_name or "").strip(),
                              call_reason=(new.call_reason or "").strip())
    fact_problems = proof.validate_facts(policy, facts, required=not phone_proof, today=now.date(),
                                         max_reason=MAX_DESCRIPTION)
    offered = policy.notice.caller_requests
    if new.asks_for not in offered:
        fact_problems.append(FieldProblem("asks_for", f"{policy.organisation} offers callers: "
                                          + ", ".join(CALLER_REQUEST_LABELS.get(k, k) for k in offered)))
    try:
        numbers, email = _validate(policy, new, today=now.date())
    except InvalidInput as exc:
        raise InvalidInput("the request cannot be accepted:", [*exc.problems, *fact_problems]) from None
    if fact_problems:
        raise InvalidInput("the request cannot be accepted:", fact_problems)
    limits.count(session, counters, limits.SUBMIT_PER_ADDRESS, source_ip, now=now)
    limits.count(session, counters, limits.SUBMIT_PER_EMAIL, email.lower(), now=now)
    rules = policy.subject_requests
    # Only what the requester supplied picks the region now: its calls would tell them where a number they
    # have not proven is recorded. ``region.refine_after_proof`` consults them once the number is proven.
    choice = region_of.at_intake(policy, numbers)
    region = choice.region
    cal = calendar_for(rules, region, numbers)
    code = f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"
    row = SubjectRequest(
        id=new_id(), kind=RequesterKind.CALLER, status=RequestStatus.AWAITING_VERIFICATION, phone_numbers=numbers,
        email=email, date_from=new.date_from, date_to=new.date_to, description=(new.description or "").strip(),
        region=region, region_basis=choice.basis, timezone=cal.timezone, source_ip=source_ip, received_at=now,
        code_attempts=0, code_expires_at=now + CODE_TTL, reminders_sent=[], redaction_note="",
        asks_for=new.asks_for,
    )
    row.code_sha256 = _code_hash(row.id, code)
    row.call_date, row.call_time = facts.call_date, facts.call_time
    row.agent_first_name, row.call_reason = facts.agent_first_name, facts.call_reason
    session.add(row)
    session.flush()
    notify.enqueue(session, to=email, subject=f"Your verification code: {code}", clock=clock,
                   secrets=[code], keyring=keyring, body=(
        f"Someone (we hope you) asked {policy.organisation} for {CALLER_REQUEST_LABELS[new.asks_for]} of the phone "
        f"number(s) {', '.join(numbers)}, to be sent to this address.\n\n"
        f"Your verification code is {code}. Enter it on the request page within "
        f"{int(CODE_TTL.total_seconds() // 60)} minutes. Nothing happens until you do.\n\n"
        f"Request reference: {row.id}\n\nIf this was not you, ignore this mail; the request will be deleted.\n"))
    _event(session, actor=PUBLIC_ACTOR, role="", action="submitted", row=row, source_ip=source_ip,
           details={"kind": row.kind, "asks_for": row.asks_for, "region": region, "region_basis": choice.basis,
                    "numbers": len(numbers)}, clock=clock)
    return row


@dataclass(frozen=True)
class VerifyOutcome:
    ok: bool
    message: str
    request: SubjectRequest | None = None


def verify(
    session: Session, *, policy: PolicyDocument, request_id: str, code: str, source_ip: str | None,
    counters: Counters, mail_domain: str = "localhost", clock: Clock = system_clock,
) -> VerifyOutcome:
    """Confirm the emailed code: the clock starts, an acknowledgement with the due date is mailed.

    A wrong code is counted against the request (``MAX_CODE_ATTEMPTS``, then the code is void) and
    against the client address (``limits.VERIFY_PER_ADDRESS``). The outcome says what happened; the
    caller commits in every case (so failures count) and then refuses when ``ok`` is false.
    """
    _rules(policy)
    now = clock.now()
    limits.check(session, counters, [(limits.VERIFY_PER_ADDRESS, source_ip)], now=now)
    row = session.get(SubjectRequest, request_id[:36]) if request_id else None
    fail = "that code is wrong or has expired"
    if row is None or row.status != RequestStatus.AWAITING_VERIFICATION or row.code_sha256 is None:
        limits.count(session, counters, limits.VERIFY_PER_ADDRESS, source_ip, now=now)
        return VerifyOutcome(False, f"{fail}; if it expired, submit the request again")
    if row.code_expires_at is None or row.code_expires_at <= now:
        row.code_sha256 = None
        limits.count(session, counters, limits.VERIFY_PER_ADDRESS, source_ip, now=now)
        _verify_failed(session, row, "email code expired", source_ip=source_ip, clock=clock)
        return VerifyOutcome(False, f"{fail}; codes last {int(CODE_TTL.total_seconds() // 60)} minutes, so "
                                    "please submit the request again", row)
    if not hmac.compare_digest(row.code_sha256, _code_hash(row.id, (code or "").strip()[:16])):
        row.code_attempts += 1
        limits.count(session, counters, limits.VERIFY_PER_ADDRESS, source_ip, now=now)
        _verify_failed(session, row, "wrong email code", source_ip=source_ip, clock=clock)
        left = MAX_CODE_ATTEMPTS - row.code_attempts
        if left <= 0:
            row.code_sha256 = None
            _event(session, actor=PUBLIC_ACTOR, role="", action="code_void", row=row, source_ip=source_ip,
                   details={"attempts": row.code_attempts}, clock=clock)
            return VerifyOutcome(False, f"{fail}; too many wrong codes, so please submit the request again", row)
        return VerifyOutcome(False, f"{fail}; {left} attempt{'s' if left != 1 else ''} left", row)
    row.code_sha256, row.code_expires_at = None, None
    _start_clock(session, policy, row, now=now, mail_domain=mail_domain, clock=clock)
    _event(session, actor=PUBLIC_ACTOR, role="", action="verified", row=row, source_ip=source_ip,
           details={"due_on": str(row.due_on), "region": row.region}, clock=clock)
    return VerifyOutcome(True, f"thank you: we will answer by {row.due_on:%A %d %B %Y}", row)


def _verify_failed(session: Session, row: SubjectRequest, reason: str, *, source_ip: str | None,
                   clock: Clock) -> None:
    audit.append(session, audit.AuditEvent(
        actor=PUBLIC_ACTOR, action="subject_request.verify", decision="deny", object_type="subject_request",
        object_id=row.id, purpose=PURPOSE, reason=reason, clauses=CLAUSES, source_ip=source_ip,
        details={"attempts": row.code_attempts}), clock=clock)


def _start_clock(session: Session, policy: PolicyDocument, row: SubjectRequest, *, now: datetime,
                 mail_domain: str, clock: Clock) -> None:
    deadline = policy.subject_requests.effective_deadline
    cal = calendar_of(policy, row)
    row.due_on, row.due_at = cal.due_by(now, deadline)
    row.verified_at = now
    row.status = RequestStatus.TO_REVIEW
    notify.enqueue(session, to=row.email, subject=f"We received your request for recordings (due {row.due_on})",
                   dedup_key=f"subject:{row.id}:ack", clock=clock, body=(
        f"Thank you. {policy.organisation} received your request for copies of your call recordings on "
        f"{now.astimezone(ZoneInfo(cal.timezone)):%A %d %B %Y at %H:%M} ({cal.timezone}).\n\n"
        f"We will answer by {row.due_on:%A %d %B %Y} ({region_of.deadline_words(deadline, cal.region)}).\n"
        f"We will send a download link to this address.\n\n"
        f"Request reference: {row.id}\n"))
    _mail_team(session, policy, subject=f"New request for recordings, due {row.due_on}",
               dedup=f"subject:{row.id}:new", mail_domain=mail_domain, clock=clock, body=(
        f"A {row.kind} request for recordings was received and is due by {row.due_on} "
        f"(region {cal.region}).\nReview it: callvault requests show {row.id}\n"))


def file_own(
    session: Session, *, policy: PolicyDocument, user: User, date_from: date | None, date_to: date | None,
    description: str, source_ip: str | None, mail_domain: str = "localhost", clock: Clock = system_clock,
) -> SubjectRequest:
    """An operator's request for their own recordings (B10): signed in, so no code; the clock starts now."""
    _rules(policy)
    now = clock.now()
    problems: list[FieldProblem] = []
    if date_from and date_to and date_from > date_to:
        problems.append(FieldProblem("date_to", "the end of the date range is before its start"))
    if len(description or "") > MAX_DESCRIPTION:
        problems.append(FieldProblem("description", f"at most {MAX_DESCRIPTION} characters"))
    if problems:
        raise InvalidInput("the request cannot be accepted:", problems)
    rules = policy.subject_requests
    region = rules.default_region or next(iter(rules.regions))
    cal = calendar_for(rules, region)
    email = notify.address_for(user.username, None, notify.SmtpSettings(mail_domain=mail_domain))
    row = SubjectRequest(
        id=new_id(), kind=RequesterKind.OPERATOR, status=RequestStatus.TO_REVIEW, phone_numbers=[], email=email,
        requester_user_id=user.id, requester_username=user.username, date_from=date_from, date_to=date_to,
        description=(description or "").strip(), region=region,
        region_basis="an operator's own request: subject_requests.default_region", timezone=cal.timezone,
        source_ip=source_ip,
        received_at=now, code_attempts=0, reminders_sent=[], redaction_note="",
    )
    session.add(row)
    session.flush()
    _start_clock(session, policy, row, now=now, mail_domain=mail_domain, clock=clock)
    _event(session, actor=user.username, role=user.role, action="filed_own", row=row, source_ip=source_ip,
           details={"due_on": str(row.due_on)}, clock=clock)
    return row


def own_requests(session: Session, *, user: User) -> list[SubjectRequest]:
    return list(session.scalars(select(SubjectRequest).where(SubjectRequest.requester_user_id == user.id)
                                .order_by(SubjectRequest.received_at.desc())))


# --------------------------------------------------------------------------------------------- the queue
def queue(session: Session, *, status: str | None = None, clock: Clock = system_clock,
          limit: int = 200) -> list[SubjectRequest]:
    """Requests, soonest due first (unverified ones, which have no due date, last)."""
    now = clock.now()
    stmt = select(SubjectRequest)
    if status == "overdue":
        stmt = stmt.where(SubjectRequest.status.in_([RequestStatus.TO_REVIEW, RequestStatus.READY]),
                          SubjectRequest.due_at <= now)
    elif status:
        stmt = stmt.where(SubjectRequest.status == status)
    stmt = stmt.order_by(SubjectRequest.due_at.is_(None), SubjectRequest.due_at, SubjectRequest.received_at)
    return list(session.scalars(stmt.limit(limit)))


def summary(session: Session, *, clock: Clock = system_clock) -> dict[str, object]:
    """Counts per status, the overdue count, and the next due date among open requests."""
    now = clock.now()
    counts: dict[str, int] = {s.value: 0 for s in RequestStatus}
    for status, n in session.execute(select(SubjectRequest.status, func.count()).group_by(SubjectRequest.status)):
        counts[str(status)] = int(n)
    open_filter = SubjectRequest.status.in_([RequestStatus.TO_REVIEW, RequestStatus.READY])
    overdue = session.scalar(select(func.count()).select_from(SubjectRequest)
                             .where(open_filter, SubjectRequest.due_at <= now)) or 0
    next_due = session.scalar(select(func.min(SubjectRequest.due_on)).where(open_filter,
                                                                             SubjectRequest.due_at > now))
    return {"counts": counts, "overdue": int(overdue), "next_due_on": next_due}


def selection(session: Session, request_id: str) -> list[SubjectRequestRecording]:
    return list(session.scalars(select(SubjectRequestRecording)
                                .where(SubjectRequestRecording.request_id == request_id)
                                .order_by(SubjectRequestRecording.recording_id)))


def _belongs(row: SubjectRequest, rec: Recording, *, operator_extension: str | None) -> bool:
    """Whether a recording is the requester's: their number was the other party, or they were the operator."""
    if row.kind == RequesterKind.OPERATOR:
        if rec.agent:
            return rec.agent == (row.requester_username or "").lower()
        return bool(operator_extension) and rec.extension == operator_extension
    return rec.remote_number is not None and rec.remote_number in row.phone_numbers


def open_requests_for(session: Session, rec: Recording) -> list[SubjectRequest]:
    """Verified requests not sent yet that name ``rec`` or that it belongs to (the caller's number, or the
    operator's own call, within the request's dates): the person asked for it, so it must stay (B7, B10)."""
    found = []
    for row in session.scalars(select(SubjectRequest).where(SubjectRequest.status.in_(
            (RequestStatus.TO_REVIEW, RequestStatus.READY))).order_by(SubjectRequest.received_at)):
        named = session.get(SubjectRequestRecording, (row.id, rec.id)) is not None
        if named or (_belongs(row, rec, operator_extension=_operator_extension(session, row))
                     and _within_dates(row, rec.started_at)):
            found.append(row)
    return found


def match_facts(session: Session, rec: Recording, *, now: datetime) -> tuple[SubjectMatchFacts, ...]:
    """What ``decide`` needs for ``subject_access`` (reach ``matched_request``, B7, B10): the verified
    requests not yet sent that ``rec`` is matched to (named in the review, or the requester's own call
    within the request's dates), and the sent requests that released it while a delivery link is live
    (the link's downloads are decided as the releaser)."""
    found = [SubjectMatchFacts(request_id=r.id, requester_user_id=r.requester_user_id)
             for r in open_requests_for(session, rec)]
    sent = session.scalars(
        select(SubjectRequest).join(SubjectRequestRecording, SubjectRequestRecording.request_id == SubjectRequest.id)
        .where(SubjectRequestRecording.recording_id == rec.id, SubjectRequest.status == RequestStatus.SENT,
               SubjectRequest.approved_by_user_id.is_not(None))
        .where(select(DeliveryLink.id).where(
            DeliveryLink.request_id == SubjectRequest.id, DeliveryLink.revoked_at.is_(None),
            DeliveryLink.expires_at > now, DeliveryLink.downloads < DeliveryLink.max_downloads).exists())
        .order_by(SubjectRequest.received_at))
    found.extend(SubjectMatchFacts(request_id=r.id, requester_user_id=r.requester_user_id,
                                   released_by=r.approved_by_user_id) for r in sent)
    return tuple(found)


def _within_dates(row: SubjectRequest, started_at: datetime) -> bool:
    local = started_at.astimezone(ZoneInfo(row.timezone)).date()
    return (row.date_from is None or local >= row.date_from) and (row.date_to is None or local <= row.date_to)


def party_of(row: SubjectRequest, rec: Recording) -> str:
    if row.kind == RequesterKind.OPERATOR:
        return "operator"
    return "caller" if rec.direction == "inbound" else "callee"


def _operator_extension(session: Session, row: SubjectRequest) -> str | None:
    if row.kind != RequesterKind.OPERATOR or not row.requester_user_id:
        return None
    user = session.get(User, row.requester_user_id)
    return user.extension if user is not None else None


def candidates(session: Session, *, policy: PolicyDocument, actor: Actor,
               row: SubjectRequest) -> list[Recording]:
    """Available recordings that match the requester, within the date range and the actor's scope."""
    scope = recordings.scope_clause(policy, actor)
    if scope is None:
        return []
    conds: list[ColumnElement[bool]] = [Recording.state == RecordingState.AVAILABLE, scope]
    if row.kind == RequesterKind.OPERATOR:
        ext = _operator_extension(session, row)
        who = Recording.agent == (row.requester_username or "").lower()
        conds.append(or_(who, and_(Recording.agent.is_(None), Recording.extension == ext)) if ext else who)
    else:
        if not row.phone_numbers:
            return []
        conds.append(Recording.remote_number.in_(list(row.phone_numbers)))
    zone = ZoneInfo(row.timezone)
    if row.date_from:
        conds.append(Recording.started_at >= datetime.combine(row.date_from, time(0), tzinfo=zone).astimezone(UTC))
    if row.date_to:
        end = datetime.combine(row.date_to + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
        conds.append(Recording.started_at < end)
    found = list(session.scalars(select(Recording).where(*conds).order_by(Recording.started_at).limit(1000)))
    return proof.filter_candidates(session, policy=policy, row=row, recs=found)


def review(
    session: Session, *, policy: PolicyDocument, actor: Actor, request_id: str, recording_ids: Sequence[str],
    redaction_note: str = "", source_ip: str | None = None, clock: Clock = system_clock,
) -> SubjectRequest:
    """A reviewer confirms which recordings belong to the requester (replacing any earlier choice)."""
    row = get(session, request_id)
    if row.status not in (RequestStatus.TO_REVIEW, RequestStatus.READY):
        raise Conflict(f"this request is {row.status}; only verified requests not yet sent can be reviewed")
    ids = list(dict.fromkeys(recording_ids))
    if len(ids) > MAX_SELECTION:
        raise InvalidInput("too many recordings", [FieldProblem("recording_ids", f"at most {MAX_SELECTION}")])
    if len(redaction_note or "") > MAX_DESCRIPTION:
        raise InvalidInput("note too long", [FieldProblem("redaction_note", f"at most {MAX_DESCRIPTION} characters")])
    allowed = {r.id: r for r in candidates(session, policy=policy, actor=actor, row=row)}
    problems = [FieldProblem(f"recording_ids[{i}]", "not one of this requester's recordings (it does not match "
                                                    "their number or name, date range, or your scope)")
                for i, rid in enumerate(ids) if rid not in allowed]
    if problems:
        raise InvalidInput("some recordings cannot be released to this requester:", problems)
    for old in selection(session, row.id):
        session.delete(old)
    session.flush()
    now = clock.now()
    for rid in ids:
        session.add(SubjectRequestRecording(request_id=row.id, recording_id=rid, party=party_of(row, allowed[rid]),
                                            added_by=actor.username, added_at=now))
    row.redaction_note = (redaction_note or "").strip()
    row.reviewed_by, row.reviewed_at = actor.username, now
    row.status = RequestStatus.READY
    session.flush()
    _event(session, actor=actor.username, role=actor.role, action="reviewed", row=row, source_ip=source_ip,
           details={"recordings": len(ids), "redaction_noted": bool(row.redaction_note)}, clock=clock)
    return row


@dataclass
class ApproveOutcome:
    request: SubjectRequest
    denials: list[tuple[str, Decision]] = field(default_factory=list)
    link_url: str | None = None
    refusal: str | None = None
    """Why nothing was released before any recording was decided (the requester's number is unproven
    and the reviewer's confirmation does not cover it: ``proof``). Audited; the edge refuses with it."""
    pending: list[Pending] = field(default_factory=list)
    """An erasure request's destroyed recordings, whose blobs the edge deletes after the commit
    (``retention.shred.finish``)."""


def approve(
    session: Session, *, policy: PolicyDocument, actor: Actor, request_id: str, public_url: str,
    keyring: Keyring, link_days: int = LINK_DAYS_DEFAULT, max_downloads: int = DOWNLOADS_DEFAULT,
    facts_checked: Sequence[str] = (), source_ip: str | None = None, clock: Clock = system_clock,
) -> ApproveOutcome:
    """Release the reviewed recordings: each is decided for ``subject_access`` as ``actor`` (audited);
    if all are allowed, a link is created and mailed and the request is ``sent``. With denials nothing
    is released (each recording is on record as refused) and the outcome lists them (the caller commits
    the audit entries, then refuses)."""
    row = get(session, request_id)
    if row.status != RequestStatus.READY:
        raise Conflict(f"this request is {row.status}; review it (confirm its recordings) before releasing")
    if row.requester_user_id and row.requester_user_id == actor.user_id:
        raise AccessDenied("you cannot release your own request; another member of the team must",
                           clauses=CLAUSES)
    problems = []
    if not 1 <= link_days <= LINK_DAYS_MAX:
        problems.append(FieldProblem("link_days", f"between 1 and {LINK_DAYS_MAX}"))
    if not 1 <= max_downloads <= DOWNLOADS_MAX:
        problems.append(FieldProblem("max_downloads", f"between 1 and {DOWNLOADS_MAX}"))
    if problems:
        raise InvalidInput("invalid release settings:", problems)
    chosen = selection(session, row.id)
    outcome = ApproveOutcome(request=row)
    recs = [r for r in (session.get(Recording, item.recording_id) for item in chosen) if r is not None]
    refusal, confirmed = proof.release_refusal(session, policy=policy, row=row, chosen=recs,
                                               facts_checked=facts_checked)
    if refusal is not None:
        proof.audit_release_refused(session, row=row, actor=actor.username, role=actor.role, reason=refusal,
                                    facts_checked=facts_checked, source_ip=source_ip, clock=clock)
        outcome.refusal = refusal
        return outcome
    if row.asks_for == "erasure":
        _erase(session, policy=policy, actor=actor, row=row, recs=recs, confirmed=confirmed, outcome=outcome,
               keyring=keyring, source_ip=source_ip, clock=clock)
        return outcome
    decided = [(item.recording_id, recordings.decide_content(
        session, policy=policy, actor=actor, action=Action.EXPORT, recording_id=item.recording_id, purpose=PURPOSE,
        clock=clock)[0]) for item in chosen]
    outcome.denials = [(rid, d) for rid, d in decided if not d.allowed]
    _record_all_or_nothing(session, actor=actor, action=Action.EXPORT, decided=decided, source_ip=source_ip,
                           details={"subject_request": row.id, "step": "release"}, clock=clock)
    if outcome.denials:
        return outcome
    now = clock.now()
    if confirmed:
        proof.record_confirmation(session, row=row, actor=actor.username, role=actor.role, facts=confirmed,
                                  source_ip=source_ip, clock=clock)
    row.approved_by, row.approved_by_user_id = actor.username, actor.user_id
    row.status, row.sent_at = RequestStatus.SENT, now
    if chosen:
        token = secrets.token_urlsafe(32)
        link = DeliveryLink(id=new_id(), request_id=row.id, token_sha256=_sha256(token), created_at=now,
                            expires_at=now + timedelta(days=link_days), max_downloads=max_downloads, downloads=0)
        session.add(link)
        outcome.link_url = f"{public_url.rstrip('/')}/s/{token}"
        body = (f"Your request for copies of your call recordings ({row.id}) has been fulfilled: "
                f"{len(chosen)} recording{'s' if len(chosen) != 1 else ''}.\n\n"
                f"Download them here (a zip file with the audio and a list of the calls):\n{outcome.link_url}\n\n"
                f"The link works {max_downloads} time{'s' if max_downloads != 1 else ''} and until "
                f"{link.expires_at:%d %B %Y %H:%M} UTC. Do not forward this mail: anyone with the link can "
                "download the recordings.\n")
    else:
        body = (f"We looked for recordings matching your request ({row.id}) and hold none: either no calls "
                "were recorded, or they have already been destroyed under our retention policy.\n")
    notify.enqueue(session, to=row.email, subject="Your call recordings", body=body, clock=clock,
                   secrets=[outcome.link_url] if outcome.link_url else [], keyring=keyring)
    _event(session, actor=actor.username, role=actor.role, action="released", row=row, source_ip=source_ip,
           details={"recordings": len(chosen), "link_days": link_days, "max_downloads": max_downloads,
                    "on_time": row.due_at is None or now < row.due_at, "facts_confirmed": confirmed,
                    "phone_verified_numbers": len(proof.verified_numbers(session, row.id))}, clock=clock)
    return outcome


def _erase(session: Session, *, policy: PolicyDocument, actor: Actor, row: SubjectRequest, recs: list[Recording],
           confirmed: Sequence[str], outcome: ApproveOutcome, keyring: Keyring, source_ip: str | None,
           clock: Clock) -> None:
    """``approve`` for an erasure request: destroy, never release (``subject_requests.erasure``)."""
    from callvault.subject_requests import erasure  # imports capture.personal, which imports this module

    # The same authority as a release: the approver may act for this requester on each recording (subject_access,
    # their role's reach). Nothing is given out, so nothing is recorded as content access; a refusal stops it all.
    decided = [(rec.id, recordings.decide_content(session, policy=policy, actor=actor, action=Action.EXPORT,
                                                  recording_id=rec.id, purpose=PURPOSE, clock=clock)[0])
               for rec in recs if rec.state != RecordingState.DESTROYED]
    outcome.denials = [(rid, d) for rid, d in decided if not d.allowed]
    for rid, d in outcome.denials:
        audit.append(session, audit.AuditEvent(
            actor=actor.username, actor_role=actor.role, action="subject_request.erase_refused", decision="deny",
            object_type="recording", object_id=rid, purpose=PURPOSE, reason=d.reason, clauses=d.clauses,
            source_ip=source_ip, details={"subject_request": row.id}), clock=clock)
    if outcome.denials:
        return
    done = erasure.carry_out(session, policy=policy, actor=actor, request_id=row.id, recordings=recs,
                             keyring=keyring, source_ip=source_ip, clock=clock)
    outcome.pending = done.pending
    now = clock.now()
    if confirmed:
        proof.record_confirmation(session, row=row, actor=actor.username, role=actor.role, facts=confirmed,
                                  source_ip=source_ip, clock=clock)
    row.approved_by, row.approved_by_user_id = actor.username, actor.user_id
    row.status, row.sent_at, row.erasure_outcome = RequestStatus.SENT, now, done.outcome()
    notify.enqueue(session, to=row.email, subject="Your request to delete your call recordings",
                   body=erasure.caller_mail(row.id, done), clock=clock)
    _event(session, actor=actor.username, role=actor.role, action="erased", row=row, source_ip=source_ip,
           details={"destroyed": len(done.destroyed), "kept": len(done.kept),
                    "kept_reasons": [k["reason"][:300] for k in done.kept],
                    "on_time": row.due_at is None or now < row.due_at, "facts_confirmed": list(confirmed)},
           clock=clock)


def refuse(
    session: Session, *, policy: PolicyDocument, actor: Actor, request_id: str, reason: str,
    source_ip: str | None = None, clock: Clock = system_clock,
) -> SubjectRequest:
    """Refuse a verified request, with the reviewer's written reason mailed to the requester as written.

    For a request that cannot be fulfilled as asked (the facts match none of the calls, it asks for someone
    else's, it is a repeat): without this it sat in the queue until it went overdue. The requester is told why,
    because a refusal they are not told about is one they cannot contest (A4). Nothing is released and the
    matched recordings are no longer reachable for ``subject_access`` (only open requests reach them)."""
    _rules(policy)
    row = get(session, request_id)
    if row.status not in (RequestStatus.TO_REVIEW, RequestStatus.READY):
        raise Conflict(f"this request is {row.status}; only verified requests not yet sent can be refused")
    if row.requester_user_id and row.requester_user_id == actor.user_id:
        raise AccessDenied("you cannot decide your own request; another member of the team must", clauses=CLAUSES)
    text = (reason or "").strip()
    if not text:
        raise InvalidInput("invalid refusal:", [FieldProblem("reason", "write why, in words the requester will "
                                                                       "read: it is mailed to them as written")])
    if len(text) > MAX_DESCRIPTION:
        raise InvalidInput("invalid refusal:", [FieldProblem("reason", f"at most {MAX_DESCRIPTION} characters")])
    now = clock.now()
    row.status, row.refused_by, row.refused_at, row.refusal_reason = RequestStatus.REFUSED, actor.username, now, text
    session.flush()
    notify.enqueue(session, to=row.email, subject="Your request for call recordings", clock=clock,
                   body=(f"We cannot fulfil your request for copies of your call recordings ({row.id}).\n\n"
                         f"The reason:\n{text}\n\nIf you think this is wrong, reply to this mail or make a new "
                         "request with more detail about one of the calls.\n"))
    _event(session, actor=actor.username, role=actor.role, action="refused", row=row, source_ip=source_ip,
           details={"reason": text[:500], "on_time": row.due_at is None or now < row.due_at}, clock=clock)
    return row


def day_unit(policy: PolicyDocument) -> str:
    """What ``days_left`` counts: "working day" under a working-day deadline (B7), else "day" (calendar)."""
    return "working day" if policy.subject_requests.effective_deadline.working_days is not None else "day"


def days_left(policy: PolicyDocument, row: SubjectRequest, now: datetime) -> int | None:
    """Days from today (the request's region and time zone) to its due date, counted as the policy's deadline
    counts them (``day_unit``: working days for B7's 7 working days, calendar days for HIPAA's 30 or GDPR's
    month): 0 on the due day, negative once overdue, None when no clock runs (unverified, sent or refused)."""
    if row.due_on is None or row.due_at is None or row.status not in (RequestStatus.TO_REVIEW, RequestStatus.READY):
        return None
    today = now.astimezone(ZoneInfo(row.timezone)).date()
    if day_unit(policy) == "day":
        return min((row.due_on - today).days, -1) if now >= row.due_at else (row.due_on - today).days
    calendar = calendar_of(policy, row)
    if now >= row.due_at:
        return -max(1, calendar.working_days_between(row.due_on, today))
    return calendar.working_days_between(today, row.due_on)


def _first_refusal(decided: Sequence[tuple[str, Decision]]) -> str | None:
    return next((f"recording {rid}: {d.reason}" for rid, d in decided if not d.allowed), None)


def _record_all_or_nothing(
    session: Session, *, actor: Actor, action: Action, decided: Sequence[tuple[str, Decision]],
    source_ip: str | None, details: dict[str, object], refused: str | None = None, clock: Clock,
) -> None:
    """Record each recording's decision as what was given out. A release (and each download of it) is all
    or nothing: when one recording is refused, or ``refused`` says why the whole was, the recordings the
    policy allowed were not given out either, so they go on record as denied with that reason."""
    why = refused or _first_refusal(decided)
    for rid, decision in decided:
        if decision.allowed and why is not None:
            decision = recordings.withheld(decision, AccessDenied(f"withheld with the rest of the release: {why}",
                                                                  clauses=CLAUSES))
        recordings.record_content(session, actor=actor, action=action, recording_id=rid, decision=decision,
                                  source_ip=source_ip, details=details, clock=clock)


def revoke_links(session: Session, *, actor: Actor, request_id: str, source_ip: str | None = None,
                 clock: Clock = system_clock) -> int:
    """Revoke every live link of a request; returns how many."""
    row = get(session, request_id)
    now = clock.now()
    links = list(session.scalars(select(DeliveryLink).where(DeliveryLink.request_id == row.id,
                                                            DeliveryLink.revoked_at.is_(None))))
    for link in links:
        link.revoked_at, link.revoked_by = now, actor.username
    _event(session, actor=actor.username, role=actor.role, action="link_revoked", row=row, source_ip=source_ip,
           details={"links": len(links)}, clock=clock)
    return len(links)


def links_of(session: Session, request_id: str) -> list[DeliveryLink]:
    return list(session.scalars(select(DeliveryLink).where(DeliveryLink.request_id == request_id)
                                .order_by(DeliveryLink.created_at)))


# ------------------------------------------------------------------------------------------------ delivery
@dataclass(frozen=True)
class LinkRefused:
    """The link is unknown, expired, revoked or used up, or the release is no longer allowed (HTTP 410)."""

    reason: str
    message: str = "this download link is no longer valid; ask us for a new one"


@dataclass(frozen=True)
class ReleaseItem:
    recording: Recording
    party: str


@dataclass(frozen=True)
class Release:
    request: SubjectRequest
    link: DeliveryLink
    items: list[ReleaseItem]
    missing: list[str]
    """Recordings released earlier that no longer exist (destroyed under the retention policy since)."""


def open_link(
    session: Session, *, policy: PolicyDocument, token: str, source_ip: str | None, clock: Clock = system_clock,
) -> Release | LinkRefused:
    """Check a download link and decide every recording again, as the approver, for ``subject_access``.

    Every answer is audited. Returns ``LinkRefused`` (the caller commits, then refuses) for an
    unknown, expired, revoked or used-up link, or when the policy no longer allows the release (or a
    recording no longer belongs to the requester). On success one download is counted with a
    conditional UPDATE, so concurrent downloads cannot exceed the limit. Every recording is decided
    before any is recorded: a refused download is on record as refused for each of them.
    """
    now = clock.now()
    link = session.scalar(select(DeliveryLink).where(DeliveryLink.token_sha256 == _sha256(token[:200])))

    def refuse(reason: str, row: SubjectRequest | None = None) -> LinkRefused:
        audit.append(session, audit.AuditEvent(
            actor="(link)", action="subject_request.download", decision="deny", object_type="subject_request",
            object_id=row.id if row else "", purpose=PURPOSE, reason=reason, clauses=CLAUSES, source_ip=source_ip,
            details={"link": link.id} if link else None), clock=clock)
        return LinkRefused(reason=reason)

    if link is None:
        return refuse("unknown link")
    row = session.get(SubjectRequest, link.request_id)
    if row is None:
        return refuse("request deleted")
    if link.revoked_at is not None:
        return refuse("link revoked", row)
    if link.expires_at <= now:
        return refuse("link expired", row)
    if link.downloads >= link.max_downloads:
        return refuse("link used up", row)
    approver = session.get(User, row.approved_by_user_id) if row.approved_by_user_id else None
    if approver is None or not approver.active:
        return refuse("the person who released it no longer has an active account", row)
    from callvault.identity import service as identity

    actor = identity.actor_for(session, approver, policy)
    ext = _operator_extension(session, row)
    items: list[ReleaseItem] = []
    missing: list[str] = []
    decided: list[tuple[str, Decision]] = []
    for item in selection(session, row.id):
        rec = session.get(Recording, item.recording_id)
        if rec is None or rec.state != RecordingState.AVAILABLE:
            missing.append(item.recording_id)
            continue
        if _belongs(row, rec, operator_extension=ext):
            decision = recordings.decide_content(session, policy=policy, actor=actor, action=Action.DOWNLOAD,
                                                 recording_id=rec.id, purpose=PURPOSE, clock=clock)[0]
        else:
            decision = Decision(allowed=False, reason="it does not belong to this requester", clauses=CLAUSES,
                                purpose=PURPOSE, serves=None)
        decided.append((rec.id, decision))
        items.append(ReleaseItem(recording=rec, party=item.party))
    refused = _first_refusal(decided)
    if refused is None:
        counted = session.execute(
            update(DeliveryLink).where(DeliveryLink.id == link.id, DeliveryLink.downloads < DeliveryLink.max_downloads,
                                       DeliveryLink.revoked_at.is_(None))
            .values(downloads=DeliveryLink.downloads + 1))
        if getattr(counted, "rowcount", 0) != 1:
            refused = "link used up"
    details: dict[str, object] = {"subject_request": row.id, "link": link.id, "delivered_to": "requester"}
    _record_all_or_nothing(session, actor=actor, action=Action.DOWNLOAD, decided=decided, source_ip=source_ip,
                           details=details, refused=refused, clock=clock)
    if refused is not None:
        return refuse(refused, row)
    _event(session, actor="(link)", role="", action="downloaded", row=row, source_ip=source_ip,
           details={"link": link.id, "recordings": len(items), "missing": len(missing)}, clock=clock)
    return Release(request=row, link=link, items=items, missing=missing)


# ------------------------------------------------------------------------------------------- housekeeping
def purge_unverified(session: Session, *, clock: Clock = system_clock) -> int:
    """Delete requests never confirmed within ``UNVERIFIED_KEEP`` (data minimisation)."""
    cutoff = clock.now() - UNVERIFIED_KEEP
    rows = list(session.scalars(select(SubjectRequest).where(
        SubjectRequest.status == RequestStatus.AWAITING_VERIFICATION, SubjectRequest.received_at < cutoff)))
    for row in rows:
        session.delete(row)
    return len(rows)


def remind(session: Session, *, policy: PolicyDocument, points: Sequence[int], mail_domain: str,
           clock: Clock = system_clock) -> int:
    """Mail the team at each reminder point (working days before due) and flag overdue requests once."""
    now = clock.now()
    handled = 0
    open_rows = list(session.scalars(select(SubjectRequest).where(
        SubjectRequest.status.in_([RequestStatus.TO_REVIEW, RequestStatus.READY]),
        SubjectRequest.due_on.is_not(None))))
    for row in open_rows:
        assert row.due_on is not None and row.due_at is not None
        if row.due_at <= now:
            if row.overdue_flagged_at is None:
                row.overdue_flagged_at = now
                audit.append(session, audit.AuditEvent(
                    actor="system", action="subject_request.overdue", decision="info", object_type="subject_request",
                    object_id=row.id, purpose=PURPOSE, reason=f"not sent by {row.due_on}", clauses=CLAUSES),
                    clock=clock)
                _mail_team(session, policy, subject=f"OVERDUE: request for recordings due {row.due_on}",
                           dedup=f"subject:{row.id}:overdue", mail_domain=mail_domain, clock=clock,
                           body=f"Request {row.id} was due by {row.due_on} and has not been sent.\n"
                                f"callvault requests show {row.id}\n")
                webhooks.emit(session, "subject_request.overdue", {
                    "request_id": row.id, "due_on": row.due_on.isoformat(), "due_at": row.due_at.isoformat(),
                    "status": row.status}, clock=clock)
                handled += 1
            continue
        cal = calendar_of(policy, row)
        today = now.astimezone(ZoneInfo(cal.timezone)).date()
        left = cal.working_days_between(today, row.due_on)
        done = set(row.reminders_sent or [])
        due_points = sorted(p for p in points if left <= p and p not in done)
        if not due_points:
            continue
        _mail_team(session, policy, subject=f"Reminder: request for recordings due {row.due_on} "
                                             f"({left} working day{'s' if left != 1 else ''} left)",
                   dedup=f"subject:{row.id}:remind:{min(due_points)}", mail_domain=mail_domain, clock=clock,
                   body=f"Request {row.id} ({display_status(row, now)}) is due by {row.due_on}.\n"
                        f"callvault requests show {row.id}\n")
        webhooks.emit(session, "subject_request.due_soon", {
            "request_id": row.id, "due_on": row.due_on.isoformat(), "due_at": row.due_at.isoformat(),
            "working_days_left": left, "status": row.status}, clock=clock)
        row.reminders_sent = sorted(done | set(due_points))
        handled += 1
    return handled
