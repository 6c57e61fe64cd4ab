"""Retention rules applied to recordings: destruction dates, cases, legal holds, the report.

Every available recording carries ``destroy_after`` and ``retention_rule`` (A3, A9, B11):

* ``max_age``: the policy's cap, ``retention.max_age_months`` after the call started;
* ``case_resolved``: when the policy destroys on case resolution (A9), its case's ``resolved_at``
  plus ``post_resolution_grace_days``, if that comes before the cap ("whichever first").

A legal hold on the recording or on its case sets ``on_hold``, which suspends destruction without
changing the date: once the last hold is released the recording goes at its date (at once if passed).
The values are recomputed whenever a case, a hold or the recording's case link changes, and by the
sweep for rows computed under another policy version (``retention_basis``), so the columns are a
cache of these rules, never a second source of truth.

Services take the session and the actor and never commit; every change is audited.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from callvault.audit import service as audit
from callvault.core.clock import Clock, system_clock
from callvault.core.errors import AccessDenied, Conflict, FieldProblem, InvalidInput, NotFound
from callvault.core.ids import new_id
from callvault.oversight import service as oversight
from callvault.policy.schema import PolicyDocument, add_months
from callvault.recordings.models import Recording, RecordingState
from callvault.retention.models import Case, CaseKind, CaseStatus, DestructionRecord, LegalHold, RetentionRule

REFRESH_BATCH = 500


def retention_basis(policy: PolicyDocument) -> str:
    """The policy identity stored with computed dates, to spot dates computed under another version."""
    return f"{policy.policy_id}@{policy.version}"


def may_manage(policy: PolicyDocument, role: str) -> bool:
    """Who opens/resolves cases and places/releases holds: administering roles and roles that reach all
    recordings (leadership). Specialists never: they could otherwise keep their own calls forever."""
    rule = policy.roles.get(role)
    return bool(rule and (rule.can_administer or rule.content_scope == "all"))


def may_hold(policy: PolicyDocument, role: str) -> bool:
    """Who places, renews and releases legal holds: only the roles ``retention.legal_hold.roles`` names.

    Reaching every recording is not enough: a hold keeps recordings past the retention cap, so a QA reviewer
    who can hear any call must not be able to keep one forever (A9, B9, B11)."""
    return bool(role) and role in policy.retention.legal_hold.roles


def require_holder(policy: PolicyDocument, role: str, what: str) -> None:
    """AccessDenied unless ``role`` is one the policy names for legal holds (the edge audits the denial)."""
    if not may_hold(policy, role):
        named = ", ".join(policy.retention.legal_hold.roles) or "none"
        raise AccessDenied(f"role {role or '(none)'} may not {what}",
                           reason=f"only the roles retention.legal_hold.roles names ({named}) may {what}",
                           clauses=("A9", "B9"))


def review_bounds(policy: PolicyDocument, today: date) -> tuple[date, date]:
    """The earliest and latest review date a hold set ``today`` may name (tomorrow .. max_review_months)."""
    return today + timedelta(days=1), add_months(today, policy.retention.legal_hold.max_review_months)


def _check_review(policy: PolicyDocument, review_on: date, today: date) -> FieldProblem | None:
    first, last = review_bounds(policy, today)
    if review_on < first:
        return FieldProblem("review_date", "must be in the future")
    if review_on > last:
        return FieldProblem("review_date", f"must be on or before {last.isoformat()}: the policy allows at most "
                                           f"{policy.retention.legal_hold.max_review_months} months before a hold "
                                           "is reviewed (retention.legal_hold.max_review_months)")
    return None


def require_manager(policy: PolicyDocument, role: str, what: str) -> None:
    """AccessDenied unless ``role`` may manage retention (the edge audits the denial)."""
    if not may_manage(policy, role):
        raise AccessDenied(f"role {role or '(none)'} may not {what}",
                           reason=f"only administering roles and leadership may {what}", clauses=("A9",))


# ------------------------------------------------------------------------------------- computation
def keep_floor(policy: PolicyDocument, *, started_at: datetime, keep_until: datetime | None) -> datetime | None:
    """The earliest moment a recording may be destroyed or altered: the later of what it already carries
    (the longest minimum of any earlier version, an extension) and this policy's minimum. Never earlier."""
    floors = [d for d in (keep_until, policy.retention.minimum_until(started_at)) if d is not None]
    return max(floors) if floors else None


