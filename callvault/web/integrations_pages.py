"""Integration pages for administering roles: outgoing webhook subscriptions (added, removed and tested in
``admin_pages``, as ``callvault webhooks`` does), their delivery log, the CRM connectors (is each one's
secret set), the CRM users linked to callvault accounts and the CRM events received."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from callvault.api.deps import Caller, get_runtime
from callvault.audit import service as audit
from callvault.core.errors import ConfigurationError, FieldProblem
from callvault.integrations.crm import service as crm
from callvault.integrations.webhooks_out import service as webhooks
from callvault.integrations.webhooks_out.emit import EVENT_TYPES
from callvault.integrations.webhooks_out.models import DeliveryState
from callvault.runtime import Runtime
from callvault.web.common import abilities, denied, page_caller, render

router = APIRouter(include_in_schema=False)
STATES = (DeliveryState.PENDING, DeliveryState.SENDING, DeliveryState.DELIVERED, DeliveryState.FAILED,
          DeliveryState.CANCELLED)


@router.get("/admin/webhooks", response_class=HTMLResponse)
def webhooks_page(request: Request, caller: Caller = Depends(page_caller),
                  runtime: Runtime = Depends(get_runtime)) -> Response:
    if not abilities(caller)["admin"]:
        reason = f"role {caller.user.role} does not administer the system"
        with runtime.db.unit_of_work() as session:
            audit.append(session, audit.AuditEvent(
                actor=caller.user.username, actor_role=caller.user.role, action="admin.webhooks", decision="deny",
                reason=reason, source_ip=caller.source_ip), clock=runtime.clock)
        return denied(request, caller, reason[:1].upper() + reason[1:] + ".",
                      "These pages are for the roles the policy lets administer callvault.")
    return webhooks_page_with(request, caller, runtime)


def webhooks_page_with(request: Request, caller: Caller, runtime: Runtime, *, status_code: int = 200,
                       add_problems: list[FieldProblem] | None = None, add_form: dict[str, Any] | None = None
                       ) -> Response:
    """The page, with a refused *Add a webhook* form shown again (its problems and what was typed)."""
    state = request.query_params.get("state") or None
    state = state if state in STATES else None
    with runtime.db.unit_of_work() as session:
        subs = [{"name": s.name, "url": s.url, "events": ", ".join(s.events)}
                for s in webhooks.list_subscriptions(session)]
        links = [{"connector": c.connector, "external_id": c.external_id, "username": c.username}
                 for c in crm.linked_users(session)]
        rows = webhooks.deliveries(session, state=state, limit=200)
        events = crm.recent_events(session, limit=50)
        for r in [*rows, *events]:
            session.expunge(r)
    return render(request, "webhooks.html", {
        "caller": caller, "subs": subs, "rows": rows, "events": events, "state": state, "states": STATES,
        "links": links, "connectors": connector_status(runtime), "event_types": EVENT_TYPES,
        "flash": request.query_params.get("done"), "flash_name": request.query_params.get("name", ""),
        "add_problems": add_problems or [], "add_form": add_form or {}}, status_code=status_code)


def connector_status(runtime: Runtime) -> list[dict[str, str]]:
    """Each CRM connector, its endpoint, and whether its shared secret is set (without showing it): an
    unset secret means the CRM's deliveries are refused with 503."""
    out = []
    for name, connector in sorted(crm.CONNECTORS.items()):
        try:
            connector.load_secret(runtime.settings.env)
            state = "ready"
        except ConfigurationError as exc:
            state = exc.message
        out.append({"name": name, "endpoint": f"/api/v1/integrations/crm/{name}/events", "state": state})
    return out
