"""The account lifecycle on the command line (issue 24 point 7): MFA reset, one-time enrolment codes,
deactivation and reactivation, password reset. The command line is the trust root: whoever runs it on
the server administers every account, the first administrator's included (``callvault init`` makes an
account that needs an enrolment code from here before it can set MFA up)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

import typer

from callvault.cli.access_commands import parse_ttl
from callvault.cli.main import CLI_ACTOR, DataDir, err, handle_errors, open_runtime, out, users_app
from callvault.identity import account_codes, lifecycle
from callvault.identity import service as identity
from callvault.policy import service as policy_service

TtlOption = Annotated[str, typer.Option("--ttl", help="how long the code works: 30m, 4h (at most 72h)")]


def _ttl(text: str) -> timedelta:
    return account_codes.check_ttl(timedelta(seconds=parse_ttl(text)))


def _show_code(code: str, expires_at: datetime, what: str, name: str, then: str) -> None:
    # The code alone on stdout (scripts capture it); the explanation on stderr.
    err.print(f"One-time {what} for {name}, valid until {expires_at:%Y-%m-%d %H:%M} UTC and for one use. "
              f"Hand it over by a channel you trust; it is not shown again. {then}", highlight=False)
    typer.echo(code)


@users_app.command("enrolment-code")
@handle_errors
def users_enrolment_code(name: str, ttl: TtlOption = "1h", data_dir: DataDir = None) -> None:
    """Issue a one-time code with which NAME sets up MFA (replaces an earlier one); audited."""
    lifetime = _ttl(ttl)
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            user = identity.get_user(session, name)
            issued = account_codes.issue(session, user=user, purpose="enrol", actor=CLI_ACTOR, ttl=lifetime,
                                         clock=runtime.clock)
    finally:
        runtime.close()
    _show_code(issued.code, issued.expires_at, "MFA enrolment code", name,
               "They enter it when the sign-in asks them to set up two-step sign-in.")


@users_app.command("mfa-reset")
@handle_errors
def users_mfa_reset(name: str, data_dir: DataDir = None) -> None:
    """Remove NAME's MFA (lost device) and end every token and web session at once."""
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            user = identity.get_user(session, name)
            ended = lifecycle.reset_mfa(session, user=user, actor=CLI_ACTOR, clock=runtime.clock)
    finally:
        runtime.close()
    out.print(f"MFA reset for {name}; {ended} token(s) and session(s) ended. To set it up again they need an "
              f"enrolment code: callvault users enrolment-code {name}", highlight=False)


@users_app.command("deactivate")
@handle_errors
def users_deactivate(name: str, data_dir: DataDir = None) -> None:
    """Switch NAME off: no sign-in of any kind, every token and session ended (not the last administrator)."""
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            policy = policy_service.current_policy(session, clock=runtime.clock)
            changed = lifecycle.deactivate(session, user=identity.get_user(session, name), actor=CLI_ACTOR,
                                           policy=policy, clock=runtime.clock)
    finally:
        runtime.close()
    out.print(f"{name} {'is deactivated' if changed else 'was already deactivated'}; they cannot sign in.",
              highlight=False)


@users_app.command("reactivate")
@handle_errors
def users_reactivate(name: str, data_dir: DataDir = None) -> None:
    """Let a deactivated NAME sign in again."""
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            changed = lifecycle.reactivate(session, user=identity.get_user(session, name), actor=CLI_ACTOR,
                                           clock=runtime.clock)
    finally:
        runtime.close()
    out.print(f"{name} {'is active again' if changed else 'was already active'}.", highlight=False)


@users_app.command("password-reset")
@handle_errors
def users_password_reset(name: str, ttl: TtlOption = "1h", data_dir: DataDir = None) -> None:
    """Make NAME's password useless now, end their tokens and sessions, and issue a one-time reset code
    with which they choose a new one."""
    lifetime = _ttl(ttl)
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            issued = lifecycle.reset_password(session, user=identity.get_user(session, name), actor=CLI_ACTOR,
                                              ttl=lifetime, clock=runtime.clock)
    finally:
        runtime.close()
    _show_code(issued.code, issued.expires_at, "password reset code", name,
               "They choose a new password at /password/reset (the sign-in page links it) or "
               "POST /api/v1/auth/password-reset.")
