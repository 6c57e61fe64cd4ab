"""Oversight commands: ``audit verify|checkpoint|proof|export|keygen|public-key|harden-postgres``,
``report compliance``, ``misuse list|detect``, ``policy diff|review``."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from rich.table import Table
from sqlalchemy import text

from callvault.audit import alarm as audit_alarm
from callvault.audit import checkpoints
from callvault.audit.anchor import CheckpointAnchor, publish_anchored
from callvault.audit.signing import (
    Signer,
    create_signing_key,
    load_public_key,
    load_signer,
    public_key_pem,
    signing_key_path,
)
from callvault.cli.main import (
    DataDir,
    app,
    audit_app,
    err,
    handle_errors,
    open_runtime,
    out,
    policy_app,
    print_json,
    settings_for,
)
from callvault.core.errors import AccessDenied, ConfigurationError, FieldProblem, InvalidInput, NotFound
from callvault.identity import service as identity
from callvault.notify.service import SmtpSettings
from callvault.oversight import policy_lifecycle, reports
from callvault.oversight import service as oversight
from callvault.oversight.detection import run_detection
from callvault.policy import service as policy_service
from callvault.runtime import Runtime

report_app = typer.Typer(help="Compliance reports (A4).", no_args_is_help=True)
misuse_app = typer.Typer(help="Misuse and breach reports (B12).", no_args_is_help=True)
app.add_typer(report_app, name="report")
app.add_typer(misuse_app, name="misuse")

_ROLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
FromOpt = Annotated[str | None, typer.Option("--from", help="YYYY-MM-DD or ISO 8601 date-time (UTC if no offset)")]
ToOpt = Annotated[str | None, typer.Option("--to", help="YYYY-MM-DD (that whole day included) or ISO 8601 "
                                                        "date-time (exclusive)")]


def parse_bound(value: str | None, *, option: str, end: bool) -> datetime | None:
    """``--from``/``--to``: a date (a ``--to`` date includes that day) or a date-time; naive means UTC."""
    if value is None:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime.combine(day + timedelta(days=1 if end else 0), time(0), tzinfo=UTC)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"invalid {option}", [FieldProblem(option, f"{value!r} is not YYYY-MM-DD or ISO 8601")]
                           ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _signer(runtime: Runtime) -> Signer:
    return load_signer(signing_key_path(runtime.settings.key_dir, runtime.settings.env))


def _trusted_key(runtime: Runtime, public_key: Path | None) -> Ed25519PublicKey | None:
    if public_key is not None:
        return load_public_key(public_key)
    try:
        return _signer(runtime).public_key
    except ConfigurationError:
        return None


def _read_json(path: Path, what: str) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"cannot read the {what} {path}: {exc}") from exc


# --------------------------------------------------------------------------------------------- audit
@audit_app.command("verify")
@handle_errors
def audit_verify(
    public_key: Annotated[Path | None, typer.Option("--public-key", help="trusted public key (PEM); default: "
                                                                          "the signing key's")] = None,
    saved: Annotated[list[Path] | None, typer.Option("--checkpoint", help="a checkpoint JSON kept elsewhere; "
                                                                           "the log must still match it")] = None,
    data_dir: DataDir = None,
) -> None:
    """Check chain, Merkle tree and checkpoint signatures, and the log against the checkpoint anchored
    outside the database: exit 0 if intact, 1 naming the first bad entry or checkpoint."""
    runtime = open_runtime(data_dir)
    try:
        trusted = [checkpoints.TrustedCheckpoint.from_json(_read_json(p, "checkpoint"), where=str(p))
                   for p in saved or ()]
        anchored = CheckpointAnchor(runtime.settings.anchor_dir).latest()
        with runtime.db.unit_of_work() as session:
            result = checkpoints.verify_log(session, public_key=_trusted_key(runtime, public_key), trusted=trusted,
                                            anchored=anchored)
    finally:
        runtime.close()
    if result.intact:
        out.print(f"audit log intact: {result.entries_checked} entries, head {result.head_hash[:16]}…; "
                  f"{result.checkpoints_checked} signed checkpoint(s) verified"
                  + (f" (latest covers {result.latest_tree_size})" if result.checkpoints_checked else ""),
                  highlight=False, soft_wrap=True)
        for note in result.notes:
            out.print(f"  - {note}", highlight=False)
        return
    if result.first_bad_seq is not None:
        err.print(f"[bold red]audit log NOT intact[/]: first bad entry #{result.first_bad_seq}: {result.problem} "
                  f"({result.entries_checked} entries before it verified)", highlight=False, soft_wrap=True)
    else:
        err.print(f"[bold red]audit log NOT intact[/]: first bad checkpoint #{result.first_bad_checkpoint}: "
                  f"{result.problem} ({result.entries_checked} entries chain correctly, "
                  f"{result.checkpoints_checked} checkpoint(s) before it verified)", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@audit_app.command("checkpoint")
@handle_errors
def audit_checkpoint(
    out_file: Annotated[Path | None, typer.Option("--out", help="also write the checkpoint JSON here")] = None,
    data_dir: DataDir = None,
) -> None:
    """Publish a signed checkpoint of the log now and print it (JSON): keep a copy somewhere else.

    Its root is recomputed from every entry (the worker's minutely checkpoints extend the previous one)."""
    runtime = open_runtime(data_dir)
    try:
        signer = _signer(runtime)
        data = publish_anchored(runtime.db, signer=signer, anchor=CheckpointAnchor(runtime.settings.anchor_dir),
                                clock=runtime.clock, actor="cli", full=True,
                                mail_domain=SmtpSettings.from_env(runtime.settings.env).mail_domain)
        assert data is not None
    finally:
        runtime.close()
    if out_file is not None:
        out_file.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print_json(data)


@audit_app.command("acknowledge-alarm")
@handle_errors
def audit_acknowledge_alarm(
    as_user: Annotated[str, typer.Option("--as", help="the administrator acknowledging it (a role that "
                                                      "administers the system)")],
    reason: Annotated[str, typer.Option("--reason", help="what was found and done (at least 10 characters)")],
    rebase: Annotated[bool, typer.Option("--rebase", help="accept the entries as they stand now: signing "
                                                          "verifies the chain from the next entry on")] = False,
    data_dir: DataDir = None,
) -> None:
    """Close the audit tamper alarm (audited). Signing resumes once the whole log verifies again, or,
    with --rebase, from the entries as they now stand (docs/audit.md)."""
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            policy = policy_service.current_policy(session, clock=runtime.clock)
            user = identity.get_user(session, as_user)
            refused = audit_alarm.acknowledgement_refusal(policy, username=user.username, role=user.role,
                                                          active=user.active)
            if refused is None:
                closed = audit_alarm.acknowledge(session, actor=user.username, actor_role=user.role, reason=reason,
                                                 rebase=rebase, clock=runtime.clock)
                alarm_id, rebased = closed.id, closed.rebase_seq
            else:
                audit_alarm.record_refusal(session, actor=user.username, actor_role=user.role, reason=refused,
                                           clock=runtime.clock)
    finally:
        runtime.close()
    if refused is not None:
        raise AccessDenied(refused)
    out.print(f"audit alarm #{alarm_id} acknowledged; "
              + (f"re-based after entry #{rebased}: " if rebased is not None else "the whole log is verified ")
              + "at the next checkpoint", highlight=False, soft_wrap=True)


@audit_app.command("proof")
@handle_errors
def audit_proof(entry_seq: Annotated[int, typer.Argument(help="the entry's seq (#N)")], data_dir: DataDir = None
                ) -> None:
    """Print an RFC 9162 inclusion proof (JSON) of one entry against the latest checkpoint."""
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            proof = checkpoints.inclusion_proof(session, entry_seq)
    finally:
        runtime.close()
    print_json(proof)


@audit_app.command("export")
@handle_errors
def audit_export(
    out_file: Annotated[Path, typer.Option("--out", help="bundle file to write (JSON)")],
    start: FromOpt = None,
    end: ToOpt = None,
    data_dir: DataDir = None,
) -> None:
    """Write a self-contained bundle (entries, checkpoints, proofs, public key) for offline checking with
    tools/verify_audit_bundle.py. Publishes a checkpoint first if the newest entries are not covered."""
    first = parse_bound(start, option="--from", end=False)
    last = parse_bound(end, option="--to", end=True)
    runtime = open_runtime(data_dir)
    try:
        signer = _signer(runtime)
        with runtime.db.unit_of_work() as session:
            span = checkpoints.seq_range(session, first, last)
            if span is None:
                raise NotFound("no audit entries in that period")
            latest = checkpoints.latest_checkpoint(session)
        if latest is None or latest.tree_size < span[1]:
            publish_anchored(runtime.db, signer=signer, anchor=CheckpointAnchor(runtime.settings.anchor_dir),
                             clock=runtime.clock, actor="cli")
        with runtime.db.unit_of_work() as session:
            bundle = checkpoints.export_bundle(session, public_key=signer.public_key, first_seq=span[0],
                                               last_seq=span[1], clock=runtime.clock)
    finally:
        runtime.close()
    out_file.write_text(checkpoints.dump_bundle(bundle), encoding="utf-8")
    out.print(f"wrote {out_file}: entries #{span[0]}..#{span[1]}, {len(bundle['checkpoints'])} checkpoint(s); "
              f"check it with: python tools/verify_audit_bundle.py {out_file}", highlight=False, soft_wrap=True)


@audit_app.command("keygen")
@handle_errors
def audit_keygen(data_dir: DataDir = None) -> None:
    """Create the checkpoint signing key (Ed25519, mode 0600) if there is none; never replaces one."""
    settings = settings_for(data_dir)
    path = signing_key_path(settings.key_dir, settings.env)
    created = create_signing_key(path)
    out.print(f"{'created' if created else 'kept the existing'} audit signing key {path}", highlight=False)


@audit_app.command("public-key")
@handle_errors
def audit_public_key(
    out_file: Annotated[Path | None, typer.Option("--out", help="write the PEM here instead of stdout")] = None,
    data_dir: DataDir = None,
) -> None:
    """Print the public key checkpoints are signed with (PEM), for auditors to pin."""
    settings = settings_for(data_dir)
    pem = public_key_pem(load_signer(signing_key_path(settings.key_dir, settings.env)).public_key)
    if out_file is not None:
        out_file.write_text(pem, encoding="utf-8")
    else:
        typer.echo(pem, nl=False)


HARDEN_SQL = (
    "REVOKE UPDATE, DELETE, TRUNCATE ON audit_entries, audit_checkpoints FROM {role}",
    "GRANT SELECT, INSERT ON audit_entries, audit_checkpoints TO {role}",
)


@audit_app.command("harden-postgres")
@handle_errors
def audit_harden_postgres(
    app_role: Annotated[str, typer.Option("--app-role", help="the PostgreSQL role callvault connects as")],
    data_dir: DataDir = None,
) -> None:
    """PostgreSQL: take UPDATE/DELETE/TRUNCATE on the audit tables away from the application role
    (run as the tables' owner or a superuser; see docs/audit.md)."""
    if not _ROLE_NAME.match(app_role):
        raise InvalidInput("invalid role", [FieldProblem("--app-role", f"{app_role!r} is not a plain role name")])
    runtime = open_runtime(data_dir)
    try:
        if runtime.db.dialect != "postgresql":
            raise ConfigurationError("harden-postgres is for PostgreSQL; on SQLite the append-only triggers are "
                                     "the protection (see docs/audit.md)")
        quoted = '"' + app_role + '"'
        with runtime.db.unit_of_work() as session:
            if session.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": app_role}).first() is None:
                raise NotFound(f"PostgreSQL has no role {app_role!r}")
            owners = {row[0] for row in session.execute(text(
                "SELECT tableowner FROM pg_tables WHERE tablename IN ('audit_entries', 'audit_checkpoints')"))}
            for statement in HARDEN_SQL:
                session.execute(text(statement.format(role=quoted)))
    finally:
        runtime.close()
    out.print(f"role {app_role} may now only SELECT and INSERT on audit_entries and audit_checkpoints")
    if app_role in owners:
        err.print(f"[yellow]warning:[/] {app_role} owns the audit tables, so it can grant itself the rights back "
                  "and drop the triggers; let a separate role own the schema (docs/audit.md)", highlight=False)


# -------------------------------------------------------------------------------------------- report
@report_app.command("compliance")
@handle_errors
def report_compliance(
    start: FromOpt = None,
    end: ToOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="csv or html")] = "csv",
    out_file: Annotated[Path | None, typer.Option("--out", help="write here instead of stdout")] = None,
    data_dir: DataDir = None,
) -> None:
    """What was recorded, accessed (by whom, why), denied, released, destroyed, held and quarantined."""
    if fmt not in ("csv", "html"):
        raise InvalidInput("invalid format", [FieldProblem("--format", "csv or html (pdf: print the html)")])
    runtime = open_runtime(data_dir)
    now = runtime.clock.now()
    first = parse_bound(start, option="--from", end=False) or datetime(1970, 1, 1, tzinfo=UTC)
    last = parse_bound(end, option="--to", end=True) or now
    if first >= last:
        runtime.close()
        raise InvalidInput("invalid period", [FieldProblem("--from", "must be before --to")])
    try:
        with runtime.db.unit_of_work() as session:
            data = reports.build_report(session, start=first, end=last, today=now.date())
            doc = policy_service.current_policy(session, clock=runtime.clock)
    finally:
        runtime.close()
    title = f"Compliance report — {doc.organisation} ({doc.policy_id} {doc.version})"
    body = reports.to_csv(data) if fmt == "csv" else reports.to_html(data, title=title)
    if out_file is None:
        typer.echo(body, nl=False)
    else:
        out_file.write_text(body, encoding="utf-8")
        out.print(f"wrote {out_file}")


