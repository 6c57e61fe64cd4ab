"""``callvault retention …``, ``callvault control …`` and ``callvault quarantine …``.

The command line runs with the machine operator's authority (like ``ingest``): it acts as the
policy's administering role, and every change is audited under ``cli:<user>``. ``callvault control``
is the exception: a recording control is the agent's act (A14, B4), so it runs ``--as`` the account
that may file it, the agent on the call or the phone system's integration account (a role in
``controls.integration_roles``); an administrator never stops, pauses or wipes someone's call.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from sqlalchemy import select

from callvault.audit import service as audit
from callvault.capture import control
from callvault.capture.personal import PersonalRefused
from callvault.cli.main import CLI_ACTOR, DataDir, app, err, handle_errors, open_runtime, out, print_json
from callvault.core.clock import FixedClock
from callvault.core.errors import AccessDenied, FieldProblem, InvalidInput, NotFound
from callvault.identity import service as identity
from callvault.policy import service as policy_service
from callvault.policy.decide import Actor
from callvault.policy.schema import PolicyDocument
from callvault.recordings.models import Recording, RecordingState
from callvault.retention import service as retention
from callvault.retention.shred import finish
from callvault.retention.sweep import DEFAULT_BATCH, dry_run, sweep
from callvault.runtime import Runtime

retention_app = typer.Typer(help="Retention: sweep, report, cases and legal holds.", no_args_is_help=True)
case_app = typer.Typer(help="Cases (complaint, investigation, legal claim) that recordings link to.",
                       no_args_is_help=True)
hold_app = typer.Typer(help="Legal holds: suspend destruction, with a reason, owner and review date.",
                       no_args_is_help=True)
control_app = typer.Typer(help="Recording control: stop, pause, resume, personal (A14, B4), filed --as the agent on "
                               "the call or the phone system's integration account (controls.integration_roles).",
                          no_args_is_help=True)
quarantine_app = typer.Typer(help="Recordings quarantined for missing consent evidence (A5, B2).",
                             no_args_is_help=True)
app.add_typer(retention_app, name="retention")
retention_app.add_typer(case_app, name="case")
retention_app.add_typer(hold_app, name="hold")
app.add_typer(control_app, name="control")
app.add_typer(quarantine_app, name="quarantine")

JsonOut = Annotated[bool, typer.Option("--json", help="machine-readable output")]



def _parse_instant(value: str, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        problem = FieldProblem(name, f"{value!r} is not an ISO 8601 date/time")
        raise InvalidInput(f"invalid {name}:", [problem]) from None
    if parsed.tzinfo is None:
        if len(value) == 10:  # a plain date means midnight UTC
            return parsed.replace(tzinfo=UTC)
        raise InvalidInput(f"invalid {name}:", [FieldProblem(name, "must include a UTC offset, e.g. +00:00")])
    return parsed


def _parse_date(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"invalid {name}:", [FieldProblem(name, f"{value!r} is not a date (YYYY-MM-DD)")]) from None


def _admin_actor(policy: PolicyDocument) -> Actor:
    role = "admin" if "admin" in policy.roles else next(
        (name for name, rule in policy.roles.items() if rule.can_administer), "")
    return Actor(user_id="cli", username=CLI_ACTOR, role=role)


def _policy(runtime: Runtime) -> PolicyDocument:
    with runtime.db.unit_of_work() as session:
        return policy_service.current_policy(session, clock=runtime.clock)


def _with_clock(data_dir: Path | None, now: str | None) -> Runtime:
    runtime = open_runtime(data_dir)
    if now is not None:
        runtime.clock = FixedClock(_parse_instant(now, "now"))
    return runtime


# ------------------------------------------------------------------------------------------- sweep
@retention_app.command("sweep")
@handle_errors
def retention_sweep(
    dry: Annotated[bool, typer.Option("--dry-run", help="list what would go and why; change nothing")] = False,
    now: Annotated[str | None, typer.Option("--now", help="sweep as of this instant (ISO 8601 with offset)")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=10000)] = DEFAULT_BATCH,
    limit: Annotated[int | None, typer.Option("--limit", help="--dry-run: list at most this many")] = None,
    json_output: JsonOut = False,
    data_dir: DataDir = None,
) -> None:
    """Destroy every recording whose retention date has come and that no legal hold protects."""
    runtime = _with_clock(data_dir, now)
    try:
        if dry:
            result = dry_run(runtime.db, clock=runtime.clock, limit=limit)
            if json_output:
                print_json({"would_destroy": [c.__dict__ for c in result.candidates],
                            "by_rule": dict(result.by_rule), "held": result.held,
                            "kept_for_requests": result.kept_for_requests})
                return
            table = Table("recording", "call", "started", "destroy after", "rule",
                          title=f"Would destroy {len(result.candidates)} recording(s)")
            for c in result.candidates:
                table.add_row(c.recording_id, c.call_id, f"{c.started_at:%Y-%m-%d}",
                              f"{c.destroy_after:%Y-%m-%d %H:%M}", c.rule)
            out.print(table)
            out.print(f"{result.held} due recording(s) kept by a legal hold; {result.kept_for_requests} kept until "
                      "the caller's, operator's or access request that wants them is answered.")
            return
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TimeRemainingColumn(), console=err, transient=json_output) as progress:
            task = progress.add_task("destroying", total=None)
            result = sweep(db=runtime.db, store=runtime.store, keyring=runtime.keyring, clock=runtime.clock,
                           batch_size=batch_size, actor=CLI_ACTOR,
                           on_start=lambda total: progress.update(task, total=total),
                           on_batch=lambda n: progress.advance(task, n))
        summary = {"destroyed": result.destroyed, "by_rule": dict(result.by_rule), "resumed": result.resumed,
                   "reapplied": result.reapplied, "recomputed": result.recomputed, "held": result.held,
                   "kept_for_requests": result.kept_for_requests}
        if json_output:
            print_json(summary)
            return
        rules = ", ".join(f"{n} by {rule}" for rule, n in sorted(result.by_rule.items())) or "none due"
        out.print(f"Destroyed {result.destroyed} recording(s) ({rules}); finished {result.resumed} left by an "
                  f"interrupted run; {result.reapplied} destroyed again (key on the key-destruction list, e.g. "
                  f"after a restore); {result.held} due recording(s) kept by a legal hold; "
                  f"{result.kept_for_requests} kept until the request that wants them is answered.")
    finally:
        runtime.close()


@retention_app.command("report")
@handle_errors
def retention_report(
    start: Annotated[str, typer.Option("--from", help="start (ISO date or date/time), inclusive")],
    end: Annotated[str, typer.Option("--to", help="end (ISO date or date/time), exclusive")],
    json_output: JsonOut = False,
    data_dir: DataDir = None,
) -> None:
    """Per month: how many recordings were destroyed, by rule; and what is held, why, by whom."""
    first, last = _parse_instant(start, "from"), _parse_instant(end, "to")
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            result = retention.report(session, start=first, end=last, clock=runtime.clock)
    finally:
        runtime.close()
    if json_output:
        print_json({"from": first.isoformat(), "to": last.isoformat(), "destroyed_total": result.destroyed_total,
                    "destroyed": [{"period": p.period, "total": p.total, "by_rule": p.by_rule}
                                  for p in result.destroyed],
                    "held": [h.__dict__ for h in result.held],
                    "overdue_for_destruction": result.overdue_for_destruction})
        return
    table = Table("period", "destroyed", "by rule", title=f"Destroyed {first:%Y-%m-%d} to {last:%Y-%m-%d}")
    for p in result.destroyed:
        table.add_row(p.period, str(p.total), ", ".join(f"{rule}: {n}" for rule, n in sorted(p.by_rule.items())))
    out.print(table)
    out.print(f"Total destroyed: {result.destroyed_total}")
    held = Table("hold", "recording / case", "recordings", "reason", "owner", "review", title="Held")
    for h in result.held:
        review = f"{h.review_on}" + (" (OVERDUE)" if h.review_overdue else "")
        held.add_row(h.hold_id[:8], h.recording_id or f"case {h.case_ref}", str(h.recordings_held), h.reason, h.owner,
                     review)
    out.print(held)
    if result.overdue_for_destruction:
        err.print(f"[yellow]{result.overdue_for_destruction} recording(s) are past their date and not held: "
                  "run `callvault retention sweep`[/]")


@retention_app.command("show")
@handle_errors
def retention_show(recording_id: str, data_dir: DataDir = None) -> None:
    """A recording's destruction date and the rule that sets it."""
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            row = session.get(Recording, recording_id)
            if row is None or row.state == RecordingState.PENDING:
                raise NotFound("no such recording")
            if row.state == RecordingState.DESTROYED:
                out.print(f"{row.id}: destroyed {row.destroyed_at:%Y-%m-%d %H:%M} UTC by rule {row.retention_rule}")
                return
            hold = " — ON LEGAL HOLD (destruction suspended)" if row.on_hold else ""
            out.print(f"{row.id}: destroyed after {row.destroy_after:%Y-%m-%d %H:%M} UTC by rule "
                      f"{row.retention_rule}{hold}")
    finally:
        runtime.close()


