"""Proof that a caller's phone number is theirs, before any of its recordings is released (B7).

The email code proves only a mailbox: anyone can type anyone's number into the public form. So a
caller's recording is released only when one of these holds for its number:

- **phone-verified**: the caller entered the code sent *to that number* through the configured provider
  (``phone``; per number, 5 wrong codes void it, 30 minutes, stored as a salted hash), or
- **fact-confirmed**: the releasing reviewer confirmed, by name, at least the policy's
  ``subject_requests.identity_check.min_facts_confirmed`` of the facts the caller gave (``FACTS``), and
  every machine-checkable fact they confirmed matches that recording (its start within
  ``call_time_window_minutes`` of the stated time, its agent's first name).

Without phone proof the candidates shown to staff are limited to calls matching the stated facts, and
the staff views carry ``UNVERIFIED_WARNING``. Verification failures, refused releases and the reviewer's
confirmation are all on the audit log. Operators' own requests (B10) are proven by their account.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from callvault.audit import service as audit
from callvault.core.clock import Clock
from callvault.core.errors import FieldProblem
from callvault.identity.counters import Counters
from callvault.identity.models import User
from callvault.policy.schema import PolicyDocument
from callvault.recordings.models import Recording
from callvault.subject_requests import limits, region
from callvault.subject_requests.models import PhoneProof, RequesterKind, RequestStatus, SubjectRequest

FACTS = ("call_time", "agent_name", "reason")
"""What a reviewer may confirm: the call's date/time, the agent's first name, the reason for the call."""
FACT_FIELDS = {"call_time": "call_date", "agent_name": "agent_first_name", "reason": "call_reason"}
"""Which form field gives each fact (the call's time counts as given once its date is)."""
PHONE_CODE_DIGITS = 6
PHONE_CODE_TTL = timedelta(minutes=30)
MAX_PHONE_ATTEMPTS = 5
MAX_NAME = 64
UNVERIFIED_WARNING = ("Phone number NOT verified: only the email address was proven. Check the facts below "
                      "before releasing.")
_PURPOSE, _CLAUSES = "subject_access", ("B7", "B10", "A4")


def _event(session: Session, *, actor: str, action: str, row: SubjectRequest, decision: str = "info",
           reason: str = "", role: str = "", source_ip: str | None = None,
           details: dict[str, object] | None = None, clock: Clock) -> None:
    audit.append(session, audit.AuditEvent(
        actor=actor, actor_role=role, action=f"subject_request.{action}", decision=decision,
        object_type="subject_request", object_id=row.id, purpose=_PURPOSE, reason=reason, clauses=_CLAUSES,
        source_ip=source_ip, details=details), clock=clock)


# ------------------------------------------------------------------------------------------ the form's facts
@dataclass(frozen=True)
class StatedFacts:
    """What the caller says about one of the calls."""

    call_date: date | None = None
    call_time: time | None = None
    agent_first_name: str = ""
    call_reason: str = ""


def validate_facts(policy: PolicyDocument, facts: StatedFacts, *, required: bool, today: date,
                   max_reason: int) -> list[FieldProblem]:
    """Problems with the stated facts. ``required`` (no phone provider): the call's date and enough other
    facts for the reviewer to confirm the policy's minimum."""
    problems: list[FieldProblem] = []
    if facts.call_date and facts.call_date > today + timedelta(days=1):
        problems.append(FieldProblem("call_date", "the call's date is in the future"))
    if len(facts.agent_first_name) > MAX_NAME:
        problems.append(FieldProblem("agent_first_name", f"at most {MAX_NAME} characters"))
    if len(facts.call_reason) > max_reason:
        problems.append(FieldProblem("call_reason", f"at most {max_reason} characters"))
    if required:
        needed = policy.subject_requests.identity_check.min_facts_confirmed
        messages = {
            "call_date": "give the date of one of your calls (approximately): we cannot send a code to your "
                         "phone, so we check what you tell us against our recordings",
            "call_reason": "say what the call was about, so we can check the recording is yours",
            "agent_first_name": "give the first name of the person you spoke to",
        }
        given = {"call_date": facts.call_date is not None, "call_reason": bool(facts.call_reason.strip()),
                 "agent_first_name": bool(facts.agent_first_name.strip())}
        for name in list(messages)[:needed]:
            if not given[name]:
                problems.append(FieldProblem(name, messages[name]))
    return problems


def given_facts(row: SubjectRequest) -> list[str]:
    """The facts the caller gave (``FACTS`` names)."""
    given = {"call_time": row.call_date is not None, "agent_name": bool(row.agent_first_name),
             "reason": bool(row.call_reason)}
    return [f for f in FACTS if given[f]]


# ------------------------------------------------------------------------------------------ matching facts
@dataclass(frozen=True)
class FactMatch:
    """How one recording compares with the caller's facts: True/False, or None when not stated."""

    call_time: bool | None
    agent_name: bool | None
    call_time_note: str
    agent_note: str


def _fold(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)).casefold().strip()


