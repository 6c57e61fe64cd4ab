"""Emergency ("break the glass") access, a caller's accounting of disclosures, and retention extension on
request, from the command line: the same services as the API and the pages, acting as ``--as USER`` (whose
role the policy decides on); every refusal is put on record (``access.refusals``) before the command fails."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from callvault.access import accounting, emergency, refusals
from callvault.cli.main import DataDir, app, err, handle_errors, open_runtime, out, print_json
from callvault.cli.retention_commands import retention_app
from callvault.core.errors import FieldProblem, InvalidInput, NotFound
from callvault.identity import service as identity
from callvault.policy import service as policy_service
from callvault.policy.decide import Actor
from callvault.policy.schema import PolicyDocument
from callvault.recordings import service as recordings
from callvault.retention import extension
from callvault.retention import service as retention
from callvault.runtime import Runtime

emergency_app = typer.Typer(help="Emergency (break the glass) access and its reviews.", no_args_is_help=True)
app.add_typer(emergency_app, name="emergency")

AsUser = Annotated[str, typer.Option("--as", help="the person acting (their role decides what is allowed)")]
JsonOut = Annotated[bool, typer.Option("--json", help="machine-readable output")]


@contextmanager
def _acting(data_dir: Path | None, as_user: str, action: str, object_type: str = "", object_id: str = "",
            ) -> Iterator[tuple[Runtime, PolicyDocument, Actor]]:
    """The runtime, the policy in force and ``as_user``'s actor; a refusal inside is audited as them."""
    with closing(open_runtime(data_dir)) as runtime:
        with runtime.db.unit_of_work() as session:
            policy = policy_service.current_policy(session, clock=runtime.clock)
            actor = identity.actor_for(session, identity.get_user(session, as_user), policy)
        with refusals.on_record(runtime.db, actor=actor.username, actor_role=actor.role, action=action,
                                object_type=object_type, object_id=object_id, clock=runtime.clock):
            yield runtime, policy, actor