# -------------------------------------------------------------------------------------------- cases
@case_app.command("open")
@handle_errors
def case_open(
    ref: str,
    kind: Annotated[str, typer.Option("--kind", help="complaint | investigation | legal_claim")],
    description: Annotated[str, typer.Option("--description")] = "",
    data_dir: DataDir = None,
) -> None:
    """Open a case; recordings whose metadata names it (case_ref) belong to it."""
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            policy = policy_service.current_policy(session, clock=runtime.clock)
            actor = _admin_actor(policy)
            retention.open_case(session, policy=policy, actor=actor.username, actor_role=actor.role, ref=ref,
                                kind=kind, description=description, clock=runtime.clock)
        out.print(f"Opened case {ref} ({kind}).")
    finally:
        runtime.close()


def _case_change(ref: str, data_dir: Path | None, verb: str) -> None:
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            policy = policy_service.current_policy(session, clock=runtime.clock)
            actor = _admin_actor(policy)
            change = retention.resolve_case if verb == "resolved" else retention.reopen_case
            change(session, policy=policy, actor=actor.username, actor_role=actor.role, ref=ref, clock=runtime.clock)
            count = len(list(session.scalars(select(Recording.id).where(
                Recording.case_ref == ref, Recording.state == RecordingState.AVAILABLE))))
        out.print(f"Case {ref} {verb}; {count} recording(s) linked to it have new destruction dates.")
    finally:
        runtime.close()