def compute_destruction(
    policy: PolicyDocument, *, started_at: datetime, case: Case | None, keep_until: datetime | None = None,
) -> tuple[datetime, RetentionRule]:
    """When a recording must go and which rule says so (holds are applied separately).

    The cap in force applies to every recording, old ones included, and a resolved case brings the date
    forward, but neither ever goes below the floor (``keep_floor``): a minimum is never undercut."""
    rules = policy.retention
    when, rule = rules.expires_at(started_at), RetentionRule.MAX_AGE
    if (rules.destroy_on_case_resolution and case is not None and case.status == CaseStatus.RESOLVED
            and case.resolved_at is not None):
        early = case.resolved_at + timedelta(days=rules.post_resolution_grace_days)
        if early < when:
            when, rule = early, RetentionRule.CASE_RESOLVED
    floor = keep_floor(policy, started_at=started_at, keep_until=keep_until)
    if floor is not None and floor > when:
        when, rule = floor, RetentionRule.MIN_AGE
    return when, rule


def under_minimum(row: Recording, now: datetime) -> bool:
    """Whether ``row`` is still within its retention minimum (nothing may destroy or alter it yet)."""
    return row.keep_until is not None and row.keep_until > now


def minimum_refusal(policy: PolicyDocument, row: Recording, what: str) -> str:
    """The sentence a refused destruction or alteration answers with (names the rule and the date)."""
    assert row.keep_until is not None
    clause = f", {policy.retention.min_age_clause}" if policy.retention.min_age_clause else ""
    return (f"recording {row.id} must be kept unaltered until {row.keep_until:%Y-%m-%d} "
            f"(retention.min_age_months{clause}; {row.keep_until_basis or 'minimum'}): it cannot be {what} before")


def refresh(session: Session, *, policy: PolicyDocument, rows: Sequence[Recording], just_stored: bool = False) -> None:
    """Recompute ``destroy_after``/``retention_rule``/``on_hold`` for these available rows.

    ``just_stored``: the rows become available in this transaction (ingest), so no hold can name them
    yet (``place_hold`` needs an available recording) and only their cases' holds are looked up.
    """
    rows = [r for r in rows if r.state == RecordingState.AVAILABLE]
    if not rows:
        return
    refs = {r.case_ref for r in rows if r.case_ref}
    cases = ({c.ref: c for c in session.scalars(select(Case).where(Case.ref.in_(refs)))} if refs else {})
    held_ids, held_cases = _active_holds(session, [] if just_stored else [r.id for r in rows], refs)
    basis = retention_basis(policy)
    for row in rows:
        floor = keep_floor(policy, started_at=row.started_at, keep_until=row.keep_until)
        if floor is not None and (row.keep_until is None or floor > row.keep_until):
            row.keep_until = floor
            row.keep_until_basis = f"min_age_months={policy.retention.min_age_months} under {basis}"
        when, rule = compute_destruction(policy, started_at=row.started_at, keep_until=row.keep_until,
                                         case=cases.get(row.case_ref) if row.case_ref else None)
        row.destroy_after = when
        row.retention_rule = rule.value
        row.on_hold = row.id in held_ids or (row.case_ref is not None and row.case_ref in held_cases)
        row.retention_basis = basis
    session.flush()


def refresh_where(session: Session, *, policy: PolicyDocument, condition: ColumnElement[bool]) -> int:
    """Recompute every available recording matching ``condition``, in batches; returns how many."""
    done = 0
    after = ""
    while True:
        rows = list(session.scalars(
            select(Recording).where(Recording.state == RecordingState.AVAILABLE, condition, Recording.id > after)
            .order_by(Recording.id).limit(REFRESH_BATCH)))
        if not rows:
            return done
        refresh(session, policy=policy, rows=rows)
        done += len(rows)
        after = rows[-1].id


def refresh_stale(session: Session, *, policy: PolicyDocument) -> int:
    """Recompute rows whose dates were computed under another policy version (or never)."""
    basis = retention_basis(policy)
    return refresh_where(session, policy=policy, condition=or_(
        Recording.retention_basis.is_(None), Recording.retention_basis != basis))


