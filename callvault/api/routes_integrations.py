"""Integrations over HTTP: the CRM connectors' signed event endpoint and the webhook delivery log.

``POST /api/v1/integrations/crm/{connector}/events`` takes no sign-in: the connector's signature
(HMAC under its shared secret, with a timestamp inside the replay window) is the credential. The
body is authenticated before it is parsed, a replayed delivery is refused (401), and every refusal is
audited. What the events may do is decided in ``integrations.crm.service`` through the access and
retention services and the policy's ``integrations.crm`` switches.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from starlette.concurrency import run_in_threadpool

from callvault.api.deps import Caller, get_caller, get_runtime, policy_in_force
from callvault.audit import service as audit
from callvault.core.errors import AccessDenied, AuthenticationFailed, Conflict, InvalidInput
from callvault.integrations import signing
from callvault.integrations.crm import service as crm
from callvault.integrations.webhooks_out import service as webhooks
from callvault.runtime import Runtime

router = APIRouter(tags=["integrations"])
MAX_EVENT_BYTES = 64 * 1024


class CrmEventOutcome(BaseModel):
    event_id: str
    kind: str
    ticket_ref: str
    outcome: str
    detail: str
    access_request_id: str | None = None


class CrmDeliveryResult(BaseModel):
    connector: str
    events: list[CrmEventOutcome]
    """Empty when the delivery carried nothing callvault acts on (acknowledged, ignored)."""


class WebhookDeliveryRead(BaseModel):
    id: str
    webhook: str
    event_id: str
    event_type: str
    state: str
    attempts: int
    created_at: str
    next_attempt_at: str
    delivered_at: str | None
    last_status: int | None
    last_error: str


def _refuse(runtime: Runtime, connector: str, source_ip: str | None, reason: str) -> None:
    with runtime.db.unit_of_work() as session:
        audit.append(session, audit.AuditEvent(
            actor=crm.actor_name(connector)[:64], actor_role="integration", action="crm.delivery", decision="deny",
            source_ip=source_ip, reason=reason[:300], clauses=("B6",)), clock=runtime.clock)


def _receive(runtime: Runtime, connector_name: str, body: bytes, headers: dict[str, str],
             source_ip: str | None) -> JSONResponse:
    connector = crm.connector_named(connector_name)
    secret = connector.load_secret(runtime.settings.env)
    try:
        digest = connector.authenticate(secret, headers, body, runtime.clock)
    except AuthenticationFailed as exc:
        _refuse(runtime, connector.name, source_ip, exc.message)
        raise
    try:
        events = connector.parse(body)
    except InvalidInput as exc:
        _refuse(runtime, connector.name, source_ip, f"{exc.message} {'; '.join(map(str, exc.problems))}")
        raise
    try:
        with runtime.db.unit_of_work() as session:
            signing.remember(session, digest=digest, reference=events[0].event_id if events else "(ignored)",
                             clock=runtime.clock)
            policy = policy_in_force(session, runtime.clock)
            outcomes = crm.apply_events(session, policy=policy, connector=connector.name, events=events,
                                        source_ip=source_ip, clock=runtime.clock)
    except AuthenticationFailed as exc:
        _refuse(runtime, connector.name, source_ip, exc.message)
        raise
    except crm.RetryLater as exc:
        with runtime.db.unit_of_work() as session:
            audit.append(session, audit.AuditEvent(
                actor=crm.actor_name(connector.name), actor_role="integration", action="crm.event_deferred",
                decision="info", object_type="crm_ticket",
                object_id=f"{connector.name}:{events[0].ticket_ref}"[:64], source_ip=source_ip,
                reason=exc.message[:300], details={"event_id": events[0].event_id, "kind": events[0].kind},
                clauses=("B6",)), clock=runtime.clock)
        raise
    except SAIntegrityError:  # the same delivery or event raced in on two nodes: one wins
        raise Conflict("this event is being applied by another request; send it again to see the outcome") from None
    result = CrmDeliveryResult(connector=connector.name, events=[CrmEventOutcome(
        event_id=o.event_id, kind=o.kind, ticket_ref=o.ticket_ref, outcome=o.outcome, detail=o.detail,
        access_request_id=o.access_request_id) for o in outcomes])
    return JSONResponse(result.model_dump(mode="json"), status_code=200 if outcomes else 202)


@router.post("/integrations/crm/{connector}/events", response_model=CrmDeliveryResult, max_body_size=MAX_EVENT_BYTES,
             responses={202: {"description": "authentic, but nothing callvault acts on (ignored)"},
                        401: {"description": "missing, wrong, expired or replayed signature"},
                        409: {"description": "a decision for a ticket whose request has not arrived: send again"},
                        422: {"description": "the body is not what this connector accepts"},
                        503: {"description": "this connector's secret is not configured"}})
async def crm_events(connector: str, request: Request, runtime: Runtime = Depends(get_runtime)) -> JSONResponse:
    """A CRM's ticket event(s): ``generic`` (callvault's signed JSON) or ``zendesk`` (its ticket event
    webhooks). Each event's outcome is ``applied``, ``refused`` (with the rule that said no), ``stale``,
    ``noop`` or ``duplicate``. See docs/integrations.md."""
    body = await request.body()
    if len(body) > MAX_EVENT_BYTES:
        return JSONResponse({"error": "too_large", "message": f"events are limited to {MAX_EVENT_BYTES} bytes"},
                            status_code=413)
    source_ip = getattr(request.state, "client_ip", None)
    headers = {k.lower(): v for k, v in request.headers.items()}
    return await run_in_threadpool(_receive, runtime, connector, body, headers, source_ip)


def require_administrator(runtime: Runtime, caller: Caller, what: str) -> None:
    """AccessDenied (after auditing it) unless the caller's role administers the system."""
    role = caller.policy.roles.get(caller.user.role)
    if role is not None and role.can_administer:
        return
    with runtime.db.unit_of_work() as session:
        audit.append(session, audit.AuditEvent(
            actor=caller.user.username, actor_role=caller.user.role, action="webhook.log_read", decision="deny",
            reason=f"role {caller.user.role} does not administer the system", source_ip=caller.source_ip),
            clock=runtime.clock)
    raise AccessDenied(f"role {caller.user.role} may not {what}")


def delivery_rows(runtime: Runtime, *, webhook: str | None, state: str | None,
                  limit: int) -> list[WebhookDeliveryRead]:
    with runtime.db.read_only() as session:
        return [WebhookDeliveryRead(
            id=d.id, webhook=d.subscription_name, event_id=d.event_id, event_type=d.event_type, state=d.state,
            attempts=d.attempts, created_at=d.created_at.isoformat(), next_attempt_at=d.next_attempt_at.isoformat(),
            delivered_at=d.delivered_at.isoformat() if d.delivered_at else None, last_status=d.last_status,
            last_error=d.last_error) for d in webhooks.deliveries(session, name=webhook, state=state, limit=limit)]


@router.get("/webhooks/deliveries", response_model=list[WebhookDeliveryRead])
def webhook_deliveries(webhook: str | None = None, state: str | None = None, limit: int = 200,
                       caller: Caller = Depends(get_caller),
                       runtime: Runtime = Depends(get_runtime)) -> list[WebhookDeliveryRead]:
    """Administrators: the outgoing webhook delivery log, newest first (no payloads)."""
    require_administrator(runtime, caller, "read the webhook delivery log")
    return delivery_rows(runtime, webhook=webhook, state=state, limit=max(1, min(limit, 1000)))