# -------------------------------------------------------------------------------------------- misuse
@misuse_app.command("list")
@handle_errors
def misuse_list(
    status: Annotated[str | None, typer.Option("--status", help="open | investigating | closed")] = None,
    json_output: Annotated[bool, typer.Option("--json")] = False,
    data_dir: DataDir = None,
) -> None:
    """List misuse reports (newest first), as their recipients see them."""
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            policy = policy_service.current_policy(session, clock=runtime.clock)
            viewer = oversight.Reporter(username="cli", role=policy.misuse.report_to_roles[0])
            rows = oversight.list_reports(session, policy=policy, viewer=viewer, status=status)
    finally:
        runtime.close()
    if json_output:
        print_json([{"id": r.id, "created_at": r.created_at.isoformat(), "status": r.status, "source": r.source,
                     "rule": r.rule, "subject_user": r.subject_user, "summary": r.summary, "evidence": r.evidence}
                    for r in rows])
        return
    table = Table("created", "status", "source", "about", "summary", "id")
    for r in rows:
        table.add_row(r.created_at.strftime("%Y-%m-%d %H:%M"), r.status, r.rule or r.source, r.subject_user or "",
                      r.summary, r.id)
    out.print(table)


@misuse_app.command("detect")
@handle_errors
def misuse_detect(data_dir: DataDir = None) -> None:
    """Run the misuse detection rules now (the worker runs them every 10 minutes)."""
    runtime = open_runtime(data_dir)
    try:
        domain = SmtpSettings.from_env(runtime.settings.env).mail_domain
        with runtime.db.unit_of_work() as session:
            policy = policy_service.current_policy(session, clock=runtime.clock)
            raised = run_detection(session, policy=policy, mail_domain=domain, clock=runtime.clock)
            lines = [f"{r.rule}: {r.summary}" for r in raised]
    finally:
        runtime.close()
    out.print(f"{len(lines)} new report(s)")
    for line in lines:
        out.print(f"  - {line}", highlight=False)


