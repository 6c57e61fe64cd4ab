"""Applying CRM ticket events: through the access and retention services, never around them.

Contracts:
- **Who acts.** The connector has no role and never reaches content. A request it files is filed by
  the callvault account linked to the ticket's requester (``link_user``), so the requester's role
  and scope are checked as if they had used the form; an approval it relays is given by the account
  linked to the approver, so ``access.approve`` checks the approver role, no self-approval and no
  approving one's own calls. The policy's ``integrations.crm`` switches say whether the CRM may
  carry requests, approvals and case resolutions at all (all off by default). Ending grants and
  reopening cases only reduce access or keep recordings longer, so they need no switch.
- **Idempotent.** The ledger (``crm_events``) is keyed by (connector, event id): a second delivery
  of an event returns the first outcome and changes nothing.
- **Ordered per ticket.** ``crm_tickets.last_event_at`` is the newest event time applied; a state
  change older than that arrived late and is recorded as ``stale`` without effect (a reopen that
  overtook a resolve wins, as it happened later). A decision that arrives before its ticket's
  request raises ``RetryLater`` (409, nothing recorded) so the CRM delivers it again.
- **Audited.** Every event, whatever its outcome, gets an entry naming the ticket
  (``object_type="crm_ticket"``); the services it calls add their own entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from callvault.access import service as access
from callvault.audit import service as audit
from callvault.core.clock import Clock, system_clock
from callvault.core.errors import AccessDenied, CallvaultError, Conflict, FieldProblem, InvalidInput, NotFound
from callvault.identity import service as identity
from callvault.identity.models import User
from callvault.integrations.crm.connector import Connector, EventKind, TicketEvent
from callvault.integrations.crm.generic import GenericConnector
from callvault.integrations.crm.models import CrmEvent, CrmIdentity, CrmTicket
from callvault.integrations.crm.zendesk import ZendeskConnector
from callvault.policy.schema import PolicyDocument
from callvault.retention import service as retention

CONNECTORS: Final[dict[str, Connector]] = {c.name: c for c in (GenericConnector(), ZendeskConnector())}


class RetryLater(Conflict):
    """The event depends on one not received yet (a decision before its request); send it again."""


@dataclass(frozen=True)
class Outcome:
    event_id: str
    kind: str
    ticket_ref: str
    outcome: str
    """``applied``, ``refused``, ``stale``, ``noop`` or ``duplicate``."""
    detail: str
    access_request_id: str | None = None


def connector_named(name: str) -> Connector:
    found = CONNECTORS.get(name)
    if found is None:
        raise NotFound(f"no CRM connector {name!r}; there are {', '.join(sorted(CONNECTORS))}")
    return found


def actor_name(connector: str) -> str:
    return f"crm:{connector}"


# ------------------------------------------------------------------------------------- CRM users
def link_user(session: Session, *, connector: str, external_id: str, username: str, actor: str,
              clock: Clock = system_clock) -> CrmIdentity:
    """Say which callvault account a CRM user is (replacing an earlier link); audited."""
    connector_named(connector)
    external_id = external_id.strip()
    if not 0 < len(external_id) <= 100:
        raise InvalidInput("cannot link:", [FieldProblem("external_id", "1-100 characters: the CRM's user id")])
    user = identity.get_user(session, username)
    link = session.get(CrmIdentity, (connector, external_id))
    if link is None:
        link = CrmIdentity(connector=connector, external_id=external_id, username=user.username, linked_by=actor,
                           linked_at=clock.now())
        session.add(link)
    else:
        link.username, link.linked_by, link.linked_at = user.username, actor, clock.now()
    audit.append(session, audit.AuditEvent(
        actor=actor, action="crm.user_linked", object_type="crm_user", object_id=f"{connector}:{external_id}",
        details={"username": user.username}), clock=clock)
    return link


def unlink_user(session: Session, *, connector: str, external_id: str, actor: str, clock: Clock = system_clock) -> None:
    link = session.get(CrmIdentity, (connector, external_id))
    if link is None:
        raise NotFound(f"{connector} user {external_id!r} is not linked")
    session.delete(link)
    audit.append(session, audit.AuditEvent(
        actor=actor, action="crm.user_unlinked", object_type="crm_user", object_id=f"{connector}:{external_id}",
        details={"username": link.username}), clock=clock)


def linked_users(session: Session, connector: str | None = None) -> list[CrmIdentity]:
    query = select(CrmIdentity).order_by(CrmIdentity.connector, CrmIdentity.external_id)
    if connector:
        query = query.where(CrmIdentity.connector == connector)
    return list(session.scalars(query))


def _account(session: Session, connector: str, external_id: str | None, what: str) -> User:
    link = session.get(CrmIdentity, (connector, external_id)) if external_id else None
    user = session.scalar(select(User).where(User.username == link.username)) if link else None
    if user is None or not user.active:
        raise AccessDenied(f"the {what} ({connector} user {external_id or '(none)'}) is not linked to an active "
                           f"callvault account; an administrator links it with `callvault crm link-user`")
    return user


# ---------------------------------------------------------------------------------------- events
def recent_events(session: Session, *, limit: int = 200) -> list[CrmEvent]:
    return list(session.scalars(select(CrmEvent).order_by(CrmEvent.received_at.desc()).limit(limit)))


def apply_events(session: Session, *, policy: PolicyDocument, connector: str, events: list[TicketEvent],
                 source_ip: str | None = None, clock: Clock = system_clock) -> list[Outcome]:
    """Apply a delivery's events in order, in the caller's transaction (the caller commits)."""
    return [_apply(session, policy=policy, connector=connector, event=e, source_ip=source_ip, clock=clock)
            for e in events]


def _apply(session: Session, *, policy: PolicyDocument, connector: str, event: TicketEvent,
           source_ip: str | None, clock: Clock) -> Outcome:
    seen = session.get(CrmEvent, (connector, event.event_id))
    if seen is not None:
        out = Outcome(event.event_id, event.kind, event.ticket_ref, "duplicate",
                      f"already received ({seen.outcome}): {seen.detail}"[:500])
        _audit(session, connector, out, source_ip, clock)
        return out
    ticket = session.get(CrmTicket, (connector, event.ticket_ref), with_for_update=True)
    now = clock.now()
    if ticket is not None and event.occurred_at < ticket.last_event_at and event.kind != EventKind.CREATED:
        outcome, detail = "stale", (f"older than the last event applied to this ticket "
                                    f"({ticket.last_event_at.isoformat()}); ignored")
    else:
        if ticket is None:
            ticket = CrmTicket(connector=connector, ticket_ref=event.ticket_ref, last_event_at=event.occurred_at,
                               state="open", access_request_id=None, updated_at=now)
            session.add(ticket)
            session.flush()
        try:
            with session.begin_nested():
                outcome, detail = _dispatch(session, policy=policy, connector=connector, event=event,
                                            ticket=ticket, source_ip=source_ip, clock=clock)
        except RetryLater:
            raise
        except (AccessDenied, InvalidInput, Conflict, NotFound) as exc:
            outcome, detail = "refused", _message(exc)
        if outcome in ("applied", "noop") and event.occurred_at > ticket.last_event_at:
            ticket.last_event_at = event.occurred_at
        ticket.updated_at = now
    out = Outcome(event.event_id, event.kind, event.ticket_ref, outcome, detail[:2000],
                  ticket.access_request_id if ticket is not None else None)
    session.add(CrmEvent(connector=connector, event_id=event.event_id, ticket_ref=event.ticket_ref,
                         kind=event.kind, occurred_at=event.occurred_at, received_at=now, outcome=outcome,
                         detail=out.detail))
    _audit(session, connector, out, source_ip, clock)
    session.flush()
    return out


def _message(exc: CallvaultError) -> str:
    text = exc.message
    problems = getattr(exc, "problems", None) or []
    if problems:
        text += " " + "; ".join(str(p) for p in problems)
    return text


def _audit(session: Session, connector: str, out: Outcome, source_ip: str | None, clock: Clock) -> None:
    decision = {"applied": "allow", "refused": "deny"}.get(out.outcome, "info")
    audit.append(session, audit.AuditEvent(
        actor=actor_name(connector), actor_role="integration", action=f"crm.ticket_{out.kind}", decision=decision,
        object_type="crm_ticket", object_id=f"{connector}:{out.ticket_ref}"[:64], source_ip=source_ip,
        reason=out.detail[:500], clauses=("B6",) if out.kind in ("created", "approved", "rejected", "closed")
        else ("A9",),
        details={"event_id": out.event_id, "ticket_ref": out.ticket_ref, "outcome": out.outcome,
                 "access_request_id": out.access_request_id}), clock=clock)


def _dispatch(session: Session, *, policy: PolicyDocument, connector: str, event: TicketEvent, ticket: CrmTicket,
              source_ip: str | None, clock: Clock) -> tuple[str, str]:
    rules = policy.integrations.crm
    me = actor_name(connector)
    if event.kind == EventKind.CREATED:
        if ticket.access_request_id is not None:
            return "noop", f"the ticket's access request {ticket.access_request_id} was already filed"
        if ticket.state == "closed":
            return "stale", "the ticket was closed before its creation arrived; nothing filed"
        if not rules.file_access_requests:
            raise AccessDenied("the policy does not let the CRM file access requests "
                               "(integrations.crm.file_access_requests); file it in callvault")
        assert event.access is not None
        user = _account(session, connector, event.access.requester, "requester")
        req = access.create_request(
            session, policy=policy, actor=identity.actor_for(session, user, policy), source_ip=source_ip, clock=clock,
            new=access.NewRequest(recording_ids=event.access.recording_ids, purpose=event.access.purpose,
                                  crm_ref=event.ticket_ref, justification=event.access.justification,
                                  actions=event.access.actions, grant_days=event.access.grant_days))
        ticket.access_request_id = req.id
        waiting = ", ".join(req.approver_roles)
        return "applied", f"access request {req.id} filed for {user.username}, waiting for {waiting}"
    if event.kind in (EventKind.APPROVED, EventKind.REJECTED):
        if ticket.access_request_id is None:
            raise RetryLater("this ticket has no access request in callvault yet; deliver its creation first "
                             "(this event was not recorded, so sending it again is safe)")
        if not rules.relay_approvals:
            raise AccessDenied("the policy does not let the CRM relay approvals (integrations.crm.relay_approvals); "
                               "decide the request in callvault")
        user = _account(session, connector, event.actor, "approver")
        approver = identity.actor_for(session, user, policy)
        if event.kind == EventKind.APPROVED:
            grants = access.approve(session, policy=policy, actor=approver, request_id=ticket.access_request_id,
                                    note=event.note or f"approved on CRM ticket {event.ticket_ref}",
                                    source_ip=source_ip, clock=clock)
            return "applied", (f"approved by {user.username}: {len(grants)} grant(s) until "
                               f"{grants[0].ends_at.isoformat()}")
        access.reject(session, policy=policy, actor=approver, request_id=ticket.access_request_id,
                      note=event.note or f"rejected on CRM ticket {event.ticket_ref}", source_ip=source_ip, clock=clock)
        return "applied", f"rejected by {user.username}"
    if event.kind == EventKind.CLOSED:
        ticket.state = "closed"
        if ticket.access_request_id is None:
            return "noop", "the ticket carried no access request"
        ended, cancelled = access.end_for_ticket(session, request_id=ticket.access_request_id, actor=me,
                                                 reason=f"CRM ticket {event.ticket_ref} was closed", clock=clock)
        return "applied", f"{ended} grant(s) ended" + ("; the pending request was cancelled" if cancelled else "")
    if event.kind == EventKind.RESOLVED:
        if not rules.resolve_cases:
            raise AccessDenied("the policy does not let the CRM resolve cases (integrations.crm.resolve_cases); "
                               "resolve the case in callvault")
        result, count = retention.resolve_for_integration(session, policy=policy, actor=me, ref=event.ticket_ref,
                                                          resolved_at=event.occurred_at, clock=clock)
        if result != "resolved":
            return "noop", {"no_recordings": "no recording is kept for this ticket (case_ref)",
                            "already_resolved": "the case was already resolved"}[result]
        grace = policy.retention.post_resolution_grace_days
        return "applied", (f"case resolved: {count} recording(s) recomputed"
                           + (f", destroyed {grace} day(s) after resolution" if
                              policy.retention.destroy_on_case_resolution else
                              " (the policy keeps recordings to the cap regardless)"))
    assert event.kind == EventKind.REOPENED
    if ticket.state == "closed":
        ticket.state = "reopened"
    result, count = retention.reopen_for_integration(session, policy=policy, actor=me, ref=event.ticket_ref,
                                                     clock=clock)
    if result != "reopened":
        return "noop", "the case was not resolved"
    return "applied", f"case reopened: {count} recording(s) back on their retention cap"