def _active_holds(session: Session, recording_ids: Iterable[str], refs: Iterable[str]) -> tuple[set[str], set[str]]:
    ids, refs = list(recording_ids), list(refs)
    conds = []
    if ids:
        conds.append(LegalHold.recording_id.in_(ids))
    if refs:
        conds.append(LegalHold.case_ref.in_(refs))
    if not conds:
        return set(), set()
    held_ids: set[str] = set()
    held_cases: set[str] = set()
    for hold in session.scalars(select(LegalHold).where(LegalHold.released_at.is_(None), or_(*conds))):
        if hold.recording_id:
            held_ids.add(hold.recording_id)
        if hold.case_ref:
            held_cases.add(hold.case_ref)
    return held_ids, held_cases


# -------------------------------------------------------------------------------------------- cases
def get_case(session: Session, ref: str) -> Case:
    case = session.get(Case, ref)
    if case is None:
        raise NotFound(f"no case {ref!r}")
    return case


def find_case(session: Session, ref: str | None) -> Case | None:
    """The case ``ref`` names, or None (no reference, or no such case opened yet)."""
    return session.get(Case, ref) if ref else None


def case_on_hold(session: Session, ref: str | None) -> bool:
    """Whether an active legal hold covers the whole case ``ref`` (and so every recording that joins it)."""
    return bool(ref) and bool(_active_holds(session, [], [ref or ""])[1])


def expired_on_arrival(
    session: Session, *, policy: PolicyDocument, started_at: datetime, case_ref: str | None, now: datetime,
) -> tuple[datetime, RetentionRule] | None:
    """For a call not stored yet: its destruction date and rule when that date has already come and no
    legal hold on its case would keep it (A3, A9, B11); None when it may be stored.

    Stored, such a call would be playable until the next sweep. An open case does not keep a recording
    past the cap (``compute_destruction``); a hold on the case does (the sweep skips held recordings).
    """
    when, rule = compute_destruction(policy, started_at=started_at, case=find_case(session, case_ref))
    # A call whose minimum has not ended yet is never "expired" (compute_destruction applies the floor).
    if when > now or case_on_hold(session, case_ref):
        return None
    return when, rule


def unresolved_case(session: Session, ref: str | None) -> tuple[str, Case | None] | None:
    """``(ref, case)`` when ``ref`` names a case not resolved yet (open, or not opened so far: ``case`` is
    None), else None. A recording carrying such a reference is evidence of an issue still in hand (A9)."""
    if not ref:
        return None
    case = session.get(Case, ref)
    if case is not None and case.status == CaseStatus.RESOLVED:
        return None
    return ref, case


def list_cases(session: Session) -> list[Case]:
    """Every case, newest first."""
    return list(session.scalars(select(Case).order_by(Case.opened_at.desc(), Case.ref)))


def _check_ref(ref: str) -> str:
    ref = ref.strip()
    if not (0 < len(ref) <= 100) or not ref.isprintable():
        raise InvalidInput("invalid case:", [FieldProblem("ref", "must be 1-100 printable characters")])
    return ref


def open_case(
    session: Session, *, policy: PolicyDocument, actor: str, actor_role: str, ref: str, kind: str,
    description: str = "", clock: Clock = system_clock,
) -> Case:
    """Open a complaint, investigation or legal claim; recordings whose ``case_ref`` is ``ref`` join it."""
    require_manager(policy, actor_role, "open cases")
    ref = _check_ref(ref)
    if kind not in set(CaseKind):
        raise InvalidInput("invalid case:", [FieldProblem(
            "kind", f"must be one of {', '.join(k.value for k in CaseKind)}")])
    if session.get(Case, ref) is not None:
        raise Conflict(f"case {ref!r} already exists")
    case = Case(ref=ref, kind=kind, status=CaseStatus.OPEN, description=description.strip(), opened_at=clock.now(),
                opened_by=actor)
    session.add(case)
    session.flush()
    refresh_where(session, policy=policy, condition=Recording.case_ref == ref)
    audit.append(session, audit.AuditEvent(
        actor=actor, actor_role=actor_role, action="retention.case_opened", object_type="case", object_id=ref,
        details={"kind": kind}, clauses=("A9",)), clock=clock)
    return case