def _date(value: str | None, name: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        problem = FieldProblem(name, f"{value!r} is not a date (YYYY-MM-DD)")
        raise InvalidInput(f"invalid --{name}:", [problem]) from None


@emergency_app.command("declare")
@handle_errors
def declare(
    as_user: AsUser,
    reason: Annotated[str, typer.Option("--reason", help="what the emergency is (at least 10 characters)")],
    minutes: Annotated[int | None, typer.Option("--minutes", help="how long (default and most: the policy's "
                                                                  "emergency_access.max_minutes)")] = None,
    data_dir: DataDir = None,
) -> None:
    """Declare an emergency as --as: recordings beyond their role's scope open for its minutes (audited)."""
    with _acting(data_dir, as_user, "emergency.declare", "emergency_declaration") as (runtime, policy, actor), \
            runtime.db.unit_of_work() as session:
        row = emergency.declare(session, policy=policy, actor=actor, reason=reason, minutes=minutes,
                                clock=runtime.clock)
        ident, ends, due = row.id, row.ends_at, row.review_due_on
    out.print(f"Emergency {ident} declared for {as_user} until {ends:%Y-%m-%d %H:%M} UTC; "
              f"review due by {due.isoformat()}.", highlight=False)


@emergency_app.command("reviews")
@handle_errors
def reviews(as_user: AsUser, as_json: JsonOut = False, data_dir: DataDir = None) -> None:
    """The review queue of --as (a reviewer role): open declarations, their accesses, overdue ones marked."""
    with _acting(data_dir, as_user, "emergency.reviews_list") as (runtime, policy, actor), \
            runtime.db.read_only() as session:
        tasks = emergency.review_queue(session, policy=policy, actor=actor, clock=runtime.clock)
        rows = [{"id": t.declaration.id, "declared_by": t.declaration.username, "role": t.declaration.role,
                 "declared_at": t.declaration.declared_at.isoformat(), "reason": t.declaration.reason,
                 "review_due_on": t.declaration.review_due_on.isoformat(), "overdue": t.overdue,
                 "accesses": [{"at": e.at.isoformat(), "action": e.action, "recording_id": e.object_id,
                               "purpose": e.purpose} for e in t.accesses]} for t in tasks]
    if as_json:
        print_json(rows)
        return
    table = Table("declaration", "by", "declared", "reason", "due", "accesses", title="Emergency reviews")
    for r in rows:
        due = f"{r['review_due_on']} OVERDUE" if r["overdue"] else str(r["review_due_on"])
        table.add_row(str(r["id"]), str(r["declared_by"]), str(r["declared_at"])[:16], str(r["reason"]), due,
                      str(len(r["accesses"])))  # type: ignore[arg-type]
    out.print(table)


@emergency_app.command("review")
@handle_errors
def review(
    declaration_id: str,
    as_user: AsUser,
    outcome: Annotated[str, typer.Option("--outcome", help="justified or misuse (misuse files a misuse report)")],
    notes: Annotated[str, typer.Option("--notes", help="what you reviewed and why it was (not) justified")],
    data_dir: DataDir = None,
) -> None:
    """Record the review of a declaration as --as (a reviewer role, never the declarer)."""
    with _acting(data_dir, as_user, "emergency.review", "emergency_declaration", declaration_id) as (
            runtime, policy, actor), runtime.db.unit_of_work() as session:
        emergency.review(session, policy=policy, actor=actor, declaration_id=declaration_id, outcome=outcome,
                         notes=notes, clock=runtime.clock)
    out.print(f"Declaration {declaration_id} reviewed: {outcome}.", highlight=False)


@app.command("disclosures")
@handle_errors
def disclosures(
    number: Annotated[str, typer.Argument(help="the caller's number, e.g. +14165550142")],
    as_user: AsUser,
    since: Annotated[str | None, typer.Option("--since", help="only from this day (YYYY-MM-DD)")] = None,
    csv_output: Annotated[bool, typer.Option("--csv", help="CSV on stdout")] = False,
    as_json: JsonOut = False,
    data_dir: DataDir = None,
) -> None:
    """A caller's accounting of disclosures (accounting_of_disclosures.roles only; audited)."""
    day = _date(since, "since")
    with _acting(data_dir, as_user, accounting.ACTION, "caller_number", number[:40]) as (runtime, policy, actor), \
            runtime.db.unit_of_work() as session:
        found = accounting.account(session, policy=policy, actor=actor, number=number, since=day,
                                   default_region=runtime.settings.default_region,
                                   form="csv" if csv_output else "json" if as_json else "list", clock=runtime.clock)
    if csv_output:
        sys.stdout.write(accounting.to_csv(found))
        return
    if as_json:
        print_json([d.__dict__ for d in found])
        return
    table = Table("date (UTC)", "recording", "what", "who", "why", "emergency", title=f"Disclosures: {number}")
    for d in found:
        table.add_row(f"{d.at:%Y-%m-%d %H:%M}", d.recording_id, d.action.removeprefix("recording."),
                      f"{d.actor} ({d.actor_role})", d.purpose or d.reason, d.emergency_declaration or "")
    out.print(table)
    if not found:
        err.print("No disclosures on record for this number.")


@retention_app.command("extend")
@handle_errors
def extend(
    recording_id: str,
    as_user: AsUser,
    reason: Annotated[str, typer.Option("--reason", help="who asked and why it must be kept longer")],
    until: Annotated[str | None, typer.Option("--until", help="keep at least until this day (YYYY-MM-DD)")] = None,
    months: Annotated[int | None, typer.Option("--months", help="or: this many months after the call")] = None,
    data_dir: DataDir = None,
) -> None:
    """Keep a recording longer on request as --as (retention.extension.roles), within the policy's limit."""
    day = _date(until, "until")
    with _acting(data_dir, as_user, "retention.extend", "recording", recording_id) as (runtime, policy, actor):
        extension.require_extender(policy, actor.role)
        with runtime.db.unit_of_work() as session:
            row = recordings.get_visible(session, policy=policy, actor=actor, recording_id=recording_id,
                                         clock=runtime.clock)
        if row is None:
            raise NotFound(f"no such recording {recording_id!r}")
        with runtime.db.unit_of_work() as session:
            keep = extension.keep_until_from(keep_until=day, months=months, started_at=row.started_at)
            updated = retention.extend_retention(session, policy=policy, actor=actor.username, actor_role=actor.role,
                                                 recording_id=recording_id, keep_until=keep, reason=reason,
                                                 clock=runtime.clock)
            kept = updated.keep_until
    out.print(f"Recording {recording_id} is kept at least until {kept:%Y-%m-%d}." if kept else "Nothing changed.",
              highlight=False)