@case_app.command("resolve")
@handle_errors
def case_resolve(ref: str, data_dir: DataDir = None) -> None:
    """Resolve a case: its recordings go after the policy's grace period (A9), or at the cap if sooner."""
    _case_change(ref, data_dir, "resolved")


@case_app.command("reopen")
@handle_errors
def case_reopen(ref: str, data_dir: DataDir = None) -> None:
    """Reopen a resolved case."""
    _case_change(ref, data_dir, "reopened")


@case_app.command("link")
@handle_errors
def case_link(ref: str, recording_id: str, data_dir: DataDir = None) -> None:
    """Link a recording to a case."""
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            policy = policy_service.current_policy(session, clock=runtime.clock)
            actor = _admin_actor(policy)
            row = retention.link_recording(session, policy=policy, actor=actor.username, actor_role=actor.role,
                                           ref=ref, recording_id=recording_id, clock=runtime.clock)
            out.print(f"Linked {row.id} to case {ref}; destroyed after {row.destroy_after:%Y-%m-%d} "
                      f"({row.retention_rule}).")
    finally:
        runtime.close()


@case_app.command("list")
@handle_errors
def case_list(json_output: JsonOut = False, data_dir: DataDir = None) -> None:
    """Every case."""
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            cases = [(c.ref, c.kind, c.status, c.opened_at, c.resolved_at) for c in retention.list_cases(session)]
    finally:
        runtime.close()
    if json_output:
        print_json([{"ref": r, "kind": k, "status": s, "opened_at": o, "resolved_at": z} for r, k, s, o, z in cases])
        return
    table = Table("case", "kind", "status", "opened", "resolved")
    for ref, kind, status, opened, resolved in cases:
        table.add_row(ref, kind, status, f"{opened:%Y-%m-%d}", f"{resolved:%Y-%m-%d}" if resolved else "")
    out.print(table)


# -------------------------------------------------------------------------------------------- holds
@hold_app.command("place")
@handle_errors
def hold_place(
    reason: Annotated[str, typer.Option("--reason", help="why the recording(s) must be kept")],
    owner: Annotated[str, typer.Option("--owner", help="who is responsible for the hold")],
    review_date: Annotated[str, typer.Option("--review-date", help="YYYY-MM-DD: when to review the hold")],
    recording: Annotated[str | None, typer.Option("--recording", help="hold this recording")] = None,
    case: Annotated[str | None, typer.Option("--case", help="hold every recording of this case")] = None,
    data_dir: DataDir = None,
) -> None:
    """Place a legal hold on a recording or a case; destruction is suspended until it is released."""
    review = _parse_date(review_date, "review_date")
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            policy = policy_service.current_policy(session, clock=runtime.clock)
            actor = _admin_actor(policy)
            hold = retention.place_hold(session, policy=policy, actor=actor.username, actor_role=actor.role,
                                        reason=reason, owner=owner, review_on=review, recording_id=recording,
                                        case_ref=case, clock=runtime.clock)
        out.print(hold.id)
    finally:
        runtime.close()


