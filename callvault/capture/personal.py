"""Marking a *stored* call personal (A7, A14, B4): who may, until when, what keeps it, and who is told.

Marking a call personal destroys it, so it is the agent's act during the call (live, the capture
process applies it). Once the call has ended and its recording is stored, the recording may be
evidence, and destroying it on one person's word would be a way around everything that keeps it.
``check`` therefore allows the marking only when all of these hold, and otherwise raises with the
reason and the clauses (the edge audits the refusal as a denial):

* the actor's role reaches the recording's content (its ``content_scope``) and the actor is the
  recorded agent (their extension is the call's): 403 for anyone else, administering roles and
  leadership included;
* the call ended at most ``controls.personal_after_call_minutes`` ago (a site choice; 0 = never): 409;
* the recording is not evidence (409 each): no unresolved case carries its reference (A3, A9), no legal
  hold covers it (A9, B11), no access request in hand names it (B6, B9), no verified caller's or
  operator's request not yet sent covers it (B7, B10, A4), no quality-review item rests on it (B8).

An allowed marking after the call's end is reported (``report``): a misuse report (rule
``personal_after_call``, the marking's audit entry as evidence) mailed to ``misuse.report_to_roles``,
never to the agent who marked it, so a pattern of late markings is seen by people who can ask why.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from callvault.access import service as access
from callvault.core.clock import Clock, system_clock
from callvault.core.errors import AccessDenied, Conflict
from callvault.oversight import service as oversight
from callvault.policy.decide import Actor
from callvault.policy.schema import PolicyDocument
from callvault.quality import review as quality
from callvault.recordings.models import Recording
from callvault.retention import service as retention
from callvault.subject_requests import service as subject_requests

REPORT_RULE = "personal_after_call"
"""The misuse report's rule for a call marked personal after its end."""


class PersonalRefused(Conflict):
    """A stored call may not be marked personal now (window passed, or it is evidence); 409, audited."""

    def __init__(self, message: str, *, reason: str, clauses: tuple[str, ...]) -> None:
        super().__init__(message)
        self.reason = reason
        self.clauses = clauses


def _role_reaches(policy: PolicyDocument, actor: Actor, row: Recording) -> bool:
    """The role's content scope covers this recording (acknowledgement aside: this is about the role)."""
    rule = policy.roles.get(actor.role)
    if rule is None:
        return False
    if rule.content_scope == "all":
        return True
    if rule.content_scope == "own_extension":
        return bool(actor.extension) and actor.extension == row.extension
    if rule.content_scope == "own_team":
        return bool(actor.team) and actor.team == row.team
    return False


def after_end(row: Recording, now: datetime) -> bool:
    """Whether the call is over at ``now`` (a stored recording nearly always is)."""
    return now > row.ended_at


def evidence(session: Session, row: Recording, now: datetime, *, what: str = "marked personal",
             except_request: str | None = None) -> PersonalRefused | None:
    """The first link that makes the recording evidence, as the refusal to raise; None when there is none.

    Also the check a caller's erasure request passes before a recording is destroyed (``what``: "deleted";
    ``except_request``: that request itself, which covers the recording until it is answered)."""
    action = what

    def refused(why: str, reason: str, clauses: tuple[str, ...]) -> PersonalRefused:
        return PersonalRefused(
            f"recording {row.id} cannot be {action}: {why}, so it is kept until that is settled "
            f"({', '.join(clauses)})", reason=reason, clauses=clauses)

    case = retention.unresolved_case(session, row.case_ref)
    if case is not None:
        ref, found = case
        state = "open" if found is not None else "named in the call's metadata and not resolved"
        return refused(f"it belongs to case {ref} ({state})", "linked to an unresolved case", ("A3", "A9"))
    if row.on_hold:
        return refused("a legal hold covers it", "legal hold", ("A9", "B11"))
    requests = access.open_requests_naming(session, recording_id=row.id, now=now)
    if requests:
        return refused(f"access request {requests[0]} names it (pending, or granted and in force)",
                       "named by an open access request", ("B6", "B9"))
    asked = [r for r in subject_requests.open_requests_for(session, row) if r.id != except_request]
    if asked:
        return refused(f"request {asked[0].id} ({asked[0].kind}'s request for their own recordings) covers it "
                       "and has not been sent", "covered by an open subject request", ("A4", "B7", "B10"))
    items = quality.items_of_recording(session, row.id)
    if items:
        return refused(f"it was drawn for quality review (sample {items[0].sample_id})", "in a quality review sample",
                       ("B8",))
    return None


def check(session: Session, *, policy: PolicyDocument, actor: Actor, row: Recording,
          clock: Clock = system_clock) -> None:
    """Raise unless ``actor`` may mark the stored recording ``row`` personal now (see the module docstring)."""
    window = policy.controls.personal_after_call_minutes
    if not _role_reaches(policy, actor, row) or not (actor.extension and actor.extension == row.extension):
        raise AccessDenied(
            f"only the recorded agent (extension {row.extension or 'unknown'}) may mark a stored call personal, "
            f"within {window} minutes of its end; role {actor.role or '(none)'} "
            f"{'does not reach this recording' if not _role_reaches(policy, actor, row) else 'is not on this call'}"
            " (A7, A14, B4)", reason="not the recorded agent", clauses=("A7", "A14", "B4"))
    now = clock.now()
    if after_end(row, now):
        minutes = (now - row.ended_at).total_seconds() / 60
        if minutes > window:
            raise PersonalRefused(
                f"recording {row.id} cannot be marked personal: the call ended {minutes:.0f} minutes ago and policy "
                f"{policy.policy_id} allows it for {window} minutes after the call's end "
                "(controls.personal_after_call_minutes; A14, B4); personal calls are marked during the call",
                reason="after the window for marking personal", clauses=("A14", "B4"))
    refusal = evidence(session, row, now)
    if refusal is not None:
        raise refusal


def report(session: Session, *, policy: PolicyDocument, actor: Actor, row: Recording, evidence: int,
           mail_domain: str = "localhost", clock: Clock = system_clock) -> None:
    """File the misuse report for a call marked personal after its end (the caller commits)."""
    now = clock.now()
    minutes = max(0.0, (now - row.ended_at).total_seconds() / 60)
    oversight.file_report(
        session, policy=policy, reporter=oversight.Reporter(username="system", role="system"),
        summary=f"{actor.username} marked recording {row.id} personal {minutes:.0f} min after the call ended; "
                "it is destroyed",
        description=(f"Call {row.call_id} on extension {row.extension or '(none)'} ({row.direction}) started "
                     f"{row.started_at.isoformat()} and ended {row.ended_at.isoformat()}; {actor.username} "
                     f"({actor.role}) marked it personal at {now.isoformat()}, within the "
                     f"{policy.controls.personal_after_call_minutes} minutes policy {policy.policy_id} allows "
                     "(controls.personal_after_call_minutes). Every marking after a call's end is reported "
                     "(A7, A14, B4, B12): the recording is destroyed, and only its destruction record remains."),
        subject_user=actor.username, evidence=[evidence], source="detection", rule=REPORT_RULE,
        dedup_key=f"{REPORT_RULE}:{row.id}", mail_domain=mail_domain, clock=clock)
