"""Integration commands: outgoing webhooks (``callvault webhooks``) and CRM connectors (``callvault crm``)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from callvault.cli.main import CLI_ACTOR, DataDir, app, err, handle_errors, open_runtime, out, print_json
from callvault.integrations.crm import service as crm
from callvault.integrations.webhooks_out import service as webhooks
from callvault.integrations.webhooks_out.emit import EVENT_TYPES

webhooks_app = typer.Typer(help="Signed outgoing webhooks: subscriptions and their delivery log.",
                           no_args_is_help=True)
crm_app = typer.Typer(help="CRM connectors: link CRM users to accounts, see the events received.",
                      no_args_is_help=True)
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(crm_app, name="crm")

JsonOut = Annotated[bool, typer.Option("--json", help="machine-readable output")]


@webhooks_app.command("add")
@handle_errors
def webhooks_add(
    name: str, url: str,
    event: Annotated[list[str] | None, typer.Option("--event", help="repeatable event type; default all: "
                                                                    + ", ".join(EVENT_TYPES))] = None,
    data_dir: DataDir = None,
) -> None:
    """Subscribe URL to events; prints the signing secret once (stored only encrypted)."""
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            created = webhooks.add_subscription(
                session, keyring=runtime.keyring, name=name, url=url, actor=CLI_ACTOR, clock=runtime.clock,
                events=[e for item in (event or []) for e in item.replace(",", " ").split()])
            events = created.subscription.events
    finally:
        runtime.close()
    err.print(f"Webhook {name} → {url} for {', '.join(events)}. The signing secret below is shown once; "
              "give it to the receiver (see docs/integrations.md).", highlight=False)
    typer.echo(created.secret)


@webhooks_app.command("list")
@handle_errors
def webhooks_list(as_json: JsonOut = False, data_dir: DataDir = None) -> None:
    """The subscriptions (never their secrets)."""
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            rows = [{"name": s.name, "url": s.url, "events": s.events, "enabled": s.enabled,
                     "created_at": s.created_at.isoformat(), "created_by": s.created_by}
                    for s in webhooks.list_subscriptions(session)]
    finally:
        runtime.close()
    if as_json:
        print_json(rows)
        return
    table = Table("name", "url", "events", "created")
    for r in rows:
        table.add_row(str(r["name"]), str(r["url"]), ", ".join(r["events"]), str(r["created_at"]))  # type: ignore[arg-type]
    out.print(table)


@webhooks_app.command("remove")
@handle_errors
def webhooks_remove(name: str, data_dir: DataDir = None) -> None:
    """Remove a subscription; its undelivered events are cancelled (they stay in the log)."""
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            cancelled = webhooks.remove_subscription(session, name=name, actor=CLI_ACTOR, clock=runtime.clock)
    finally:
        runtime.close()
    err.print(f"Removed webhook {name}; {cancelled} undelivered event(s) cancelled.", highlight=False)


@webhooks_app.command("deliveries")
@handle_errors
def webhooks_deliveries(
    name: Annotated[str | None, typer.Option("--name", help="only this webhook")] = None,
    state: Annotated[str | None, typer.Option("--state", help="pending, delivered, failed, cancelled")] = None,
    limit: Annotated[int, typer.Option("--limit")] = 50,
    as_json: JsonOut = False, data_dir: DataDir = None,
) -> None:
    """The delivery log, newest first: state, tries, the receiver's last answer."""
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            rows = [{"id": d.id, "webhook": d.subscription_name, "event_type": d.event_type, "state": d.state,
                     "attempts": d.attempts, "created_at": d.created_at.isoformat(),
                     "next_attempt_at": d.next_attempt_at.isoformat(), "last_status": d.last_status,
                     "last_error": d.last_error}
                    for d in webhooks.deliveries(session, name=name, state=state, limit=limit)]
    finally:
        runtime.close()
    if as_json:
        print_json(rows)
        return
    table = Table("created", "webhook", "event", "state", "tries", "last answer")
    for r in rows:
        answer = str(r["last_status"] or "") + (f" {r['last_error']}"[:80] if r["last_error"] else "")
        table.add_row(str(r["created_at"]), str(r["webhook"]), str(r["event_type"]), str(r["state"]),
                      str(r["attempts"]), answer)
    out.print(table)


@webhooks_app.command("deliver")
@handle_errors
def webhooks_deliver(data_dir: DataDir = None) -> None:
    """Post the due deliveries now (what the worker does every 10 seconds)."""
    runtime = open_runtime(data_dir)
    try:
        sent = webhooks.deliver_due(runtime.db, runtime.keyring, clock=runtime.clock)
    finally:
        runtime.close()
    err.print(f"{sent} delivered.", highlight=False)


@crm_app.command("link-user")
@handle_errors
def crm_link_user(connector: str, external_id: str, username: str, data_dir: DataDir = None) -> None:
    """Say that CONNECTOR's user EXTERNAL_ID is callvault account USERNAME (requester/approver on tickets)."""
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            crm.link_user(session, connector=connector, external_id=external_id, username=username, actor=CLI_ACTOR,
                          clock=runtime.clock)
    finally:
        runtime.close()
    err.print(f"{connector} user {external_id} is now {username}.", highlight=False)


@crm_app.command("unlink-user")
@handle_errors
def crm_unlink_user(connector: str, external_id: str, data_dir: DataDir = None) -> None:
    """Remove a CRM user's link: the CRM can no longer speak for that person."""
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            crm.unlink_user(session, connector=connector, external_id=external_id, actor=CLI_ACTOR,
                            clock=runtime.clock)
    finally:
        runtime.close()


@crm_app.command("users")
@handle_errors
def crm_users(connector: Annotated[str | None, typer.Argument()] = None, as_json: JsonOut = False,
              data_dir: DataDir = None) -> None:
    """The CRM users linked to accounts."""
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            rows = [{"connector": link.connector, "external_id": link.external_id, "username": link.username,
                     "linked_by": link.linked_by, "linked_at": link.linked_at.isoformat()}
                    for link in crm.linked_users(session, connector)]
    finally:
        runtime.close()
    if as_json:
        print_json(rows)
        return
    table = Table("connector", "CRM user", "account", "linked by", "linked at")
    for r in rows:
        table.add_row(r["connector"], r["external_id"], r["username"], r["linked_by"], r["linked_at"])
    out.print(table)


@crm_app.command("events")
@handle_errors
def crm_events(limit: Annotated[int, typer.Option("--limit")] = 50, as_json: JsonOut = False,
               data_dir: DataDir = None) -> None:
    """The CRM events received, newest first, with what callvault did about each."""
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            rows = [{"connector": e.connector, "event_id": e.event_id, "ticket_ref": e.ticket_ref, "kind": e.kind,
                     "occurred_at": e.occurred_at.isoformat(), "received_at": e.received_at.isoformat(),
                     "outcome": e.outcome, "detail": e.detail} for e in crm.recent_events(session, limit=limit)]
    finally:
        runtime.close()
    if as_json:
        print_json(rows)
        return
    table = Table("received", "connector", "ticket", "event", "outcome", "detail")
    for r in rows:
        table.add_row(r["received_at"], r["connector"], r["ticket_ref"], r["kind"], r["outcome"], r["detail"][:80])
    out.print(table)
