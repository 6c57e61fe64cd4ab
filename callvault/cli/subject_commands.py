"""``callvault requests``: the queue of callers' and operators' requests for their own recordings (B7, B10)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy.orm import Session

from callvault.audit import service as audit
from callvault.cli.main import CLI_ACTOR, DataDir, app, err, handle_errors, open_runtime, out, print_json
from callvault.core.clock import Clock
from callvault.core.errors import AccessDenied, ConfigurationError
from callvault.identity import service as identity
from callvault.policy import service as policy_service
from callvault.policy.decide import Actor
from callvault.policy.schema import PolicyDocument
from callvault.retention import shred
from callvault.subject_requests import proof, workflow
from callvault.subject_requests import service as subject
from callvault.subject_requests.models import SubjectRequest

requests_app = typer.Typer(help="Callers' and operators' requests for their own recordings.", no_args_is_help=True)
app.add_typer(requests_app, name="requests")


@requests_app.command("list")
@handle_errors
def requests_list(
    status: Annotated[str | None, typer.Option(help="awaiting_verification, to_review, ready, sent or overdue")]
    = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    data_dir: DataDir = None,
) -> None:
    """The queue, soonest due first."""
    with closing(open_runtime(data_dir)) as runtime:
        now = runtime.clock.now()
        with runtime.db.unit_of_work() as session:
            rows = [{"id": r.id, "kind": r.kind, "status": subject.display_status(r, now), "due_on": r.due_on,
                     "region": r.region, "received_at": r.received_at, "requester": r.requester_username or r.email}
                    for r in subject.queue(session, status=status, clock=runtime.clock)]
            counts = subject.summary(session, clock=runtime.clock)
        if as_json:
            print_json({"requests": rows, "summary": counts})
            return
        table = Table("id", "kind", "status", "due", "region", "requester")
        for r in rows:
            table.add_row(str(r["id"]), str(r["kind"]), str(r["status"]), str(r["due_on"] or "-"), str(r["region"]),
                          str(r["requester"]))
        out.print(table)
        out.print(f"overdue: {counts['overdue']}")


@requests_app.command("show")
@handle_errors
def requests_show(request_id: str, data_dir: DataDir = None) -> None:
    """One request, the recordings chosen for it, its links and the candidate recordings."""
    with closing(open_runtime(data_dir)) as runtime:
        now = runtime.clock.now()
        with runtime.db.unit_of_work() as session:
            row = subject.get(session, request_id)
            policy = policy_service.current_policy(session, clock=runtime.clock)

            # Candidates are listed as an all-seeing reviewer would see them; releasing still needs a person.
            viewer = Actor(user_id="", username=CLI_ACTOR, role=next(iter(subject.staff_roles(policy)), ""),
                           acknowledged_policy_sha256=policy.content_sha256)
            data = {
                "id": row.id, "kind": row.kind, "status": subject.display_status(row, now), "stored_status": row.status,
                "phone_numbers": row.phone_numbers, "email": row.email, "requester": row.requester_username,
                "date_from": row.date_from, "date_to": row.date_to, "description": row.description,
                "region": row.region, "region_basis": row.region_basis, "timezone": row.timezone,
                "received_at": row.received_at,
                "verified_at": row.verified_at, "due_on": row.due_on, "reviewed_by": row.reviewed_by,
                "redaction_note": row.redaction_note, "approved_by": row.approved_by, "sent_at": row.sent_at,
                "recordings": [{"recording_id": s.recording_id, "party": s.party}
                               for s in subject.selection(session, row.id)],
                "links": [{"id": link.id, "expires_at": link.expires_at, "downloads": link.downloads,
                           "max_downloads": link.max_downloads, "revoked_at": link.revoked_at}
                          for link in subject.links_of(session, row.id)],
                "candidates": [{"id": r.id, "started_at": r.started_at, "duration_seconds": r.duration_seconds,
                                "remote_number": r.remote_number, "party": subject.party_of(row, r)}
                               for r in subject.candidates(session, policy=policy, actor=viewer, row=row)],
                "identity": {"warning": proof.UNVERIFIED_WARNING if proof.needs_warning(session, row) else None,
                             "phone_verified": sorted(proof.verified_numbers(session, row.id)),
                             "call_date": row.call_date, "call_time": row.call_time,
                             "agent_first_name": row.agent_first_name, "call_reason": row.call_reason,
                             "facts_confirmed": row.facts_confirmed, "facts_confirmed_by": row.facts_confirmed_by},
            }
        print_json(data)


@requests_app.command("approve")
@handle_errors
def requests_approve(
    request_id: str,
    as_user: Annotated[str, typer.Option("--as", help="the staff member whose authority releases it (a role "
                                                      "that may use subject_access)")],
    recording: Annotated[list[str] | None, typer.Option("--recording", help="confirm these recordings first "
                                                                             "(repeatable); else the reviewed ones")]
    = None,
    redaction_note: Annotated[str, typer.Option(help="what needs redacting, with --recording")] = "",
    link_days: Annotated[int, typer.Option(help="how long the link works")] = subject.LINK_DAYS_DEFAULT,
    max_downloads: Annotated[int, typer.Option(help="how many downloads it allows")] = subject.DOWNLOADS_DEFAULT,
    facts_checked: Annotated[list[str] | None, typer.Option(
        "--facts-checked", help="for a number the caller did not confirm by phone code: a fact you checked against "
                                "the recordings (call_time, agent_name, reason; repeatable; audited)")] = None,
    data_dir: DataDir = None,
) -> None:
    """Release a request: each recording is decided for subject_access as --as (audited); the link is mailed.
    An erasure request is carried out instead: the recordings are destroyed, evidence is kept (and why is said)."""
    with closing(open_runtime(data_dir)) as runtime:
        public_url = runtime.settings.env.get("CALLVAULT_PUBLIC_URL")
        if not public_url:
            raise ConfigurationError("set CALLVAULT_PUBLIC_URL (e.g. https://calls.example.com) so the mailed link "
                                     "points at your server")
        with runtime.db.unit_of_work() as session:
            policy = policy_service.current_policy(session, clock=runtime.clock)
            user = identity.get_user(session, as_user)
            actor = identity.actor_for(session, user, policy)
            reason = subject.staff_denial(policy, actor)
            if reason is None:
                audit.append(session, audit.AuditEvent(
                    actor=CLI_ACTOR, action="subject_request.cli_release", object_type="subject_request",
                    object_id=request_id[:200], purpose=subject.PURPOSE, clauses=subject.CLAUSES,
                    details={"as": user.username}), clock=runtime.clock)
                if recording:
                    subject.review(session, policy=policy, actor=actor, request_id=request_id, recording_ids=recording,
                                   redaction_note=redaction_note, clock=runtime.clock)
                outcome = subject.approve(session, policy=policy, actor=actor, request_id=request_id,
                                          public_url=public_url, link_days=link_days, max_downloads=max_downloads,
                                          keyring=runtime.keyring, facts_checked=facts_checked or (),
                                          clock=runtime.clock)
                denials = [f"{rid}: {d.reason}" for rid, d in outcome.denials]
                if outcome.refusal is not None:
                    denials = [outcome.refusal]
                erased, asks_for = outcome.request.erasure_outcome, outcome.request.asks_for
            else:
                subject.audit_staff_denial(session, actor=actor, action="approve", reason=reason, object_id=request_id,
                                           clock=runtime.clock)
        if reason is not None:
            raise AccessDenied(reason)
        shred.finish(runtime.db, runtime.store, runtime.keyring, outcome.pending, clock=runtime.clock)
        if denials:
            raise AccessDenied(f"nothing was {'deleted' if asks_for == 'erasure' else 'released'}: "
                               + "; ".join(denials))
        if erased is not None:
            err.print(f"erasure request {request_id} carried out: {len(erased['destroyed'])} recording(s) destroyed, "
                      f"{len(erased['kept'])} kept; the requester was told which and why")
            for kept in erased["kept"]:
                err.print(f"  kept {kept['recording_id']}: {kept['reason']}")
            return
        err.print(f"released request {request_id}: the link was mailed to the requester")


def _staff_step(data_dir: DataDir, as_user: str, action: str, request_id: str,
                step: Callable[[Session, PolicyDocument, Actor, Clock], SubjectRequest]) -> SubjectRequest:
    """Run one staff step as ``--as``: the same staff check as the API (a refusal is audited and committed before
    it is raised), then ``step`` in one unit of work."""
    with closing(open_runtime(data_dir)) as runtime:
        reason: str | None = None
        with runtime.db.unit_of_work() as session:
            policy = policy_service.current_policy(session, clock=runtime.clock)
            actor = identity.actor_for(session, identity.get_user(session, as_user), policy)
            reason = subject.staff_denial(policy, actor)
            if reason is not None:
                subject.audit_staff_denial(session, actor=actor, action=action, reason=reason, object_id=request_id,
                                           clock=runtime.clock)
        if reason is not None:
            raise AccessDenied(reason)
        with runtime.db.unit_of_work() as session:
            row = step(session, policy, actor, runtime.clock)
            session.flush()
            session.expunge(row)
        return row


AsStaff = Annotated[str, typer.Option("--as", help="the staff member acting (a role that may use subject_access)")]


@requests_app.command("refuse")
@handle_errors
def requests_refuse(request_id: str, as_user: AsStaff,
                    reason: Annotated[str, typer.Option(help="why, mailed to the requester as written")],
                    data_dir: DataDir = None) -> None:
    """Refuse a request in writing: the reason is mailed to the requester (audited)."""
    _staff_step(data_dir, as_user, "refuse", request_id, lambda s, p, a, c: subject.refuse(
        s, policy=p, actor=a, request_id=request_id, reason=reason, clock=c))
    err.print(f"refused request {request_id}: the reason was mailed to the requester")


@requests_app.command("extend")
@handle_errors
def requests_extend(request_id: str, as_user: AsStaff,
                    reason: Annotated[str, typer.Option(help="why more time is needed, mailed to the requester")],
                    data_dir: DataDir = None) -> None:
    """Extend the deadline once by the policy's extension, in writing; the new date is mailed (audited)."""
    row = _staff_step(data_dir, as_user, "extend", request_id, lambda s, p, a, c: workflow.extend(
        s, policy=p, actor=a, request_id=request_id, reason=reason, clock=c))
    err.print(f"extended request {request_id}: now due {row.due_on}; the requester was mailed")


@requests_app.command("representative")
@handle_errors
def requests_representative(
    request_id: str, as_user: AsStaff,
    name: Annotated[str, typer.Option(help="who acts for the caller")],
    relationship: Annotated[str, typer.Option(help="e.g. parent, attorney, guardian")],
    proof_kind: Annotated[str, typer.Option(help="the proof checked: one of the policy's "
                                                 "subject_requests.representatives.proof_kinds")],
    data_dir: DataDir = None,
) -> None:
    """Record a personal representative acting for the caller and the proof of authority checked (audited)."""
    _staff_step(data_dir, as_user, "representative", request_id, lambda s, p, a, c: workflow.record_representative(
        s, policy=p, actor=a, request_id=request_id, name=name, relationship=relationship, proof_kind=proof_kind,
        clock=c))
    err.print(f"recorded the representative of request {request_id}")