@hold_app.command("release")
@handle_errors
def hold_release(
    hold_id: str,
    reason: Annotated[str, typer.Option("--reason", help="why the hold is no longer needed")],
    data_dir: DataDir = None,
) -> None:
    """Release a legal hold; what it protected goes at its destruction date again."""
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            policy = policy_service.current_policy(session, clock=runtime.clock)
            actor = _admin_actor(policy)
            retention.release_hold(session, policy=policy, actor=actor.username, actor_role=actor.role,
                                   hold_id=hold_id, reason=reason, clock=runtime.clock)
        out.print(f"Released hold {hold_id}.")
    finally:
        runtime.close()


@hold_app.command("list")
@handle_errors
def hold_list(json_output: JsonOut = False, data_dir: DataDir = None) -> None:
    """Active legal holds."""
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            holds = [(h.id, h.recording_id, h.case_ref, h.reason, h.owner, h.review_on)
                     for h in retention.list_holds(session)]
    finally:
        runtime.close()
    if json_output:
        print_json([{"id": i, "recording_id": r, "case_ref": c, "reason": why, "owner": o, "review_on": d}
                    for i, r, c, why, o, d in holds])
        return
    table = Table("hold", "recording / case", "reason", "owner", "review")
    for hold_id, rec, case, why, owner, review in holds:
        table.add_row(hold_id, rec or f"case {case}", why, owner, str(review))
    out.print(table)


# ------------------------------------------------------------------------------------------ control
def _control(kind: str, recording: str | None, call: str | None, at: str | None, until: str | None,
             data_dir: Path | None, as_user: str, version: str | None = None) -> None:
    if (recording is None) == (call is None):
        raise InvalidInput("invalid recording control:", [FieldProblem("recording", "give --recording or --call")])
    when = _parse_instant(at, "at") if at else None
    end = _parse_instant(until, "until") if until else None
    runtime = open_runtime(data_dir)
    try:
        refusal: AccessDenied | PersonalRefused | None = None
        with runtime.db.unit_of_work() as session:
            policy = policy_service.current_policy(session, clock=runtime.clock)
            user = identity.get_user(session, as_user)
            actor = identity.actor_for(session, user, policy)
            try:
                if not user.active:
                    raise AccessDenied(f"account {user.username!r} is deactivated", reason="account deactivated",
                                       clauses=("A14", "B4"))
                filed = control.file_control(session, policy=policy, actor=actor, kind=kind, at=when, until=end,
                                             call_id=call, recording_id=recording, clock=runtime.clock,
                                             version=version)
            except (AccessDenied, PersonalRefused) as exc:  # a stored call's "personal" is its agent's alone
                refusal = exc
        if refusal is not None:
            with runtime.db.unit_of_work() as session:
                audit.append(session, audit.AuditEvent(
                    actor=actor.username, actor_role=actor.role, action=f"recording.control_{kind}", decision="deny",
                    object_type="recording" if recording else "call", object_id=(recording or call or "")[:200],
                    reason=refusal.reason, clauses=refusal.clauses), clock=runtime.clock)
            raise refusal
        outcome = control.apply_to_stored(db=runtime.db, store=runtime.store, keyring=runtime.keyring, filed=filed,
                                          actor=actor, clock=runtime.clock)
        out.print(f"{kind}: {outcome}")
    finally:
        runtime.close()


AsUser = Annotated[str, typer.Option(
    "--as", help="the account filing it: the agent on the call, or the phone system's integration account (a role "
                 "in the policy's controls.integration_roles); an administrator may not (A14, B4)")]
Recording_ = Annotated[str | None, typer.Option("--recording", help="a stored recording's id")]
Call = Annotated[str | None, typer.Option("--call", help="the telephony call id (stored yet or not)")]
At = Annotated[str | None, typer.Option("--at", help="the instant on the call (ISO 8601 with offset)")]


@control_app.command("stop")
@handle_errors
def control_stop(as_user: AsUser, at: At = None, recording: Recording_ = None, call: Call = None,
                 data_dir: DataDir = None) -> None:
    """Stop recording at an instant: nothing after it is kept (a stored recording is truncated)."""
    _control("stop", recording, call, at, None, data_dir, as_user)


@control_app.command("pause")
@handle_errors
def control_pause(
    as_user: AsUser,
    at: At = None,
    until: Annotated[str | None, typer.Option("--until", help="when recording resumed")] = None,
    recording: Recording_ = None, call: Call = None, data_dir: DataDir = None,
) -> None:
    """Pause recording from --at (until --until): the span is silenced and never kept."""
    _control("pause", recording, call, at, until, data_dir, as_user)