def resolve_case(
    session: Session, *, policy: PolicyDocument, actor: str, actor_role: str, ref: str, clock: Clock = system_clock,
) -> Case:
    """Mark a case resolved; under a policy that destroys on resolution its recordings' dates move up (A9)."""
    require_manager(policy, actor_role, "resolve cases")
    case = get_case(session, ref)
    if case.status == CaseStatus.RESOLVED:
        raise Conflict(f"case {ref!r} is already resolved")
    case.status = CaseStatus.RESOLVED
    case.resolved_at = clock.now()
    case.resolved_by = actor
    session.flush()
    count = refresh_where(session, policy=policy, condition=Recording.case_ref == ref)
    audit.append(session, audit.AuditEvent(
        actor=actor, actor_role=actor_role, action="retention.case_resolved", object_type="case", object_id=ref,
        details={"recordings": count, "grace_days": policy.retention.post_resolution_grace_days,
                 "destroy_on_resolution": policy.retention.destroy_on_case_resolution},
        clauses=("A9",)), clock=clock)
    return case


def reopen_case(
    session: Session, *, policy: PolicyDocument, actor: str, actor_role: str, ref: str, clock: Clock = system_clock,
) -> Case:
    """Reopen a resolved case: its recordings fall back to the cap (those already destroyed stay destroyed)."""
    require_manager(policy, actor_role, "reopen cases")
    case = get_case(session, ref)
    if case.status != CaseStatus.RESOLVED:
        raise Conflict(f"case {ref!r} is not resolved")
    case.status, case.resolved_at, case.resolved_by = CaseStatus.OPEN, None, None
    session.flush()
    refresh_where(session, policy=policy, condition=Recording.case_ref == ref)
    audit.append(session, audit.AuditEvent(
        actor=actor, actor_role=actor_role, action="retention.case_reopened", object_type="case", object_id=ref,
        clauses=("A9",)), clock=clock)
    return case


def resolve_for_integration(
    session: Session, *, policy: PolicyDocument, actor: str, ref: str, resolved_at: datetime,
    clock: Clock = system_clock,
) -> tuple[str, int]:
    """A CRM says ticket ``ref`` was resolved at ``resolved_at``: its recordings enter the grace period (A9).

    For the CRM integration, which has already checked that the policy lets it resolve cases
    (``integrations.crm.resolve_cases``); ``resolve_case`` is the path for people. A case that does
    not exist yet is opened (as a complaint) when available recordings carry ``ref`` as their
    ``case_ref``; with none, nothing changes. Returns (outcome, recordings recomputed), outcome being
    ``resolved``, ``already_resolved`` or ``no_recordings``.
    """
    ref = _check_ref(ref)
    case = session.get(Case, ref)
    linked = int(session.scalar(select(func.count()).select_from(Recording).where(
        Recording.case_ref == ref, Recording.state == RecordingState.AVAILABLE)) or 0)
    if case is None:
        if not linked:
            return "no_recordings", 0
        case = Case(ref=ref, kind=CaseKind.COMPLAINT, status=CaseStatus.OPEN, opened_at=min(resolved_at, clock.now()),
                    opened_by=actor, description="opened from the CRM when its ticket was resolved")
        session.add(case)
        session.flush()
    if case.status == CaseStatus.RESOLVED:
        return "already_resolved", 0
    case.status, case.resolved_at, case.resolved_by = CaseStatus.RESOLVED, min(resolved_at, clock.now()), actor
    session.flush()
    count = refresh_where(session, policy=policy, condition=Recording.case_ref == ref)
    audit.append(session, audit.AuditEvent(
        actor=actor, actor_role="integration", action="retention.case_resolved", object_type="case", object_id=ref,
        details={"recordings": count, "grace_days": policy.retention.post_resolution_grace_days,
                 "destroy_on_resolution": policy.retention.destroy_on_case_resolution,
                 "resolved_at": case.resolved_at.isoformat() if case.resolved_at else None},
        clauses=("A9",)), clock=clock)
    return "resolved", count