def _first_names(user: User | None, agent: str) -> set[str]:
    names = {_fold(re.split(r"[._\-\s]", agent)[0])}
    if user is not None and user.display_name.strip():
        names.add(_fold(user.display_name.split()[0]))
    return {n for n in names if n}


def check_facts(session: Session, policy: PolicyDocument, row: SubjectRequest, rec: Recording) -> FactMatch:
    """Compare a recording's metadata with what the caller said (times in the request's time zone)."""
    zone = ZoneInfo(row.timezone)
    started = rec.started_at.astimezone(zone)
    call_time: bool | None = None
    time_note = "no date given"
    if row.call_date is not None:
        window = timedelta(minutes=policy.subject_requests.identity_check.call_time_window_minutes)
        if row.call_time is not None:
            stated = datetime.combine(row.call_date, row.call_time, tzinfo=zone)
            gap = abs(started - stated)
            call_time = gap <= window
            time_note = (f"started {started:%Y-%m-%d %H:%M}; stated {stated:%Y-%m-%d %H:%M} "
                         f"({int(gap.total_seconds() // 60)} min apart, window {int(window.total_seconds() // 60)})")
        else:
            call_time = started.date() == row.call_date
            time_note = f"started {started:%Y-%m-%d %H:%M}; stated {row.call_date:%Y-%m-%d} (no time given)"
    agent: bool | None = None
    agent_note = "no name given"
    if row.agent_first_name:
        if not rec.agent:
            agent, agent_note = False, "no agent recorded for this call"
        else:
            user = session.scalar(select(User).where(User.username == rec.agent))
            names = _first_names(user, rec.agent)
            agent = _fold(row.agent_first_name) in names
            shown = user.display_name if user is not None and user.display_name else rec.agent
            agent_note = f"agent {shown}; stated {row.agent_first_name!r}"
    return FactMatch(call_time=call_time, agent_name=agent, call_time_note=time_note, agent_note=agent_note)


def verified_numbers(session: Session, request_id: str) -> set[str]:
    return set(session.scalars(select(PhoneProof.phone_number).where(PhoneProof.request_id == request_id,
                                                                      PhoneProof.verified_at.is_not(None))))


def proofs_of(session: Session, request_id: str) -> list[PhoneProof]:
    return list(session.scalars(select(PhoneProof).where(PhoneProof.request_id == request_id)
                                .order_by(PhoneProof.phone_number)))


def _facts_fit(match: FactMatch) -> bool:
    # The stated time narrows the calls; a wrong agent name stays visible to the reviewer as a red flag.
    return match.call_time is True


def filter_candidates(session: Session, *, policy: PolicyDocument, row: SubjectRequest,
                      recs: Sequence[Recording]) -> list[Recording]:
    """A caller's candidates: every call of a phone-verified number; of an unverified number, only the
    calls that match the stated date/time (none when no date was given)."""
    if row.kind != RequesterKind.CALLER:
        return list(recs)
    proven = verified_numbers(session, row.id)
    return [r for r in recs if r.remote_number in proven or _facts_fit(check_facts(session, policy, row, r))]


def needs_warning(session: Session, row: SubjectRequest) -> bool:
    """Whether any of a caller's numbers is unproven (staff views show ``UNVERIFIED_WARNING``)."""
    return row.kind == RequesterKind.CALLER and not set(row.phone_numbers) <= verified_numbers(session, row.id)


