"""``callvault capture reconcile|incidents|resolve-incident``: call records against what was stored.

Thin over ``capture.reconcile`` and ``capture.incidents``. The command line is the operator's (whoever runs it
holds the database credentials), so it acts as a compliance role and is audited as ``cli:<os user>``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer
from rich.table import Table

from callvault.capture import call_records, incidents
from callvault.capture.imports.settings import pbx_settings
from callvault.capture.reconcile import reconcile
from callvault.cli.capture_commands import capture_app
from callvault.cli.main import CLI_ACTOR, DataDir, handle_errors, open_runtime, out, print_json
from callvault.core.errors import FieldProblem, InvalidInput
from callvault.policy import service as policy_service


def _zone(name: str | None, default: ZoneInfo) -> ZoneInfo:
    if not name:
        return default
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"--timezone {name!r} is not a time zone name (e.g. Europe/London, UTC)") from None


def parse_day_or_time(value: str | None, option: str, *, end: bool = False) -> datetime | None:
    """``YYYY-MM-DD`` (midnight UTC; the next midnight for an end, so the day is included) or ISO 8601."""
    if not value:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime.combine(day + timedelta(days=1 if end else 0), time(0), tzinfo=UTC)
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{option} {value!r}:", [FieldProblem(option, "give YYYY-MM-DD or an ISO 8601 date-time")]
                           ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@capture_app.command("reconcile")
@handle_errors
def reconcile_command(
    cdr: Annotated[Path, typer.Option("--cdr", help="the PBX/SBC's call records (CSV)")],
    fmt: Annotated[str, typer.Option("--format", help="generic (header row, docs/capture.md) | asterisk "
                                                      "(Master.csv) | freeswitch (mod_cdr_csv)")] = "generic",
    timezone: Annotated[str | None, typer.Option("--timezone", help="zone of the PBX's local times [default: "
                                                                    "CALLVAULT_PBX_TIMEZONE, else UTC]")] = None,
    tolerance: Annotated[int, typer.Option("--tolerance", help="seconds a recording's start may differ from the "
                                                               "record's when matched by extension")] = 120,
    json_output: Annotated[bool, typer.Option("--json")] = False,
    data_dir: DataDir = None,
) -> None:
    """Compare call records with what was stored; under a mandatory policy raise each missing, failed, gapped
    or refused call as an incident (once: running it again raises nothing new)."""
    if fmt not in call_records.FORMATS:
        raise InvalidInput(f"--format {fmt!r}: use one of {', '.join(call_records.FORMATS)}")
    if not 0 <= tolerance <= 3600:
        raise InvalidInput("--tolerance must be between 0 and 3600 seconds")
    try:
        data = cdr.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read the call records {cdr}: {exc.strerror or exc}") from None
    runtime = open_runtime(data_dir)
    try:
        zone = _zone(timezone, pbx_settings(runtime.settings.env).timezone)
        records = call_records.read_records(data, fmt=fmt, region=runtime.settings.default_region, tz=zone)
        with runtime.db.unit_of_work() as session:
            policy = policy_service.current_policy(session, clock=runtime.clock)
            result = reconcile(session, policy=policy, records=records, actor=CLI_ACTOR, actor_role="cli",
                               tolerance=timedelta(seconds=tolerance), clock=runtime.clock)
    finally:
        runtime.close()
    if json_output:
        print_json({"summary": result.summary(), "mandatory": result.mandatory, "raised": result.raised,
                    "counts": dict(result.counts), "findings": [
                        {"line": f.record.line, "call_id": f.record.call_id, "outcome": f.outcome, "detail": f.detail,
                         "incident_id": f.incident_id} for f in result.findings]})
        return
    out.print(result.summary(), highlight=False, soft_wrap=True)
    for f in result.problems:
        mark = f" → incident {f.incident_id}" if f.incident_id else ""
        out.print(f"  line {f.record.line}: call {f.record.call_id} {f.outcome}: {f.detail}{mark}", highlight=False,
                  soft_wrap=True)


@capture_app.command("incidents")
@handle_errors
def incidents_command(
    status: Annotated[str | None, typer.Option("--status", help="open | resolved | all [default: all]")] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="missing | failed | gap | refused")] = None,
    since: Annotated[str | None, typer.Option("--since", help="calls started on/after (YYYY-MM-DD or ISO)")] = None,
    until: Annotated[str | None, typer.Option("--until", help="calls started up to (YYYY-MM-DD: that day "
                                                              "included)")] = None,
    json_output: Annotated[bool, typer.Option("--json")] = False,
    data_dir: DataDir = None,
) -> None:
    """List recording incidents: calls the policy says must be recorded that are not (wholly) on record."""
    start, end = parse_day_or_time(since, "--since"), parse_day_or_time(until, "--until", end=True)
    status = None if status == "all" else status
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            rows = incidents.list_incidents(session, status=status, kind=kind, since=start, until=end)
            listed = [{"id": r.id, "kind": r.kind, "status": r.status, "call_id": r.call_id,
                       "started_at": r.started_at.isoformat(), "direction": r.direction, "extension": r.extension,
                       "team": r.team, "detail": r.detail, "clause": r.clause, "source": r.source,
                       "resolved_by": r.resolved_by, "resolution_note": r.resolution_note} for r in rows]
    finally:
        runtime.close()
    if json_output:
        print_json(listed)
        return
    table = Table("call started", "kind", "status", "call", "extension", "team", "what was found", "id")
    for r in listed:
        table.add_row(str(r["started_at"])[:16], str(r["kind"]), str(r["status"]), str(r["call_id"]),
                      str(r["extension"] or ""), str(r["team"] or ""), str(r["detail"]), str(r["id"]))
    out.print(table)
    out.print(f"{len(listed)} incident(s)")


@capture_app.command("resolve-incident")
@handle_errors
def resolve_incident_command(
    incident_id: Annotated[str, typer.Argument(help="the incident's id (callvault capture incidents)")],
    note: Annotated[str, typer.Option("--note", help="what was found and done")],
    data_dir: DataDir = None,
) -> None:
    """Resolve an incident with a note (audited)."""
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            row = incidents.resolve(session, incident_id=incident_id, note=note,
                                    who=incidents.Officer(username=CLI_ACTOR, role="cli"), clock=runtime.clock)
            kind, call = row.kind, row.call_id
    finally:
        runtime.close()
    out.print(f"incident {incident_id} ({kind}, call {call}) resolved", highlight=False)