def reopen_for_integration(
    session: Session, *, policy: PolicyDocument, actor: str, ref: str, clock: Clock = system_clock,
) -> tuple[str, int]:
    """A CRM says ticket ``ref`` was reopened: a resolved case reopens and its recordings' dates are
    recomputed (back to the cap; those already destroyed stay destroyed). Keeping recordings longer
    needs no permission beyond a configured connector. Returns (``reopened`` or ``not_resolved``, count)."""
    case = session.get(Case, _check_ref(ref))
    if case is None or case.status != CaseStatus.RESOLVED:
        return "not_resolved", 0
    case.status, case.resolved_at, case.resolved_by = CaseStatus.OPEN, None, None
    session.flush()
    count = refresh_where(session, policy=policy, condition=Recording.case_ref == ref)
    audit.append(session, audit.AuditEvent(
        actor=actor, actor_role="integration", action="retention.case_reopened", object_type="case", object_id=ref,
        details={"recordings": count}, clauses=("A9",)), clock=clock)
    return "reopened", count


def link_recording(
    session: Session, *, policy: PolicyDocument, actor: str, actor_role: str, ref: str, recording_id: str,
    clock: Clock = system_clock,
) -> Recording:
    """Link a recording to a case (replacing any earlier link) and recompute its date.

    A link may keep a recording longer, never shorter: moving it out of a case whose legal hold covers it
    would release the hold without a holder's say, and moving it to a resolved case would bring its
    destruction forward; both are Conflicts (A9, B9, B11). Such a recording stays with its case until the
    hold is released or the case resolved by those who may."""
    require_manager(policy, actor_role, "link recordings to cases")
    get_case(session, ref)
    row = session.get(Recording, recording_id)
    if row is None or row.state != RecordingState.AVAILABLE:
        raise NotFound("no such recording")
    previous = row.case_ref
    refresh(session, policy=policy, rows=[row])  # its standing now, under this policy version
    held_before, until_before = row.on_hold, row.destroy_after
    row.case_ref = ref
    refresh(session, policy=policy, rows=[row])
    if held_before and not row.on_hold:
        raise Conflict(f"recording {row.id} is kept by the legal hold on case {previous}; linking it to case {ref} "
                       "would release it. Only the roles retention.legal_hold.roles names release a hold "
                       "(A9, B9, B11)")
    if row.destroy_after is not None and (until_before is None or row.destroy_after < until_before):
        now = "kept with no date" if until_before is None else f"{until_before:%Y-%m-%d}"
        raise Conflict(f"linking recording {row.id} to case {ref} would have it destroyed on "
                       f"{row.destroy_after:%Y-%m-%d} ({row.retention_rule}), earlier than its date now "
                       f"({now}{f', under case {previous}' if previous else ''}): a link may keep a recording "
                       "longer, never shorter (A9)")
    audit.append(session, audit.AuditEvent(
        actor=actor, actor_role=actor_role, action="retention.case_linked", object_type="recording",
        object_id=row.id, details={"case_ref": ref, "previous_case_ref": previous}, clauses=("A9",)), clock=clock)
    return row


# ---------------------------------------------------------------------------------------- extension
def extend_retention(
    session: Session, *, policy: PolicyDocument, actor: str, actor_role: str, recording_id: str, keep_until: date,
    reason: str, clock: Clock = system_clock,
) -> Recording:
    """Keep one recording at least until ``keep_until`` (end of that day, in the call's time zone), on request
    (e.g. the FCA's 7 years): only ``retention.extension.roles``; never shorter than what it already has,
    never past ``retention.extension.max_age_months`` after the call; audited with the reason."""
    rules = policy.retention.extension
    if not actor_role or actor_role not in rules.roles:
        raise AccessDenied(f"role {actor_role or '(none)'} may not extend retention (retention.extension.roles)",
                           reason="only the roles retention.extension.roles names "
                                  f"({', '.join(rules.roles) or 'none'}) may extend retention",
                           clauses=("retention.extension",))
    row = session.get(Recording, recording_id)
    if row is None or row.state != RecordingState.AVAILABLE:
        raise NotFound("no such recording (a destroyed recording cannot be kept)")
    until = row.started_at.replace(year=keep_until.year, month=keep_until.month, day=keep_until.day)
    limit = policy.retention.extension_limit(row.started_at)
    problems = []
    if not reason.strip():
        problems.append(FieldProblem("reason", "say who asked and why the recording must be kept longer"))
    if until > limit:
        problems.append(FieldProblem("keep_until", f"must be on or before {limit:%Y-%m-%d}: "
                                                   "retention.extension.max_age_months after the call"))
    current = row.keep_until or row.destroy_after
    if current is not None and until <= current:
        problems.append(FieldProblem("keep_until", f"must be after {current:%Y-%m-%d}, which it is kept until "
                                                   "already (an extension never shortens)"))
    if problems:
        raise InvalidInput("invalid retention extension:", problems)
    previous = row.keep_until
    entry = audit.append(session, audit.AuditEvent(
        actor=actor, actor_role=actor_role, action="retention.extended", object_type="recording", object_id=row.id,
        reason=reason.strip(), details={"keep_until": until.isoformat(),
                                        "previous_keep_until": previous.isoformat() if previous else None},
        clauses=tuple(c for c in (rules.clause,) if c)), clock=clock)
    row.keep_until = until
    row.keep_until_basis = f"extension by {actor} (audit {entry.seq})"
    refresh(session, policy=policy, rows=[row])
    return row