# -------------------------------------------------------------------------------------------- policy
@policy_app.command("diff")
@handle_errors
def policy_diff(
    old: Annotated[str, typer.Argument(help="VERSION or POLICY_ID@VERSION")],
    new: Annotated[str, typer.Argument(help="VERSION or POLICY_ID@VERSION")],
    data_dir: DataDir = None,
) -> None:
    """Show what changed between two stored policy versions: rule by rule, then the YAML."""
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            rendered = policy_lifecycle.diff_versions(session, old, new).render()
    finally:
        runtime.close()
    typer.echo(rendered, nl=False)


@policy_app.command("review")
@handle_errors
def policy_review(data_dir: DataDir = None) -> None:
    """When the policy in force is due for review (B13), and who has not acknowledged it yet."""
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            status = policy_lifecycle.review_status(session, clock=runtime.clock)
            policy = policy_service.current_policy(session, clock=runtime.clock)
            pending = policy_lifecycle.unacknowledged_users(session, policy=policy)
    finally:
        runtime.close()
    state = {"overdue": "OVERDUE", "due_soon": "due soon"}.get(status.stage or "", "not due yet")
    out.print(f"{status.policy_id} version {status.version} (effective {status.effective_from}): review due "
              f"{status.review_due_on} — {state} ({status.days_left} days)", highlight=False, soft_wrap=True)
    out.print(f"{len(pending)} user(s) have not acknowledged this version"
              + (": " + ", ".join(p["username"] for p in pending) if pending else ""), highlight=False, soft_wrap=True)
