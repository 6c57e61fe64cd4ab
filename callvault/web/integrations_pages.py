"""Integration pages for administering roles: the outgoing webhook delivery log and the CRM events
received (what each ticket event did). Read-only: subscriptions are managed with ``callvault webhooks``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from callvault.api.deps import Caller, get_runtime
from callvault.audit import service as audit
from callvault.integrations.crm import service as crm
from callvault.integrations.webhooks_out import service as webhooks
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
    state = request.query_params.get("state") or None
    state = state if state in STATES else None
    with runtime.db.unit_of_work() as session:
        subs = [{"name": s.name, "url": s.url, "events": ", ".join(s.events)}
                for s in webhooks.list_subscriptions(session)]
        rows = webhooks.deliveries(session, state=state, limit=200)
        events = crm.recent_events(session, limit=50)
        for r in [*rows, *events]:
            session.expunge(r)
    return render(request, "webhooks.html", {"caller": caller, "subs": subs, "rows": rows, "events": events,
                                             "state": state, "states": STATES})