# -------------------------------------------------------------------------------------------- holds
def place_hold(
    session: Session, *, policy: PolicyDocument, actor: str, actor_role: str, reason: str, owner: str,
    review_on: date, recording_id: str | None = None, case_ref: str | None = None, clock: Clock = system_clock,
) -> LegalHold:
    """Suspend destruction of one recording or of a whole case until the hold is released or lapses.

    Only ``retention.legal_hold.roles``; the review date is required and at most ``max_review_months`` ahead."""
    require_holder(policy, actor_role, "place legal holds")
    problems = []
    if (recording_id is None) == (case_ref is None):
        problems.append(FieldProblem("recording_id", "give exactly one of recording_id or case_ref"))
    if not reason.strip():
        problems.append(FieldProblem("reason", "say why the recording must be kept"))
    if not owner.strip():
        problems.append(FieldProblem("owner", "name the person responsible for the hold"))
    review_problem = _check_review(policy, review_on, clock.now().date())
    if review_problem is not None:
        problems.append(review_problem)
    if problems:
        raise InvalidInput("invalid legal hold:", problems)
    if recording_id is not None:
        row = session.get(Recording, recording_id)
        if row is None or row.state != RecordingState.AVAILABLE:
            raise NotFound("no such recording (a destroyed recording cannot be held)")
    if case_ref is not None:
        get_case(session, case_ref)
    hold = LegalHold(id=new_id(), recording_id=recording_id, case_ref=case_ref, reason=reason.strip(),
                     owner=owner.strip(), review_on=review_on, placed_at=clock.now(), placed_by=actor)
    session.add(hold)
    session.flush()
    _refresh_hold_scope(session, policy=policy, hold=hold)
    audit.append(session, audit.AuditEvent(
        actor=actor, actor_role=actor_role, action="retention.hold_placed", object_type="legal_hold",
        object_id=hold.id, reason=hold.reason,
        details={"recording_id": recording_id, "case_ref": case_ref, "owner": hold.owner,
                 "review_on": review_on.isoformat()}, clauses=("A9", "B11")), clock=clock)
    return hold


def release_hold(
    session: Session, *, policy: PolicyDocument, actor: str, actor_role: str, hold_id: str, reason: str,
    clock: Clock = system_clock,
) -> LegalHold:
    """End a hold; what it protected is destroyed at its date again (at the next sweep if that has passed)."""
    require_holder(policy, actor_role, "release legal holds")
    hold = session.get(LegalHold, hold_id)
    if hold is None:
        raise NotFound(f"no legal hold {hold_id!r}")
    if hold.released_at is not None:
        raise Conflict(f"legal hold {hold_id} was already released")
    if not reason.strip():
        raise InvalidInput("invalid release:", [FieldProblem("reason", "say why the hold is no longer needed")])
    hold.released_at, hold.released_by, hold.release_reason = clock.now(), actor, reason.strip()
    session.flush()
    _refresh_hold_scope(session, policy=policy, hold=hold)
    audit.append(session, audit.AuditEvent(
        actor=actor, actor_role=actor_role, action="retention.hold_released", object_type="legal_hold",
        object_id=hold.id, reason=hold.release_reason or "",
        details={"recording_id": hold.recording_id, "case_ref": hold.case_ref}, clauses=("A9", "B11")), clock=clock)
    return hold