@control_app.command("resume")
@handle_errors
def control_resume(as_user: AsUser, at: At = None, recording: Recording_ = None, call: Call = None,
                   data_dir: DataDir = None) -> None:
    """Resume recording after a pause (for a call not stored yet)."""
    _control("resume", recording, call, at, None, data_dir, as_user)


@control_app.command("personal")
@handle_errors
def control_personal(as_user: AsUser, recording: Recording_ = None, call: Call = None,
                     data_dir: DataDir = None) -> None:
    """The call is personal: nothing of it is kept. For a call in progress or not stored yet; a stored
    recording is marked personal only by its recorded agent, shortly after the call."""
    _control("personal", recording, call, None, None, data_dir, as_user)


@control_app.command("announced")
@handle_errors
def control_announced(
    as_user: AsUser,
    at: At = None,
    until: Annotated[str | None, typer.Option("--until", help="when the announcement ended")] = None,
    version: Annotated[str | None, typer.Option(
        "--version", help="the announcement prompt's version (one the policy lists; without it the call is "
                          "quarantined)")] = None,
    call: Call = None, data_dir: DataDir = None,
) -> None:
    """Consent evidence for an inbound call in progress: the announcement (prompt --version) was played (A5, B2)."""
    _control("announced", None, call, at, until, data_dir, as_user, version)


@control_app.command("notified")
@handle_errors
def control_notified(as_user: AsUser, at: At = None, call: Call = None, data_dir: DataDir = None) -> None:
    """Consent evidence for an outbound call in progress: the agent told the called party (A5, B2)."""
    _control("notified", None, call, at, None, data_dir, as_user)


# --------------------------------------------------------------------------------------- quarantine
@quarantine_app.command("list")
@handle_errors
def quarantine_list(json_output: JsonOut = False, data_dir: DataDir = None) -> None:
    """Recordings waiting for an administrator because consent evidence is missing."""
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            rows = [(r.id, r.call_id, r.direction, r.extension, r.started_at) for r in session.scalars(
                select(Recording).where(Recording.state == RecordingState.AVAILABLE, Recording.quarantined.is_(True))
                .order_by(Recording.started_at))]
    finally:
        runtime.close()
    if json_output:
        print_json([{"id": i, "call_id": c, "direction": d, "extension": e, "started_at": s}
                    for i, c, d, e, s in rows])
        return
    table = Table("recording", "call", "direction", "extension", "started", title="Quarantined")
    for rec_id, call_id, direction, extension, started in rows:
        table.add_row(rec_id, call_id, direction, extension or "", f"{started:%Y-%m-%d %H:%M}")
    out.print(table)


@quarantine_app.command("resolve")
@handle_errors
def quarantine_resolve(
    recording_id: str,
    reason: Annotated[str, typer.Option("--reason", help="e.g. where the consent evidence was found")],
    release: Annotated[bool, typer.Option("--release", help="evidence found: return it to normal use")] = False,
    destroy: Annotated[bool, typer.Option("--destroy", help="no evidence: destroy it now")] = False,
    data_dir: DataDir = None,
) -> None:
    """Release or destroy a quarantined recording (audited, with the reason)."""
    if release == destroy:
        raise InvalidInput("invalid quarantine resolution:", [FieldProblem("decision", "give --release or --destroy")])
    runtime = open_runtime(data_dir)
    try:
        refusal: control.UnderLegalHold | None = None
        with runtime.db.unit_of_work() as session:
            policy = policy_service.current_policy(session, clock=runtime.clock)
            try:
                pending = control.resolve_quarantine(
                    session, policy=policy, actor=_admin_actor(policy), recording_id=recording_id,
                    decision="release" if release else "destroy", reason=reason, keyring=runtime.keyring,
                    administrative=True, clock=runtime.clock)
            except control.UnderLegalHold as exc:
                refusal = exc
        if refusal is not None:
            with runtime.db.unit_of_work() as session:
                audit.append(session, audit.AuditEvent(
                    actor=CLI_ACTOR, actor_role="admin", action="recording.quarantine_destroy", decision="deny",
                    object_type="recording", object_id=recording_id, reason=refusal.reason,
                    clauses=refusal.clauses), clock=runtime.clock)
            raise refusal
        finish(runtime.db, runtime.store, runtime.keyring, pending, clock=runtime.clock)
        out.print(f"{recording_id}: {'released' if release else 'destroyed'}")
    finally:
        runtime.close()