# ----------------------------------------------------------------------------------------------- release
def release_refusal(session: Session, *, policy: PolicyDocument, row: SubjectRequest, chosen: Iterable[Recording],
                    facts_checked: Sequence[str]) -> tuple[str | None, list[str]]:
    """Why these recordings may not be released to this requester (or None), and the facts confirmed.

    A recording of a phone-verified number needs nothing more. Any other needs the reviewer to name at
    least ``min_facts_confirmed`` facts the caller gave, each one that can be checked matching it."""
    if row.kind != RequesterKind.CALLER:
        return None, []
    proven = verified_numbers(session, row.id)
    unproven = [r for r in chosen if r.remote_number not in proven]
    if not unproven:
        return None, []
    confirmed = list(dict.fromkeys(facts_checked))
    unknown = [f for f in confirmed if f not in FACTS]
    if unknown:
        return f"facts_checked: {', '.join(unknown)} is not one of {', '.join(FACTS)}", confirmed
    base = (f"Phone number NOT verified for {len(unproven)} of the recordings: only the email address was proven. ")
    if not confirmed:
        return (base + "Check the facts the caller gave against the calls and confirm which you checked "
                       "(facts_checked), or wait until the caller enters the code sent to the number."), confirmed
    given = given_facts(row)
    missing = [f for f in confirmed if f not in given]
    if missing:
        return base + f"The caller did not state {', '.join(missing)}, so it cannot be confirmed.", confirmed
    needed = policy.subject_requests.identity_check.min_facts_confirmed
    if len(confirmed) < needed:
        return (base + f"Confirm at least {needed} of the facts the caller gave ({', '.join(given) or 'none'}); "
                       f"you confirmed {len(confirmed)}."), confirmed
    for rec in unproven:
        match = check_facts(session, policy, row, rec)
        if match.call_time is not True:
            return base + f"Recording {rec.id} does not match the stated call time: {match.call_time_note}.", confirmed
        if "agent_name" in confirmed and match.agent_name is not True:
            return base + f"Recording {rec.id} does not match the stated agent: {match.agent_note}.", confirmed
    return None, confirmed


def audit_release_refused(session: Session, *, row: SubjectRequest, actor: str, role: str, reason: str,
                          facts_checked: Sequence[str], source_ip: str | None, clock: Clock) -> None:
    _event(session, actor=actor, role=role, action="release", row=row, decision="deny", reason=reason[:500],
           source_ip=source_ip, details={"facts_checked": list(facts_checked)[:10]}, clock=clock)


def record_confirmation(session: Session, *, row: SubjectRequest, actor: str, role: str, facts: Sequence[str],
                        source_ip: str | None, clock: Clock) -> None:
    """Keep (and audit) which facts the releasing reviewer confirmed for the unproven numbers."""
    row.facts_confirmed, row.facts_confirmed_by = list(facts), actor
    _event(session, actor=actor, role=role, action="facts_confirmed", row=row, source_ip=source_ip,
           reason="phone number not verified; the reviewer confirmed the caller's facts",
           details={"facts_checked": list(facts), "given": given_facts(row)}, clock=clock)


# ------------------------------------------------------------------------------------------- phone codes
def _code_hash(request_id: str, number: str, code: str) -> str:
    # Salted with the request and the number: equal codes elsewhere share no hash.
    return hashlib.sha256(f"subject-phone:{request_id}:{number}:{code}".encode()).hexdigest()


def issue_phone_codes(session: Session, *, policy: PolicyDocument, request_id: str, counters: Counters,
                      source_ip: str | None, clock: Clock) -> list[tuple[str, str]]:
    """New codes for each unproven number of a verified caller's request: (number, text to send).

    At most ``limits.PHONE_CODES_PER_NUMBER`` a day go to one number, whoever asks, so the form cannot be
    used to flood a phone; a number over it gets none (audited) and the request relies on facts."""
    row = session.get(SubjectRequest, request_id[:36])
    if row is None or row.kind != RequesterKind.CALLER or row.status not in (RequestStatus.TO_REVIEW,
                                                                              RequestStatus.READY):
        return []
    now = clock.now()
    proven = verified_numbers(session, row.id)
    out: list[tuple[str, str]] = []
    for number in row.phone_numbers:
        if number in proven:
            continue
        if limits.blocked_until(session, counters, limits.PHONE_CODES_PER_NUMBER, number, now=now) is not None:
            _event(session, actor="(public)", action="phone_code", row=row, decision="deny", source_ip=source_ip,
                   reason="too many codes sent to this number today; none sent", clock=clock)
            continue
        limits.count(session, counters, limits.PHONE_CODES_PER_NUMBER, number, now=now)
        code = f"{secrets.randbelow(10 ** PHONE_CODE_DIGITS):0{PHONE_CODE_DIGITS}d}"
        proof = session.get(PhoneProof, (row.id, number)) or PhoneProof(request_id=row.id, phone_number=number)
        proof.code_sha256, proof.expires_at, proof.attempts = _code_hash(row.id, number, code), now + PHONE_CODE_TTL, 0
        proof.sent_at, proof.send_error = None, ""
        session.add(proof)
        out.append((number, f"{policy.organisation}: your code to confirm your request for call recordings is "
                            f"{code}. It is valid {int(PHONE_CODE_TTL.total_seconds() // 60)} minutes. If you did "
                            "not ask for this, ignore it."))
    session.flush()
    return out