def renew_hold(
    session: Session, *, policy: PolicyDocument, actor: str, actor_role: str, hold_id: str, review_on: date,
    reason: str, clock: Clock = system_clock,
) -> LegalHold:
    """A holder reviewed the hold and keeps it: a new review date (within the bound), with why; audited."""
    require_holder(policy, actor_role, "renew legal holds")
    hold = session.get(LegalHold, hold_id)
    if hold is None:
        raise NotFound(f"no legal hold {hold_id!r}")
    if hold.released_at is not None:
        raise Conflict(f"legal hold {hold_id} was released; place a new one")
    problems = [p for p in (_check_review(policy, review_on, clock.now().date()),) if p is not None]
    if not reason.strip():
        problems.append(FieldProblem("reason", "say why the recording must still be kept"))
    if problems:
        raise InvalidInput("invalid renewal:", problems)
    previous = hold.review_on
    hold.review_on, hold.overdue_notified_at = review_on, None
    session.flush()
    audit.append(session, audit.AuditEvent(
        actor=actor, actor_role=actor_role, action="retention.hold_renewed", object_type="legal_hold",
        object_id=hold.id, reason=reason.strip(),
        details={"previous_review_on": previous.isoformat(), "review_on": review_on.isoformat()},
        clauses=("A9", "B11")), clock=clock)
    return hold


def review_overdue_holds(
    session: Session, *, policy: PolicyDocument, clock: Clock = system_clock,
) -> tuple[int, int]:
    """Report holds past their review date and lapse those overdue by ``lapse_after_overdue_days``.

    An overdue hold keeps protecting for the lapse period (a person may simply be late) but is reported
    once to the misuse recipients (``misuse.report_to_roles``), and shows as overdue in the retention and
    compliance reports. Then it lapses: released by ``system`` with the reason, audited and reported,
    and what it protected goes at its date (at the next sweep if that has passed). Returns (reported, lapsed).
    """
    now = clock.now()
    today = now.date()
    lapse_days = policy.retention.legal_hold.lapse_after_overdue_days
    reported = lapsed = 0
    for hold in session.scalars(select(LegalHold).where(LegalHold.released_at.is_(None),
                                                        LegalHold.review_on < today).order_by(LegalHold.id)):
        what = f"recording {hold.recording_id}" if hold.recording_id else f"case {hold.case_ref}"
        if (today - hold.review_on).days > lapse_days:
            hold.released_at, hold.released_by = now, "system"
            hold.release_reason = (f"lapsed: review was due {hold.review_on.isoformat()} and the hold was not renewed "
                                   f"within {lapse_days} days (retention.legal_hold.lapse_after_overdue_days)")
            session.flush()
            _refresh_hold_scope(session, policy=policy, hold=hold)
            audit.append(session, audit.AuditEvent(
                actor="system", actor_role="system", action="retention.hold_lapsed", object_type="legal_hold",
                object_id=hold.id, reason=hold.release_reason,
                details={"recording_id": hold.recording_id, "case_ref": hold.case_ref,
                         "review_on": hold.review_on.isoformat(), "placed_by": hold.placed_by},
                clauses=("A9", "B11")), clock=clock)
            oversight.file_report(
                session, policy=policy, reporter=oversight.Reporter(username="system", role="system"),
                summary=f"Legal hold on {what} lapsed: its review was due {hold.review_on.isoformat()}",
                description=f"{hold.release_reason}. Reason it was placed: {hold.reason}. Owner: {hold.owner}.",
                source="detection", rule="legal_hold_lapsed", dedup_key=f"hold-lapsed:{hold.id}", clock=clock)
            lapsed += 1
        elif hold.overdue_notified_at is None:
            hold.overdue_notified_at = now
            audit.append(session, audit.AuditEvent(
                actor="system", actor_role="system", action="retention.hold_review_overdue",
                object_type="legal_hold", object_id=hold.id, decision="info",
                reason=f"review was due {hold.review_on.isoformat()}",
                details={"owner": hold.owner,
                         "lapses_after": (hold.review_on + timedelta(days=lapse_days)).isoformat()},
                clauses=("A9", "B11")), clock=clock)
            oversight.file_report(
                session, policy=policy, reporter=oversight.Reporter(username="system", role="system"),
                summary=f"Legal hold on {what} is past its review date ({hold.review_on.isoformat()})",
                description=(f"Owner {hold.owner}; placed by {hold.placed_by} because: {hold.reason}. Renew it "
                             f"(a new review date) or release it; unless renewed it lapses after "
                             f"{(hold.review_on + timedelta(days=lapse_days)).isoformat()}."),
                source="detection", rule="legal_hold_review_overdue", dedup_key=f"hold-overdue:{hold.id}:"
                f"{hold.review_on.isoformat()}", clock=clock)
            reported += 1
    session.flush()
    return reported, lapsed


