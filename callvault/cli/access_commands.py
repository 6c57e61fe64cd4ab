"""Access-control commands: integration tokens, the account list and unlock, employees' consents (the
account lifecycle, MFA reset included, is in ``account_commands``)."""

from __future__ import annotations

import re
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy import select

from callvault.access import consents
from callvault.audit import service as audit
from callvault.cli.main import (
    CLI_ACTOR,
    DataDir,
    app,
    err,
    handle_errors,
    open_runtime,
    out,
    print_json,
    users_app,
)
from callvault.core.errors import FieldProblem, InvalidInput, NotFound
from callvault.identity import service as identity
from callvault.identity import throttle
from callvault.identity.models import User
from callvault.policy import service as policy_service
from callvault.quality import training

tokens_app = typer.Typer(help="Bearer tokens for integrations (PBX upload, CRM access requests).",
                         no_args_is_help=True)
consents_app = typer.Typer(help="Employees' consents to purposes (A6: training).", no_args_is_help=True)
app.add_typer(tokens_app, name="tokens")
app.add_typer(consents_app, name="consents")

_TTL = re.compile(r"^(?P<n>[0-9]+)(?P<unit>[smhd]?)$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_TTL_SECONDS = 366 * 86400


def parse_ttl(text: str) -> int:
    """``90d``, ``12h``, ``30m`` or seconds → seconds (at most a year: integration tokens must be rotated)."""
    match = _TTL.match(text.strip().lower())
    seconds = int(match.group("n")) * _UNIT[match.group("unit")] if match else 0
    if not 60 <= seconds <= MAX_TTL_SECONDS:
        raise InvalidInput("invalid --ttl:", [FieldProblem("ttl", "a duration like 90d, 12h or 3600 (seconds), "
                                                                  "between a minute and 366 days")])
    return seconds


@tokens_app.command("create")
@handle_errors
def tokens_create(
    user: str,
    scope: Annotated[list[str], typer.Option("--scope", help=f"repeatable: {', '.join(identity.SCOPES)}")],
    ttl: Annotated[str, typer.Option("--ttl", help="lifetime: 90d, 12h, 3600")] = "90d",
    name: Annotated[str, typer.Option("--name", help="what uses it, e.g. pbx-upload")] = "integration",
    data_dir: DataDir = None,
) -> None:
    """Create a scoped bearer token for USER; printed once, only its hash is stored."""
    scopes = identity.check_scopes(tuple(s for item in scope for s in item.replace(",", " ").split()))
    seconds = parse_ttl(ttl)
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            account = identity.get_user(session, user)
            issued = identity.issue_token(session, user=account, ttl_seconds=seconds, name=name, scopes=scopes)
            audit.append(session, audit.AuditEvent(
                actor=CLI_ACTOR, action="auth.token_created", object_type="api_token", object_id=issued.token_id,
                details={"user": account.username, "scopes": list(scopes), "ttl_seconds": seconds, "name": name}))
    finally:
        runtime.close()
    # The token alone on stdout (scripts capture it); the explanation on stderr.
    err.print(f"Token {issued.token_id} for {user} (scopes: {' '.join(scopes)}; expires in {ttl}). "
              "Store it now: it is not shown again.", highlight=False)
    typer.echo(issued.token)


@tokens_app.command("list")
@handle_errors
def tokens_list(user: Annotated[str | None, typer.Argument()] = None, data_dir: DataDir = None) -> None:
    """List tokens (never the secrets): id, user, name, scopes, expiry, revoked."""
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            account = identity.get_user(session, user) if user else None
            names = {u.id: u.username for u in session.scalars(select(User))}
            rows = [(t.id, names.get(t.user_id, "?"), t.name, t.scopes, t.expires_at.isoformat(),
                     t.revoked_at.isoformat() if t.revoked_at else "") for t in
                    identity.list_tokens(session, user=account)]
    finally:
        runtime.close()
    table = Table("id", "user", "name", "scopes", "expires", "revoked")
    for row in rows:
        table.add_row(*row)
    out.print(table)


@tokens_app.command("revoke")
@handle_errors
def tokens_revoke(token_id: str, data_dir: DataDir = None) -> None:
    """Revoke a token by id; refused at once on every node."""
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            identity.revoke_token_id(session, token_id=token_id, actor=CLI_ACTOR)
    finally:
        runtime.close()
    out.print(f"Revoked {token_id}.")


@users_app.command("list")
@handle_errors
def users_list(json_output: Annotated[bool, typer.Option("--json", help="machine-readable")] = False,
               data_dir: DataDir = None) -> None:
    """Accounts with their acknowledgement of the policy in force (A10, B13), MFA state and lockout."""
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            policy = policy_service.current_policy(session)
            rows = identity.list_users(session, policy=policy, counters=runtime.counters)
    finally:
        runtime.close()
    if json_output:
        print_json([row.__dict__ for row in rows])
        return
    table = Table("username", "role", "ext", "acknowledged", "MFA", "locked until",
                  title=f"Policy {policy.policy_id} version {policy.version}")
    for r in rows:
        mfa_text = "on" if r.mfa_enrolled else ("REQUIRED, not set up" if r.mfa_required else "off")
        table.add_row(r.username + ("" if r.active else " (inactive)"), r.role, r.extension or "",
                      r.acknowledged_at.isoformat() if r.acknowledged_at else "NO", mfa_text,
                      r.locked_until.isoformat() if r.locked_until else "")
    out.print(table)


@users_app.command("unlock")
@handle_errors
def users_unlock(name: str, data_dir: DataDir = None) -> None:
    """Clear a sign-in lockout on an account name."""
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            cleared = throttle.unlock(session, counters=runtime.counters, username=name)
            audit.append(session, audit.AuditEvent(actor=CLI_ACTOR, action="auth.unlocked", object_type="user",
                                                   object_id=name[:200], clauses=("A12",)))
    finally:
        runtime.close()
    out.print(f"{name}: {'unlocked' if cleared else 'was not locked'}.")


@consents_app.command("add")
@handle_errors
def consents_add(user: str, purpose: str, data_dir: DataDir = None) -> None:
    """Record USER's consent to their recordings being used for PURPOSE (keep the signed form)."""
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            policy = policy_service.current_policy(session)
            consents.give(session, user=identity.get_user(session, user), purpose=purpose, policy=policy,
                          actor=CLI_ACTOR)
    finally:
        runtime.close()
    out.print(f"Recorded {user}'s consent to {purpose}.")


@consents_app.command("revoke")
@handle_errors
def consents_revoke(user: str, purpose: str, data_dir: DataDir = None) -> None:
    """Withdraw USER's consent to PURPOSE; effective at once."""
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            account = identity.get_user(session, user)
            consents.revoke(session, user=account, purpose=purpose, actor=CLI_ACTOR)
            policy = policy_service.current_policy(session)
            withdrawn = training.withdraw_for_agent(session, keyring=runtime.keyring, agent=account.username,
                                                    actor=CLI_ACTOR) if purpose == training.clip_purpose(policy) else []
        training.delete_blobs(runtime.store, withdrawn)
    finally:
        runtime.close()
    out.print(f"Withdrew {user}'s consent to {purpose}"
              + (f"; destroyed {len(withdrawn)} training clip(s)." if withdrawn else "."))


@consents_app.command("list")
@handle_errors
def consents_list(user: str, data_dir: DataDir = None) -> None:
    """USER's consents in force."""
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            rows = [(c.purpose, c.given_at.isoformat(), c.recorded_by)
                    for c in consents.active(session, user=identity.get_user(session, user))]
    finally:
        runtime.close()
    if not rows:
        raise NotFound(f"{user} has no consents on file")
    table = Table("purpose", "given", "recorded by")
    for row in rows:
        table.add_row(*row)
    out.print(table)
