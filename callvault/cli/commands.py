"""The commands behind ``callvault``: init, policy, users, ingest, serve, demo, audit, check."""

from __future__ import annotations

import signal
import sys
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from callvault.audit.signing import create_signing_key, signing_key_path
from callvault.capture.ingest import IngestItem, IngestResult, ingest_many, ingest_recording, reap_stale_ingests
from callvault.cli.main import (
    CLI_ACTOR,
    DataDir,
    app,
    err,
    handle_errors,
    open_runtime,
    out,
    policy_app,
    print_json,
    read_secret_file,
    settings_for,
    users_app,
)
from callvault.core.errors import ConfigurationError, InvalidInput
from callvault.core.migrate import upgrade_to_head
from callvault.core.settings import Settings
from callvault.identity import service as identity
from callvault.policy import service as policy_service
from callvault.policy.loader import load_policy_file, parse_policy_text, policy_to_json
from callvault.policy.risks import policy_risks
from callvault.recordings.integrity import find_problems, temporaries
from callvault.retention.reapply import reapply, reapply_at_start
from callvault.retention.write_once import check_at_start, check_store
from callvault.runtime import Runtime, build_runtime
from callvault.storage.keys import create_kek

if TYPE_CHECKING:
    from callvault.demo.caller import DemoCaller
    from callvault.policy.schema import PolicyDocument

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
DEMO_POLICY_NAME = "demo-policy.yaml"
"""The demo's own policy file, in its data directory (see ``demo``)."""



def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}") from exc