def _refresh_hold_scope(session: Session, *, policy: PolicyDocument, hold: LegalHold) -> None:
    if hold.recording_id:
        refresh_where(session, policy=policy, condition=Recording.id == hold.recording_id)
    if hold.case_ref:
        refresh_where(session, policy=policy, condition=Recording.case_ref == hold.case_ref)


def list_holds(session: Session, *, active_only: bool = True) -> list[LegalHold]:
    query = select(LegalHold).order_by(LegalHold.placed_at)
    if active_only:
        query = query.where(LegalHold.released_at.is_(None))
    return list(session.scalars(query))


# ------------------------------------------------------------------------------------------- report
@dataclass
class PeriodDestroyed:
    """What was destroyed in one calendar month, by rule."""

    period: str
    by_rule: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.by_rule.values())


@dataclass
class HeldItem:
    hold_id: str
    recording_id: str | None
    case_ref: str | None
    reason: str
    owner: str
    review_on: date
    review_overdue: bool
    recordings_held: int


@dataclass
class RetentionReport:
    start: datetime
    end: datetime
    destroyed: list[PeriodDestroyed]
    held: list[HeldItem]
    overdue_for_destruction: int
    """Available, not held, past their date: what the next sweep will take (should be ~0)."""

    @property
    def destroyed_total(self) -> int:
        return sum(p.total for p in self.destroyed)


def report(session: Session, *, start: datetime, end: datetime, clock: Clock = system_clock) -> RetentionReport:
    """Per calendar month in [start, end): how many recordings were destroyed, by rule; every active hold."""
    if end <= start:
        raise InvalidInput("invalid period:", [FieldProblem("to", "must be after from")])
    by_period: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    rows = session.execute(select(DestructionRecord.destroyed_at, DestructionRecord.rule).where(
        DestructionRecord.destroyed_at >= start, DestructionRecord.destroyed_at < end))
    for at, rule in rows:
        by_period[at.strftime("%Y-%m")][rule] += 1
    destroyed = [PeriodDestroyed(period, dict(rules)) for period, rules in sorted(by_period.items())]
    today = clock.now().date()
    held = []
    for hold in list_holds(session):
        if hold.recording_id:
            count = int(session.scalar(select(Recording.id).where(
                Recording.id == hold.recording_id, Recording.state == RecordingState.AVAILABLE).limit(1)) is not None)
        else:
            count = int(session.scalar(select(func.count()).select_from(Recording).where(
                Recording.case_ref == hold.case_ref, Recording.state == RecordingState.AVAILABLE)) or 0)
        held.append(HeldItem(hold.id, hold.recording_id, hold.case_ref, hold.reason, hold.owner, hold.review_on,
                             hold.review_on < today, count))
    overdue = int(session.scalar(select(func.count()).select_from(Recording).where(
        Recording.state == RecordingState.AVAILABLE, Recording.on_hold.is_(False),
        Recording.destroy_after <= clock.now())) or 0)
    return RetentionReport(start=start, end=end, destroyed=destroyed, held=held, overdue_for_destruction=overdue)


def list_destructions(session: Session, *, start: datetime | None = None, end: datetime | None = None,
                      limit: int = 500) -> list[DestructionRecord]:
    """The destruction register (what, when, why, by which rule; no content), newest first, for the
    oversight page that proves destruction happened (B11)."""
    query = select(DestructionRecord)
    if start:
        query = query.where(DestructionRecord.destroyed_at >= start)
    if end:
        query = query.where(DestructionRecord.destroyed_at < end)
    return list(session.scalars(query.order_by(DestructionRecord.destroyed_at.desc()).limit(limit)))
