"""Finding recordings and deciding, through the policy engine, who may see or hear them.

Search results are filtered by the actor's policy scope in the query itself (a specialist's
search never even reads other extensions' rows), and every content access goes through
``authorize_content``, which asks ``decide()`` and appends the decision to the audit log,
allowed or not. The entry says what the person gets: a serving path's own check after the policy's
yes (an anonymised copy exists, the transcript exists, the range fits) runs before the entry is
written, and a failure there is recorded as a denial (``Withheld``), never as an allowance.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, Select, and_, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from callvault.access.consents import consents_of_agent
from callvault.audit import service as audit
from callvault.capture.metadata import normalise_number
from callvault.core.clock import Clock, system_clock
from callvault.core.errors import AccessDenied, CallvaultError, FieldProblem, InvalidInput, NotFound
from callvault.core.instants import instant_problem
from callvault.policy.decide import (
    Action,
    Actor,
    Decision,
    EmergencyFacts,
    Grant,
    QualityItemFacts,
    RecordingFacts,
    SubjectMatchFacts,
    decide,
    has_acknowledged,
    visible_scope,
)
from callvault.policy.schema import PolicyDocument
from callvault.recordings.models import Recording, RecordingState
from callvault.recordings.schemas import RecordingFilters

MAX_PAGE = 200


def _encode_cursor(row: Recording) -> str:
    return _encode_cursor_at(row.started_at, row.id)


def _encode_cursor_at(started_at: datetime, recording_id: str) -> str:
    raw = json.dumps([started_at.isoformat(), recording_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        started, rec_id = json.loads(raw)
        at = datetime.fromisoformat(started)
        if at.tzinfo is None or instant_problem(at):  # ours are UTC and in range; anything else was made up
            raise ValueError(started)
        return at, str(rec_id)
    except (binascii.Error, ValueError, TypeError, RecursionError) as exc:
        raise InvalidInput("cursor is not one this server issued",
                           [FieldProblem("cursor", "not a cursor from a previous page")]) from exc


def scope_clause(policy: PolicyDocument, actor: Actor) -> ColumnElement[bool] | None:
    """SQL condition limiting rows to what the actor's role may see; None means nothing at all.

    The one translation of ``visible_scope`` into SQL: every list of recordings (search, transcript
    search, a caller's request) uses it, so a scope without its extension or team shows nothing."""
    scope = visible_scope(policy=policy, actor=actor)
    if scope.kind == "all":
        return Recording.id.is_not(None)
    if scope.kind == "own_extension" and scope.extension:
        return Recording.extension == scope.extension
    if scope.kind == "own_team" and scope.team:
        return Recording.team == scope.team
    return None


AVAILABLE_ONLY: tuple[str, ...] = (RecordingState.AVAILABLE,)
WITH_FAILED: tuple[str, ...] = (RecordingState.AVAILABLE, RecordingState.FAILED)
"""Row states ``find_visible`` may return: only stored audio, or also the content-free failed captures."""


def search(
    session: Session, *, policy: PolicyDocument, actor: Actor, filters: RecordingFilters,
    limit: int = 50, cursor: str | None = None, default_region: str = "CA",
) -> tuple[list[Recording], str | None]:
    """Recordings matching ``filters`` within the actor's scope, newest first, keyset-paginated."""
    limit = max(1, min(limit, MAX_PAGE))
    conds = _search_conditions(policy, actor, filters, cursor, default_region)
    if conds is None:
        return [], None
    rows = list(session.scalars(_page_query(conds, limit, Recording)))
    next_cursor = _encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor


def search_columns(
    session: Session, *, columns: Sequence[str], policy: PolicyDocument, actor: Actor, filters: RecordingFilters,
    limit: int = 50, cursor: str | None = None, default_region: str = "CA",
) -> tuple[Sequence[RowMapping], str | None]:
    """``search``, reading only ``columns`` (Recording attribute names) as plain rows.

    Why: the API's search page is its busiest read; plain rows of the fields it returns skip building
    ORM objects (about a fifth of that request's time)."""
    limit = max(1, min(limit, MAX_PAGE))
    conds = _search_conditions(policy, actor, filters, cursor, default_region)
    if conds is None:
        return (), None
    wanted = [getattr(Recording, name) for name in dict.fromkeys((*columns, "started_at", "id"))]
    # Executed on the connection (Core), not through the session: the ORM's result machinery is not
    # needed for plain columns and cost more than the query itself. ``all()`` fetches the page in one
    # driver call; iterating the result fetched one row per call (7% of a search's GIL time on PostgreSQL).
    rows = session.connection().execute(_page_query(conds, limit, *wanted)).mappings().all()
    next_cursor = _encode_cursor_at(rows[limit - 1]["started_at"], rows[limit - 1]["id"]) if len(rows) > limit else None
    return rows[:limit], next_cursor


def _page_query(conds: list[ColumnElement[bool]], limit: int, *entities: Any) -> Select[Any]:
    """One page, newest first (ties by id, as the cursor), with one row more to tell whether more follow."""
    return select(*entities).where(*conds).order_by(Recording.started_at.desc(), Recording.id.desc()).limit(limit + 1)


def _search_conditions(
    policy: PolicyDocument, actor: Actor, filters: RecordingFilters, cursor: str | None, default_region: str,
) -> list[ColumnElement[bool]] | None:
    """The WHERE of a search; None when the actor's scope shows nothing at all."""
    scope = scope_clause(policy, actor)
    if scope is None:
        return None
    conds: list[ColumnElement[bool]] = [*_state_conditions(filters.state), scope]
    if actor.role not in _admin_like_roles(policy):
        conds.append(Recording.quarantined.is_(False))
    for field in ("extension", "team", "direction", "case_ref"):
        value = getattr(filters, field)
        if value:
            conds.append(getattr(Recording, field) == value)
    if filters.agent:
        conds.append(Recording.agent == filters.agent.lower())
    if filters.agent_contains:
        conds.append(Recording.agent.contains(filters.agent_contains.lower(), autoescape=True))
    if filters.number_contains:
        digits = "".join(ch for ch in filters.number_contains if ch.isdigit())
        if not digits:
            raise InvalidInput("invalid filter:", [FieldProblem("number", "type some digits of the number")])
        # Stored numbers are E.164 ("+14165550100"): digits only after the plus, so a digit run matches.
        conds.append(or_(Recording.remote_number.contains(digits), Recording.local_number.contains(digits)))
    if filters.recording_ids is not None:
        conds.append(Recording.id.in_(filters.recording_ids))
    for field in ("remote_number", "local_number"):
        value = getattr(filters, field)
        if value:
            try:
                conds.append(getattr(Recording, field) == normalise_number(value, default_region))
            except ValueError as exc:
                raise InvalidInput("invalid filter:", [FieldProblem(field, str(exc))]) from exc
    if filters.started_from:
        conds.append(Recording.started_at >= filters.started_from)
    if filters.started_to:
        conds.append(Recording.started_at < filters.started_to)
    if cursor:
        c_started, c_id = _decode_cursor(cursor)
        conds.append(or_(Recording.started_at < c_started,
                         and_(Recording.started_at == c_started, Recording.id < c_id)))
    return conds


def _state_conditions(state: str) -> list[ColumnElement[bool]]:
    """The WHERE for ``RecordingFilters.state``. Failed rows are content-free (no blob, no key), so listing
    them shows only that a call was lost and why; pending and destroyed rows are never listed."""
    if state == "listed":
        return [Recording.state.in_((RecordingState.AVAILABLE, RecordingState.FAILED))]
    if state == "failed":
        return [Recording.state == RecordingState.FAILED]
    if state == "gaps":
        return [Recording.state == RecordingState.AVAILABLE, Recording.missing_seconds > 0]
    return [Recording.state == RecordingState.AVAILABLE]


def agents_in_scope(session: Session, *, policy: PolicyDocument, actor: Actor, limit: int = 500) -> list[str]:
    """The agents of the recordings the actor may see, for the search page's agent picker.

    Only names within the actor's scope: a picker listing every agent would tell a specialist who else
    is recorded."""
    scope = scope_clause(policy, actor)
    if scope is None:
        return []
    query = (select(Recording.agent).where(scope, Recording.state == RecordingState.AVAILABLE,
                                           Recording.agent.is_not(None))
             .group_by(Recording.agent).order_by(Recording.agent).limit(limit))
    return [a for a in session.scalars(query) if a]


def _admin_like_roles(policy: PolicyDocument) -> set[str]:
    """Roles that administer the system see quarantined rows' metadata (to resolve them)."""
    return {name for name, role in policy.roles.items() if role.can_administer}


def redacted_only(recording_id: str, decision: Decision) -> AccessDenied | None:
    """The refusal for original audio when the purpose serves only the redacted copy (minimum necessary,
    ``serves: redacted``); None for any other purpose. The redacted audio and masked transcript still serve it."""
    if decision.serves != "redacted":
        return None
    return AccessDenied(f"Purpose {decision.purpose!r} is served only the redacted audio (personal data toned out, "
                        f"minimum necessary): play /api/v1/recordings/{recording_id}/audio/redacted?purpose="
                        f"{decision.purpose} instead.", clauses=decision.clauses)


def facts(row: Recording, *, employee_consents: frozenset[str] = frozenset()) -> RecordingFacts:
    """The policy engine's view of a recording (``employee_consents``: see ``consents_of_agent``)."""
    return RecordingFacts(
        recording_id=row.id, extension=row.extension, agent=row.agent, team=row.team, quarantined=row.quarantined,
        employee_consents=employee_consents, state=str(row.state), direction=row.direction,
    )


def content_facts(
    session: Session, row: Recording, *, policy: PolicyDocument, purpose: str | None, now: datetime,
) -> RecordingFacts:
    """The policy engine's view of a recording for a content decision: ``facts`` plus the recorded
    employee's consents and, when ``purpose`` reaches only sampled or requested recordings, the QA items
    and subject requests that hold it. Always read from the database, never taken from the request.

    Why only for those purposes: the extra reads cost a query or two, and every other purpose ignores them.
    """
    rule = policy.purposes.get((purpose or "").strip())
    quality_items: tuple[QualityItemFacts, ...] = ()
    subject_matches: tuple[SubjectMatchFacts, ...] = ()
    # Imported here: both domains build on this module (they decide content through it).
    if rule is not None and rule.reaches == "quality_sample":
        from callvault.quality import review

        quality_items = review.item_facts(session, row.id)
    if rule is not None and rule.reaches == "matched_request":
        from callvault.subject_requests import service as subject_requests

        subject_matches = subject_requests.match_facts(session, row, now=now)
    return replace(facts(row, employee_consents=consents_of_agent(session, row.agent)),
                   quality_items=quality_items, subject_matches=subject_matches)


def get_visible(
    session: Session, *, policy: PolicyDocument, actor: Actor, recording_id: str,
    source_ip: str | None = None, clock: Clock = system_clock, states: tuple[str, ...] = AVAILABLE_ONLY,
) -> Recording | None:
    """A recording's metadata if the actor may see it, else None (out of scope looks like absent).

    A denial is appended to the audit log; the caller commits before answering "not found". ``states``:
    see ``find_visible``.
    """
    row, event = find_visible(session, policy=policy, actor=actor, recording_id=recording_id, source_ip=source_ip,
                              clock=clock, states=states)
    if event is not None:
        audit.append(session, event, clock=clock)
    return row


def find_visible(
    session: Session, *, policy: PolicyDocument, actor: Actor, recording_id: str, source_ip: str | None = None,
    clock: Clock = system_clock, states: tuple[str, ...] = AVAILABLE_ONLY,
) -> tuple[Recording | None, audit.AuditEvent | None]:
    """Like ``get_visible`` but writes nothing: returns the row (or None) and, for a denial or a look
    allowed only by an emergency declaration (``emergency_access``: every access under one is on record
    for its review), the audit event the caller must commit before answering.

    Why: a metadata read that is allowed then runs in a read-only unit of work, which on SQLite does
    not queue for the database's one write lock; only a denial takes it, to record itself.

    ``states``: the row states the caller can show. Most callers go on to content or change the row, so
    only ``available``; the recording page also shows a ``failed`` row (``WITH_FAILED``: what capture lost
    and why), which ``decide()`` scopes like any other and never lets reach content.
    """
    row = session.get(Recording, recording_id)
    if row is None or row.state not in states:
        return None, None
    decision = decide(policy=policy, actor=actor, action=Action.VIEW_METADATA, recording=facts(row), purpose=None)
    if not decision.allowed and policy.emergency_access is not None and actor.role in policy.emergency_access.roles:
        from callvault.access import emergency as emergency_access  # builds on this module

        now = clock.now()
        declared = emergency_access.active_for(session, user_id=actor.user_id, now=now)
        if declared is not None:
            decision = decide(policy=policy, actor=actor, action=Action.VIEW_METADATA, recording=facts(row),
                              purpose=None, now=now, emergency=declared)
            if decision.allowed:
                return row, _decision_event(actor, Action.VIEW_METADATA, row.id, decision, source_ip)
    if not decision.allowed:
        return None, _decision_event(actor, Action.VIEW_METADATA, row.id, decision, source_ip)
    return row, None


def _decision_event(
    actor: Actor, action: Action, recording_id: str, decision: Decision, source_ip: str | None
) -> audit.AuditEvent:
    return audit.AuditEvent(
        actor=actor.username, actor_role=actor.role, action=f"recording.{action.value}",
        decision="allow" if decision.allowed else "deny", object_type="recording", object_id=recording_id,
        purpose=decision.purpose, reason=decision.reason, clauses=decision.clauses, source_ip=source_ip,
        details={"emergency_declaration": decision.emergency_declaration} if decision.emergency_declaration else None,
    )


@dataclass(frozen=True)
class Withheld(Decision):
    """A content access the policy allowed but that is not given: the serving path cannot serve it (no
    anonymised copy yet, no transcript, a range past the end) or a release it is part of was refused.

    Recorded as a denial, because the person gets nothing, with ``error``'s message as the reason;
    ``error`` is what the request is answered with (``refusal``)."""

    error: CallvaultError


def withheld(decision: Decision, error: CallvaultError) -> Withheld:
    """``decision`` (an allowance) turned into the denial the person actually gets."""
    clauses = error.clauses if isinstance(error, AccessDenied) and error.clauses else decision.clauses
    return Withheld(allowed=False, reason=error.message, clauses=tuple(clauses), purpose=decision.purpose,
                    serves=None, error=error)


@dataclass(frozen=True)
class Hidden(Decision):
    """A content denial for a recording the actor may not see at all (its metadata is out of their scope,
    or it is quarantined from them): answered exactly like an unknown id, recorded with the real reason.

    Why: "403: this recording is on extension 2001" told a specialist that the id exists, and whose call it
    is, while the metadata route answered 404 for the same id (issue 24). The audit entry keeps the reason,
    so the refusal is still on record as what it was (ASVS 8.2.2 without an existence oracle)."""


def _hidden(policy: PolicyDocument, actor: Actor, row: Recording, decision: Decision,
            emergency: EmergencyFacts | None = None, now: datetime | None = None) -> Decision:
    """``decision`` as a ``Hidden`` one when the actor may not know ``row`` exists.

    Refusals about the actor rather than the recording (an unknown role, a policy not acknowledged yet) keep
    their 403: they tell the person what to do and say the same for every recording they could ask about."""
    if decision.allowed or isinstance(decision, Withheld) or actor.role not in policy.roles:
        return decision
    if policy.acknowledgement_required and not has_acknowledged(policy, actor):
        return decision
    # Under an emergency declaration the person sees the recording (its page opened): a content action the
    # declaration does not cover (a download) is refused with its reason, not answered "no such recording".
    if decide(policy=policy, actor=actor, action=Action.VIEW_METADATA, recording=facts(row), purpose=None,
              now=now, emergency=emergency).allowed:
        return decision
    return Hidden(allowed=False, reason=decision.reason, clauses=decision.clauses, purpose=decision.purpose,
                  serves=None)


NOT_FOUND = "no such recording"
"""What an unknown id, and a recording the caller may not know exists, are answered with."""


def refusal(decision: Decision) -> CallvaultError:
    """The error to answer a decision that is not an allowance with (once its entry is committed)."""
    if isinstance(decision, Withheld):
        return decision.error
    if isinstance(decision, Hidden):
        return NotFound(NOT_FOUND)
    return AccessDenied(decision.reason, reason=decision.reason, clauses=decision.clauses)


ServeCheck = Callable[[Session, Recording, Decision], CallvaultError | None]
"""A serving path's check after the policy said yes: the error the person will get instead, or None."""


def decide_content(
    session: Session, *, policy: PolicyDocument, actor: Actor, action: Action, recording_id: str,
    purpose: str | None, grants: Sequence[Grant] = (), check: ServeCheck | None = None, clock: Clock = system_clock,
) -> tuple[Decision, Recording | None]:
    """The answer ``authorize_content`` records, recorded nowhere yet: for a caller that decides several
    recordings before it knows what it gives (a release is all or nothing) and then records each with
    ``record_content``. ``check`` runs only on an allowance; its error makes the answer ``Withheld``."""
    row = session.get(Recording, recording_id)
    if row is None or row.state != RecordingState.AVAILABLE:
        return Decision(allowed=False, reason="no such recording", clauses=(), purpose=purpose, serves=None), None
    now = clock.now()
    emergency = None
    if policy.emergency_access is not None and actor.role in policy.emergency_access.roles:
        from callvault.access import emergency as emergency_access  # builds on this module

        emergency = emergency_access.active_for(session, user_id=actor.user_id, now=now)
    decision = decide(policy=policy, actor=actor, action=action,
                      recording=content_facts(session, row, policy=policy, purpose=purpose, now=now),
                      purpose=purpose, grants=grants, now=now, emergency=emergency)
    if decision.allowed and check is not None:
        error = check(session, row, decision)
        if error is not None:
            decision = withheld(decision, error)
    return _hidden(policy, actor, row, decision, emergency, now), row


def record_content(
    session: Session, *, actor: Actor, action: Action, recording_id: str, decision: Decision,
    source_ip: str | None = None, details: dict[str, object] | None = None, clock: Clock = system_clock,
) -> None:
    """Append a content decision to the audit log (the caller commits, then answers)."""
    event = _decision_event(actor, action, recording_id[:200], decision, source_ip)
    if details:
        event = replace(event, details={**(event.details or {}), **details})
    audit.append(session, event, clock=clock)


def authorize_content(
    session: Session, *, policy: PolicyDocument, actor: Actor, action: Action, recording_id: str,
    purpose: str | None, grants: Sequence[Grant] = (), source_ip: str | None = None,
    details: dict[str, object] | None = None, check: ServeCheck | None = None, clock: Clock = system_clock,
) -> tuple[Decision, Recording | None]:
    """Ask the policy engine whether ``actor`` may do ``action`` with ``purpose``, run the serving path's
    ``check`` on a yes, and audit the answer the person gets.

    Returns the decision (and the row when it exists). The caller must commit even when the answer is
    no, so the denial is on record, and only then refuse the request (with ``refusal(decision)``).
    """
    decision, row = decide_content(session, policy=policy, actor=actor, action=action, recording_id=recording_id,
                                   purpose=purpose, grants=grants, check=check, clock=clock)
    record_content(session, actor=actor, action=action, recording_id=row.id if row is not None else recording_id,
                   decision=decision, source_ip=source_ip, details=details if row is not None else None, clock=clock)
    return decision, row