def initialise(settings: Settings, *, policy_file: Path, admin_user: str, admin_password: str) -> None:
    """Create the data directory, key, schema, policy and first administrator (see ``init``)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    policy_text = _read_text(policy_file)
    if not settings.config_path.exists():
        settings.config_path.write_text(
            "# callvault configuration. Environment variables CALLVAULT_* override these.\n"
            "# database_url = \"postgresql://user@host/dbname\"\n"
            "# storage_url = \"/path/to/blobs\"\n"
            f"default_region = \"{settings.default_region}\"\n", encoding="utf-8")
    if not settings.env.get("CALLVAULT_KEK") and not settings.env.get("CALLVAULT_KEK_FILE") \
            and not (settings.key_dir / "CURRENT").exists():
        settings.key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        create_kek(settings.key_dir)
    create_signing_key(signing_key_path(settings.key_dir, settings.env))  # audit checkpoints (no-op if present)
    upgrade_to_head(settings.database_url)
    runtime = build_runtime(settings)
    try:
        check_store(parse_policy_text(policy_text, source=str(policy_file)), runtime.store)  # retention.write_once
        with runtime.db.unit_of_work() as session:
            policy_service.load_policy(session, text=policy_text, source=str(policy_file), actor=CLI_ACTOR)
        with runtime.db.unit_of_work() as session:
            policy = policy_service.current_policy(session)
            admin_role = "admin" if "admin" in policy.roles else next(
                (name for name, role in policy.roles.items() if role.can_administer), None)
            if admin_role is None:
                raise InvalidInput("the policy defines no administering role for the first user")
            identity.create_user(session, actor=CLI_ACTOR, policy=policy, username=admin_user, role=admin_role,
                                 password=admin_password)
    finally:
        runtime.close()


@app.command()
@handle_errors
def init(
    policy: Annotated[Path, typer.Option("--policy", help="policy YAML file to load")],
    admin_user: Annotated[str, typer.Option("--admin-user", help="name of the first administrator")] = "admin",
    admin_password_file: Annotated[Path | None, typer.Option("--admin-password-file",
                                                             help="file holding the admin password")] = None,
    data_dir: DataDir = None,
) -> None:
    """Create a data directory: config, key-encryption key (0600), schema, policy, first admin."""
    settings = settings_for(data_dir)
    if admin_password_file is not None:
        password = read_secret_file(admin_password_file, "admin password")
    else:
        password = typer.prompt("Admin password", hide_input=True, confirmation_prompt=True)
    initialise(settings, policy_file=policy, admin_user=admin_user, admin_password=password)
    out.print(f"Initialised {settings.data_dir} with policy {policy}; administrator [bold]{admin_user}[/].")
    out.print(f"Before their first sign-in, issue them an MFA enrolment code: callvault users enrolment-code "
              f"{admin_user}", highlight=False)


@app.command()
@handle_errors
def migrate(data_dir: DataDir = None) -> None:
    """Bring the database schema up to date (safe to repeat)."""
    settings = settings_for(data_dir)
    upgrade_to_head(settings.database_url)
    out.print("Schema is up to date.")


def _print_risks(file: Path, settings: Settings) -> int:
    """Warn (stderr) about what the policy in ``file`` admits that is probably not meant; how many."""
    text = _read_text(file)
    risks = policy_risks(parse_policy_text(text, source=str(file)), text, trusted_proxies=settings.trusted_proxies)
    for risk in risks:
        err.print(f"[bold yellow]warning:[/] {risk}", highlight=False, soft_wrap=True)
    return len(risks)


@policy_app.command("check")
@handle_errors
def policy_check(
    file: Path,
    strict: Annotated[bool, typer.Option("--strict", help="exit 1 when there is any warning")] = False,
    data_dir: DataDir = None,
) -> None:
    """Validate a policy file; report every problem with its location, and warn about risky rules.

    Warnings (a network rule that admits anyone, loopback without a trusted proxy, ...) leave the exit
    code 0 unless --strict. Trusted proxies are read from CALLVAULT_TRUSTED_PROXIES or the data directory's
    configuration, as the server reads them."""
    doc = load_policy_file(file)
    out.print(f"{file}: valid ({doc.policy_id} version {doc.version}, effective {doc.effective_from})")
    relays = ", ".join(doc.controls.integration_roles)
    out.print("Recording controls (stop, pause, personal; A14, B4) are filed by the agent on the call"
              + (f" or relayed by the phone system's integration role(s) {relays} (controls.integration_roles)"
                 if relays else " only (no controls.integration_roles)") + "; administering roles may not.",
              highlight=False, soft_wrap=True)
    warnings = _print_risks(file, settings_for(data_dir))
    if warnings and strict:
        err.print(f"{warnings} warning(s) and --strict: failing", highlight=False)
        raise typer.Exit(1)


@policy_app.command("load")
@handle_errors
def policy_load(file: Path, data_dir: DataDir = None) -> None:
    """Load a policy version into the database (it takes effect on its effective date)."""
    runtime = open_runtime(data_dir)
    try:
        text = _read_text(file)
        check_store(parse_policy_text(text, source=str(file)), runtime.store)  # retention.write_once
        with runtime.db.unit_of_work() as session:
            row, created = policy_service.load_policy(session, text=text, source=str(file), actor=CLI_ACTOR)
        verb = "Loaded" if created else "Already loaded:"
        out.print(f"{verb} {row.policy_id} version {row.version} (effective {row.effective_from}, "
                  f"sha256 {row.sha256[:12]}…)")
        _print_risks(file, runtime.settings)
    finally:
        runtime.close()


@policy_app.command("show")
@handle_errors
def policy_show(json_output: Annotated[bool, typer.Option("--json", help="machine-readable")] = False,
                data_dir: DataDir = None) -> None:
    """Show the policy in force."""
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            row = policy_service.current_version(session)
            doc = policy_service.current_policy(session)
    finally:
        runtime.close()
    if json_output:
        print_json({"sha256": row.sha256, "effective_from": row.effective_from.isoformat(),
                    "policy": policy_to_json(doc)})
        return
    out.print(f"[bold]{doc.title}[/] — {doc.policy_id} version {doc.version}, effective {row.effective_from}")
    table = Table("purpose", "roles", "approval by", "serves")
    for pid, purpose in doc.purposes.items():
        approvers = ", ".join(purpose.approval.approver_roles) if purpose.approval.required else "—"
        table.add_row(pid, ", ".join(purpose.roles), approvers, purpose.serves)
    out.print(table)


@users_app.command("add")
@handle_errors
def users_add(
    name: str,
    role: Annotated[str, typer.Option("--role")],
    password_file: Annotated[Path | None, typer.Option("--password-file")] = None,
    extension: Annotated[str | None, typer.Option("--extension")] = None,
    team: Annotated[str | None, typer.Option("--team")] = None,
    data_dir: DataDir = None,
) -> None:
    """Add a local account with a role from the policy."""
    password = (read_secret_file(password_file, "password") if password_file
                else typer.prompt("Password", hide_input=True, confirmation_prompt=True))
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            policy = policy_service.current_policy(session)
            user = identity.create_user(session, actor=CLI_ACTOR, policy=policy, username=name, role=role,
                                        password=password, extension=extension, team=team)
        out.print(f"Added {user.username} ({user.role}). To set up MFA they need an enrolment code: "
                  f"callvault users enrolment-code {user.username}", highlight=False)
    finally:
        runtime.close()


def _pairs(folder: Path) -> list[tuple[Path, Path | None]]:
    found = []
    for audio_path in sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES):
        meta = audio_path.with_suffix(".json")
        found.append((audio_path, meta if meta.exists() else None))
    return found


@app.command()
@handle_errors
def ingest(
    audio: Annotated[Path, typer.Argument(help="an audio file, or a folder of X.wav + X.json pairs")],
    metadata: Annotated[Path | None, typer.Option("--metadata", help="call metadata JSON (for one file)")] = None,
    data_dir: DataDir = None,
) -> None:
    """Ingest a recording (prints its id), or every pair in a folder with a progress bar."""
    runtime = open_runtime(data_dir)
    try:
        if audio.is_dir():
            _ingest_folder(runtime, audio)
            return
        if metadata is None:
            raise InvalidInput("give the call metadata with --metadata META.json")
        if not audio.is_file():
            raise InvalidInput(f"{audio} does not exist or is not a file")
        result = ingest_recording(db=runtime.db, store=runtime.store, keyring=runtime.keyring, audio=audio,
                                  metadata=_read_text(metadata).encode(), actor=CLI_ACTOR,
                                  default_region=runtime.settings.default_region)
        out.print(result.recording_id)
        if not result.created:
            err.print("(already stored with identical audio; nothing changed)")
    finally:
        runtime.close()


FOLDER_BATCH = 50
"""Pairs of a folder ingested per ``ingest_many`` call: a few commits per batch instead of a few per file."""


def _ingest_folder(runtime: Runtime, folder: Path) -> None:
    pairs = _pairs(folder)
    if not pairs:
        raise InvalidInput(f"{folder} has no .wav/.flac/.ogg files")
    failures: list[str] = []
    created = 0
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err) as progress:
        task = progress.add_task("ingesting", total=len(pairs))
        for start in range(0, len(pairs), FOLDER_BATCH):
            batch = pairs[start:start + FOLDER_BATCH]
            names: list[str] = []
            items: list[IngestItem] = []
            for audio_path, meta_path in batch:
                try:
                    if meta_path is None:
                        raise InvalidInput(f"no {audio_path.with_suffix('.json').name} beside it")
                    items.append(IngestItem(audio_path, _read_text(meta_path).encode()))
                    names.append(audio_path.name)
                except InvalidInput as exc:
                    failures.append(f"{audio_path.name}: {exc.message}")
            try:
                outcomes = ingest_many(db=runtime.db, store=runtime.store, keyring=runtime.keyring, items=items,
                                       actor=CLI_ACTOR, default_region=runtime.settings.default_region)
            except Exception as exc:  # the database failed the whole batch; nothing of it was kept
                outcomes = [exc] * len(items)
            for name, outcome in zip(names, outcomes, strict=True):
                if isinstance(outcome, IngestResult):
                    created += int(outcome.created)
                else:
                    failures.append(f"{name}: {getattr(outcome, 'message', outcome)}")
            progress.advance(task, len(batch))
    out.print(f"{created} new, {len(pairs) - created - len(failures)} already stored, {len(failures)} failed")
    for line in failures:
        err.print(f"  - {line}", highlight=False, soft_wrap=True)
    if failures:
        raise typer.Exit(2)


@app.command()
@handle_errors
def serve(
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8000,
    workers: Annotated[int, typer.Option("--workers", min=1, help="server processes (one per core)")] = 1,
    no_workers: Annotated[bool, typer.Option(
        "--no-workers", help="run no background jobs here (with separate `callvault worker` nodes)")] = False,
    transcription_streams: Annotated[int | None, typer.Option(
        "--transcription-streams", min=0,
        help="speech-to-text children (default: $CALLVAULT_TRANSCRIPTION_STREAMS, else one per core)")] = None,
    data_dir: DataDir = None,
) -> None:
    """Run the web server (JSON API under /api/v1 and the web pages), the background jobs (unless
    --no-workers) and the SIPREC server if configured."""
    import os

    import uvicorn

    from callvault.api.app import create_app, settle_heap
    from callvault.capture.siprec.service import start_beside_serve
    from callvault.jobs.beside_serve import start_workers, stop_workers
    from callvault.jobs.beside_serve import transcription_streams as streams_for
    from callvault.ops import logs

    runtime = open_runtime(data_dir)
    log_config = logs.logging_config(runtime.settings.json_logs)
    # Background jobs (mail, transcripts, checkpoints, sampling, retention, ...) as supervised
    # `callvault worker` children, so one command runs the whole product (callvault.jobs.beside_serve).
    job_children = []
    if no_workers:
        out.print("Background jobs: not run here (--no-workers); run `callvault worker` elsewhere",
                  highlight=False, soft_wrap=True)
    else:
        streams = streams_for(runtime.settings.env, transcription_streams)
        job_children = start_workers(runtime.settings.data_dir, streams=streams)
        out.print(f"Background jobs: running beside the web server ({streams} transcription stream(s); "
                  "--no-workers turns them off)", highlight=False, soft_wrap=True)
    # CALLVAULT_SIPREC_LISTEN (docs/siprec.md): the capture server runs as a supervised child process.
    capture = start_beside_serve(runtime.settings)
    if capture is not None:
        out.print("SIPREC recording server: started beside the web server (CALLVAULT_SIPREC_LISTEN)")
    if capture is not None or job_children:
        # uvicorn re-raises SIGTERM after its graceful shutdown; with the default handler the process
        # would die before the ``finally`` below and leave the children running.
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    out.print(f"callvault listening on http://{host}:{port}/  (API docs: /api/v1/docs)")
    try:
        if workers == 1:
            app = create_app(runtime)
            settle_heap()
            uvicorn.run(app, host=host, port=port, log_config=log_config, proxy_headers=False)
            return
        runtime.close()
        # Each process builds its own runtime from the same settings; nothing is shared in memory.
        os.environ["CALLVAULT_DATA_DIR"] = str(runtime.settings.data_dir)
        uvicorn.run("callvault.api.app:create_app_from_environment", factory=True, host=host, port=port,
                    workers=workers, log_config=log_config, proxy_headers=False)
    finally:
        if capture is not None:
            capture.terminate()
        stop_workers(job_children)
        if capture is not None:
            capture.stop()


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


DEMO_POLICIES = {"a": "policy-a.yaml", "b": "policy-b.yaml"}
"""``callvault demo --policy a|b``: the two shipped policies by letter (examples/policies/)."""


def _demo_policy_file(choice: str) -> Path:
    """The policy file ``--policy`` names: ``a`` or ``b`` (shipped), or a path."""
    if choice.lower() in DEMO_POLICIES:
        return Path(__file__).resolve().parents[2] / "examples" / "policies" / DEMO_POLICIES[choice.lower()]
    return Path(choice)


@app.command()
@handle_errors
def demo(
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="the web server's port")] = 8000,
    policy: Annotated[str, typer.Option("--policy", help="a (default), b (approvals), or a policy file")] = "a",
    recordings: Annotated[int, typer.Option("--recordings")] = 36,
    no_serve: Annotated[bool, typer.Option("--no-serve", help="set up the demo data and exit")] = False,
    demo_call_every: Annotated[int, typer.Option(
        "--demo-call-every", min=0, help="seconds between demo calls through the SIPREC server (0: none)")] = 180,
    demo_call_seconds: Annotated[int, typer.Option(
        "--demo-call-seconds", min=1, help="how long each demo call lasts")] = 75,
    data_dir: DataDir = None,
) -> None:
    """Set up demo data (a policy, a user per role, recordings with generated speech) and serve it with
    its background jobs, a local mailbox, the SIPREC server on loopback and a demo call through it every
    few minutes (live monitoring, pause and "personal" can be tried on it).

    The policy loaded is a demo variant of the file that also admits loopback (written into the data
    directory): the shipped files admit no loopback address. ``--policy b`` keeps its data in
    ``./callvault-data-b`` (unless a data directory is named), so the two demos never mix."""
    import os
    import shlex

    from callvault.demo import seed
    from callvault.demo.local_policy import LOOPBACK, write_loopback_variant
    from callvault.demo.mailbox import DemoMailbox

    if data_dir is None and not os.environ.get("CALLVAULT_DATA_DIR") and policy.lower() == "b":
        data_dir = Path("callvault-data-b")
    settings = settings_for(data_dir)
    policy_file = _demo_policy_file(policy)
    if not (settings.config_path.exists() and (settings.key_dir / "CURRENT").exists()):
        out.print(f"Creating demo data directory {settings.data_dir} …")
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # The shipped policies admit no loopback address; the demo's browser is on this machine with no
        # proxy, so the demo loads its own variant that admits loopback (callvault.demo.local_policy).
        demo_policy = write_loopback_variant(policy_file, settings.data_dir / DEMO_POLICY_NAME)
        out.print(f"Demo only: loading {demo_policy}, a copy of {policy_file} whose network rule also admits "
                  f"this machine ({', '.join(LOOPBACK)}) with no company-device check. Never use it in production.",
                  highlight=False, soft_wrap=True)
        initialise(settings, policy_file=demo_policy, admin_user="admin", admin_password=seed.DEMO_PASSWORD)
    else:
        upgrade_to_head(settings.database_url)
    runtime = build_runtime(settings)
    try:
        with runtime.db.unit_of_work() as session:
            doc = policy_service.current_policy(session)
        users = seed.seed_users(runtime.db, doc, keyring=runtime.keyring, data_dir=settings.data_dir)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err) as progress:
            task = progress.add_task("demo recordings", total=recordings)
            new = seed.seed_recordings(db=runtime.db, store=runtime.store, keyring=runtime.keyring, policy=doc,
                                       count=recordings, progress=lambda n: progress.update(task, completed=n))
        out.print(f"{new} new demo recordings.")
    finally:
        runtime.close()
    table = Table("username", "role", "extension",
                  title=f"Demo logins, policy {doc.policy_id} (password: {seed.DEMO_PASSWORD})")
    table.add_row("admin", "admin", "")
    for u in users:
        if u.username != "admin":
            table.add_row(u.username, u.role, u.extension or "")
    out.print(table)
    approvers = sorted({r for p in doc.purposes.values() if p.approval.required for r in p.approval.approver_roles})
    approver_logins = [f"'{u.username}' ({u.role})" for u in users if u.role in approvers]
    if approver_logins:
        out.print("This policy needs an approval before some purposes (e.g. an investigation): request access as "
                  f"one user, approve it as {' or '.join(approver_logins)}.", highlight=False, soft_wrap=True)
    out.print(f"[bold green]Open http://{host}:{port}/[/]  — try 'lead' or 'alice' (own calls).")
    data_arg = shlex.quote(str(settings.data_dir))
    # Each command on a line of its own, never wrapped, so it can be copied and pasted as it is.
    out.print("Every demo role needs MFA (the policy says so). The current 6-digit code of a user:",
              highlight=False, soft_wrap=True)
    out.print(f"  {shlex.quote(sys.argv[0])} demo-code lead --data-dir {data_arg}", highlight=False, soft_wrap=True,
              markup=False)
    out.print(f"(the secrets are in {seed.demo_mfa_file(settings.data_dir)}, mode 0600; add one to an "
              "authenticator app if you prefer)", highlight=False, soft_wrap=True)
    if no_serve:
        return
    # The product's mail (verification codes, misuse reports, reminders) goes to a mailbox on this machine.
    mailbox = DemoMailbox(settings.data_dir, announce=lambda line: out.print(
        f"[demo mailbox] {line}", highlight=False, soft_wrap=True, markup=False))
    os.environ.update(mailbox.smtp_env)  # the worker children inherit it
    out.print(f"Demo mailbox: mail the product sends is printed here and kept in {mailbox.folder} "
              "(a Maildir; any mail client reads it).", highlight=False, soft_wrap=True)
    caller = _start_demo_caller(settings.data_dir, doc, every=demo_call_every, seconds=demo_call_seconds)
    try:
        serve(host=host, port=port, data_dir=settings.data_dir)
    finally:
        if caller is not None:
            caller.stop()
        mailbox.close()


def _start_demo_caller(data_dir: Path, doc: PolicyDocument, *, every: int, seconds: int) -> DemoCaller | None:
    """Turn on the SIPREC server beside ``serve`` (on a free loopback port with a live-monitoring tap,
    unless the data directory or environment configures one) and start the demo caller against it."""
    import os

    from callvault.capture.siprec.service import siprec_settings
    from callvault.cli.capture_commands import parse_hostport
    from callvault.demo import seed
    from callvault.demo.caller import DemoCaller, free_loopback_port

    config = siprec_settings(settings_for(data_dir))
    if config is None:
        # serve() reads these (callvault.capture.siprec.service) and runs the capture server as its child.
        os.environ["CALLVAULT_SIPREC_LISTEN"] = f"127.0.0.1:{free_loopback_port()}"
        os.environ.setdefault("CALLVAULT_SIPREC_TAP", f"127.0.0.1:{free_loopback_port()}")
        config = siprec_settings(settings_for(data_dir))
        if config is None:
            raise ConfigurationError("the demo could not configure its SIPREC server")
    host, sip_port = parse_hostport(config.listen, default_port=5060)
    out.print(f"SIPREC recording server for the demo on {host}:{sip_port} (SIP over UDP and TCP)",
              highlight=False, soft_wrap=True)
    if every == 0:
        out.print("Demo calls: off (--demo-call-every 0)", highlight=False, soft_wrap=True)
        return None
    trunks = doc.recording_scope.trunk_numbers
    announcement = doc.consent.inbound_announcement
    caller = DemoCaller(host if host not in ("0.0.0.0", "::") else "127.0.0.1", sip_port,  # noqa: S104
                        agents=seed.SPECIALISTS, every=every, seconds=seconds,
                        dialled_number=trunks[0].number.replace(" ", "") if trunks else None,
                        announcement_version=announcement.version,
                        announce=lambda line: out.print(f"[demo call] {line}", highlight=False, soft_wrap=True,
                                                        markup=False))
    caller.start()
    out.print(f"Demo calls: one every {every} s ({seconds} s long) through the SIPREC server; watch the live page "
              "as 'lead' (listen) or the agent, e.g. 'alice' (pause, personal). --demo-call-every 0 turns them off.",
              highlight=False, soft_wrap=True)
    return caller


# `audit verify` lives in callvault/cli/oversight_commands.py (chain, Merkle tree, signed checkpoints).


@app.command()
@handle_errors
def check(
    repair: Annotated[bool, typer.Option("--repair", help="remove what crashed ingests left behind; destroy "
                                         "again what the key-destruction list says is destroyed")] = False,
    older_than_minutes: Annotated[int, typer.Option("--older-than-minutes")] = 60,
    deep: Annotated[bool, typer.Option("--deep", help="decrypt every recording and check its SHA-256")] = False,
    data_dir: DataDir = None,
) -> None:
    """Integrity check: stale partial ingests and half-written temporaries (.tmp/*.part, with age and size);
    with --repair: remove the stale ones, re-apply the key-destruction list."""
    runtime = open_runtime(data_dir)
    try:
        if repair:
            removed = reap_stale_ingests(db=runtime.db, store=runtime.store,
                                         older_than=timedelta(minutes=older_than_minutes))
            cleanup = getattr(runtime.store, "cleanup_temp", None)  # half-written blobs of killed writers
            temps = cleanup(older_than_minutes * 60) if cleanup is not None else 0
            out.print(f"removed {len(removed)} incomplete ingest(s) and {temps} half-written temporary file(s)")
            # A restored database may hold rows of recordings destroyed since the backup: the
            # key-destruction list beside the keys says which; destroy them (and their search terms) again.
            again = reapply(runtime.db, runtime.store, runtime.keyring, trigger="check --repair",
                            clock=runtime.clock)
            out.print(f"destroyed again {again.recordings} recording(s) and {again.clips} training clip(s) whose "
                      "key is on the key-destruction list")
        else:
            problems = find_problems(db=runtime.db, store=runtime.store, keyring=runtime.keyring,
                                     stale_after=timedelta(minutes=older_than_minutes), deep=deep)
            for line in problems:
                err.print(f"  - {line}", highlight=False)
            for line in temporaries(runtime.store, timedelta(minutes=older_than_minutes))[1]:
                err.print(f"  note: {line}", highlight=False)
            out.print(f"{len(problems)} problem(s) found")
            if problems:
                raise typer.Exit(1)
    finally:
        runtime.close()




@app.command()
@handle_errors
def worker(
    once: Annotated[bool, typer.Option("--once", help="run every job once and exit")] = False,
    job_names: Annotated[list[str] | None, typer.Option("--job", help="run only these jobs (repeatable)")] = None,
    data_dir: DataDir = None,
) -> None:
    """Run background jobs (retention, cleanup, ...) until stopped; any number of workers may run."""
    from callvault.jobs.registry import all_jobs
    from callvault.jobs.worker import run_forever, run_once
    from callvault.ops import logs

    runtime = open_runtime(data_dir)
    logs.configure(runtime.settings.json_logs)
    try:
        jobs = all_jobs()
        unknown = set(job_names or ()) - set(jobs)
        if unknown:
            raise InvalidInput(f"unknown job(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(jobs))}")
        selected = [j for j in jobs.values() if not job_names or j.name in job_names]
        check_at_start(runtime.db, runtime.store, clock=runtime.clock)
        reapply_at_start(runtime.db, runtime.store, runtime.keyring, clock=runtime.clock)
        if once:
            results = run_once(runtime, selected)
            for name, handled in results.items():
                out.print(f"{name}: {'FAILED' if handled < 0 else handled}")
            if any(v < 0 for v in results.values()):
                raise typer.Exit(1)
            return
        run_forever(runtime, only={j.name for j in selected})
    finally:
        runtime.close()


@app.command("demo-code")
@handle_errors
def demo_code(username: str, data_dir: DataDir = None) -> None:
    """Print a demo user's current MFA code (demo data directories only)."""
    from callvault.demo import seed

    runtime = open_runtime(data_dir)
    try:
        out.print(seed.current_demo_code(runtime.settings.data_dir, username, db=runtime.db,
                                         now=runtime.clock.now()))
    finally:
        runtime.close()