def record_sends(session: Session, *, request_id: str, results: Mapping[str, str], source_ip: str | None,
                 clock: Clock) -> None:
    """What the provider answered for each number ("" = accepted), on the proofs and the audit log."""
    row = session.get(SubjectRequest, request_id[:36])
    if row is None:
        return
    now = clock.now()
    for number, error in results.items():
        proof = session.get(PhoneProof, (row.id, number))
        if proof is None:
            continue
        if error:
            proof.code_sha256, proof.send_error = None, error[:300]
        else:
            proof.sent_at = now
    failed = {n: e for n, e in results.items() if e}
    _event(session, actor="(public)", action="phone_code", row=row, decision="deny" if failed else "info",
           reason="; ".join(sorted(set(failed.values())))[:500], source_ip=source_ip,
           details={"sent": sum(1 for e in results.values() if not e), "failed": len(failed)}, clock=clock)


@dataclass(frozen=True)
class PhoneVerifyOutcome:
    ok: bool
    message: str
    request: SubjectRequest | None = None


def _plain(number: str) -> str:
    return re.sub(r"[\s().\-]", "", number or "")[:32]


def verify_phone(session: Session, *, policy: PolicyDocument, request_id: str, phone_number: str, code: str,
                 source_ip: str | None, counters: Counters, clock: Clock) -> PhoneVerifyOutcome:
    """Check the code sent to one of the request's numbers. Every failure is audited and counted against
    the proof (``MAX_PHONE_ATTEMPTS``, then void) and the client address (``limits.VERIFY_PER_ADDRESS``);
    the caller commits in every case, then refuses when ``ok`` is false.

    A number proven here is the first point at which its recorded calls may decide the request's region (B7):
    ``region.refine_after_proof`` does so, and what changes for the requester is in the outcome's message."""
    now = clock.now()
    limits.check(session, counters, [(limits.VERIFY_PER_ADDRESS, source_ip)], now=now)
    row = session.get(SubjectRequest, request_id[:36]) if request_id else None
    number = _plain(phone_number)
    proof = session.get(PhoneProof, (row.id, number)) if row is not None else None
    fail = "that code is wrong or has expired"

    def refuse(message: str, reason: str) -> PhoneVerifyOutcome:
        limits.count(session, counters, limits.VERIFY_PER_ADDRESS, source_ip, now=now)
        if row is not None:
            _event(session, actor="(public)", action="phone_verify", row=row, decision="deny", reason=reason,
                   source_ip=source_ip, details={"attempts": proof.attempts if proof else 0}, clock=clock)
        return PhoneVerifyOutcome(False, message, row)

    if (row is None or proof is None or proof.code_sha256 is None
            or row.status not in (RequestStatus.TO_REVIEW, RequestStatus.READY)):
        return refuse(f"{fail}; no code is waiting for that number", "no code waiting for that number")
    if proof.expires_at <= now:
        proof.code_sha256 = None
        return refuse(f"{fail}; codes last {int(PHONE_CODE_TTL.total_seconds() // 60)} minutes",
                      "phone code expired")
    if not hmac.compare_digest(proof.code_sha256, _code_hash(row.id, number, (code or "").strip()[:16])):
        proof.attempts += 1
        left = MAX_PHONE_ATTEMPTS - proof.attempts
        if left <= 0:
            proof.code_sha256 = None
            return refuse(f"{fail}; too many wrong codes, so this number cannot be confirmed by code",
                          "wrong phone code; code void")
        return refuse(f"{fail}; {left} attempt{'s' if left != 1 else ''} left", "wrong phone code")
    proof.code_sha256, proof.verified_at = None, now
    _event(session, actor="(public)", action="phone_verified", row=row, source_ip=source_ip,
           details={"number_index": row.phone_numbers.index(number) if number in row.phone_numbers else -1},
           clock=clock)
    told = region.refine_after_proof(session, policy=policy, row=row,
                                     proven=verified_numbers(session, row.id) | {number}, clock=clock)
    return PhoneVerifyOutcome(True, "thank you: your phone number is confirmed" + (f"; {told}" if told else ""), row)
