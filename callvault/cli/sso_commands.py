"""``callvault users sso-link / sso-unlink / sso-links``: an administrator links an identity-provider
subject to a local account on purpose (docs/sso.md). SSO never links an existing account by name
(issue 24): either its owner links it after a local sign-in, or an administrator does it here."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from callvault.cli.main import CLI_ACTOR, DataDir, handle_errors, open_runtime, out, print_json, users_app
from callvault.core.errors import InvalidInput
from callvault.identity import oidc
from callvault.identity import service as identity

Issuer = Annotated[str | None, typer.Option("--issuer", help="the provider's issuer URL (default: "
                                            "CALLVAULT_OIDC_ISSUER)")]


def _issuer(given: str | None, configured: str | None) -> str:
    issuer = (given or configured or "").rstrip("/")
    if not issuer:
        raise InvalidInput("name the provider with --issuer (single sign-on is not configured: "
                           "CALLVAULT_OIDC_ISSUER is unset)")
    return issuer


@users_app.command("sso-link")
@handle_errors
def users_sso_link(
    name: str,
    subject: Annotated[str, typer.Option("--subject", help="the provider's 'sub' for this person (not their "
                                         "username: ask the provider's administrator or its admin console)")],
    issuer: Issuer = None,
    data_dir: DataDir = None,
) -> None:
    """Link the provider account SUBJECT to the local account NAME (audited user.sso_linked, via admin)."""
    runtime = open_runtime(data_dir)
    try:
        configured = runtime.settings.oidc.issuer if runtime.settings.oidc else None
        iss = _issuer(issuer, configured)
        with runtime.db.unit_of_work() as session:
            user = identity.get_user(session, name)
            oidc.link(session, user=user, issuer=iss, subject=subject, via="admin", actor=CLI_ACTOR,
                      actor_role="admin", clock=runtime.clock)
    finally:
        runtime.close()
    out.print(f"{name} is linked to subject {subject!r} at {iss}; single sign-on reaches this account now.")


@users_app.command("sso-unlink")
@handle_errors
def users_sso_unlink(name: str, issuer: Issuer = None, data_dir: DataDir = None) -> None:
    """Remove NAME's identity-provider links (at --issuer, else at every provider; audited user.sso_unlinked)."""
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            user = identity.get_user(session, name)
            removed = oidc.unlink(session, user=user, issuer=issuer.rstrip("/") if issuer else None,
                                  actor=CLI_ACTOR, actor_role="admin", clock=runtime.clock)
    finally:
        runtime.close()
    out.print(f"removed {removed} single sign-on link(s) of {name}.")


@users_app.command("sso-links")
@handle_errors
def users_sso_links(json_output: Annotated[bool, typer.Option("--json", help="machine-readable")] = False,
                    data_dir: DataDir = None) -> None:
    """Every identity-provider link, and how it was made (review 'username-match': made by name before 0023)."""
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            rows = [{"username": u.username, "issuer": i.issuer, "subject": i.subject, "linked_via": i.linked_via,
                     "linked_by": i.linked_by, "created_at": i.created_at.isoformat()}
                    for u, i in oidc.links(session)]
    finally:
        runtime.close()
    if json_output:
        print_json(rows)
        return
    table = Table("username", "issuer", "subject", "linked via", "by", "since", title="Single sign-on links")
    for r in rows:
        table.add_row(r["username"], r["issuer"], r["subject"], r["linked_via"], r["linked_by"] or "",
                      str(r["created_at"])[:16])
    out.print(table)
