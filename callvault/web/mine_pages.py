"""The employee's own page (issue 26 point 1): who reached the content of their calls and why (A10, B12
transparency, from the audit log through ``oversight.transparency``), their consents per purpose (A6,
``access.consents``, exactly as ``/api/v1/me/consents``), and a link to the QA reviews of their calls.

Everyone signed in may use it: it shows only what concerns the person themselves.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from callvault.access import consents
from callvault.api.deps import Caller, get_runtime
from callvault.core.errors import InvalidInput, NotFound
from callvault.identity import service as identity
from callvault.oversight import transparency
from callvault.quality import review, training
from callvault.runtime import Runtime
from callvault.web.common import denied, form_expired, page_caller, render, same

router = APIRouter(include_in_schema=False)


@router.get("/me", response_class=HTMLResponse)
def my_page(request: Request, caller: Caller = Depends(page_caller),
            runtime: Runtime = Depends(get_runtime)) -> Response:
    with runtime.db.unit_of_work() as session:
        user = identity.get_user(session, caller.user.username)
        accesses = transparency.accesses_to_calls_of(session, user=user)
        given = {c.purpose: c.given_at for c in consents.active(session, user=user)}
        reviews = len(review.my_reviews(session, actor=caller.actor))
    # Offer the purposes that need the recorded employee's consent, and any consent already on file.
    purposes = [(pid, p) for pid, p in caller.policy.purposes.items() if p.employee_consent_required or pid in given]
    return render(request, "me.html", {"caller": caller, "accesses": accesses, "given": given,
                                       "purposes": purposes, "reviews": reviews,
                                       "flash": request.query_params.get("done"),
                                       "flash_purpose": request.query_params.get("purpose", "")})


@router.post("/me/consents/{purpose}/{action}", response_class=HTMLResponse)
def change_consent(purpose: str, action: str, request: Request, csrf_token: Annotated[str, Form()] = "",
                   caller: Caller = Depends(page_caller), runtime: Runtime = Depends(get_runtime)) -> Response:
    """Give or withdraw one's own consent to a purpose (audited ``consent.given`` / ``consent.revoked``).
    Withdrawing the training purpose also withdraws the anonymised clips made from one's calls, as the API."""
    if not same(csrf_token, caller.csrf_token):
        return form_expired(request, caller)
    if action not in ("give", "withdraw"):
        return denied(request, caller, f"there is no consent action {action!r}", title="Not found", status_code=404)
    withdrawn: list[str] = []
    try:
        with runtime.db.unit_of_work() as session:
            user = identity.get_user(session, caller.user.username)
            if action == "give":
                consents.give(session, user=user, purpose=purpose, policy=caller.policy, actor=caller.user.username,
                              source_ip=caller.source_ip, clock=runtime.clock)
            else:
                consents.revoke(session, user=user, purpose=purpose, actor=caller.user.username,
                                source_ip=caller.source_ip, clock=runtime.clock)
                if purpose == training.clip_purpose(caller.policy):
                    withdrawn = training.withdraw_for_agent(session, keyring=runtime.keyring, agent=user.username,
                                                            actor=caller.user.username, clock=runtime.clock)
    except InvalidInput as exc:
        return denied(request, caller, "; ".join(str(p) for p in exc.problems) or exc.message,
                      "Choose a purpose the page offers.", title="Not recorded", status_code=422)
    except NotFound as exc:
        return denied(request, caller, exc.message, title="Nothing to withdraw", status_code=404)
    training.delete_blobs(runtime.store, withdrawn)
    return RedirectResponse(f"/me?done={'given' if action == 'give' else 'withdrawn'}&purpose={purpose}#consents",
                            status_code=303)
