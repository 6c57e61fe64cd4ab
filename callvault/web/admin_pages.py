"""The administrator's changes from the pages (issue 26 point 1): adding a user and changing their role,
extension and team, scoped API tokens (create, revoke), outgoing webhooks (add, remove, send a test) and
loading a new policy version after ``policy check``'s problems and warnings.

Thin over the services the CLI and API use (``identity``, ``identity.lifecycle``, ``webhooks_out``,
``policy.service``), with the same audit entries; each form carries the CSRF token and each refusal for a
role that does not administer is audited (``oversight_pages.admin_only``). Secrets (a token, a webhook's
signing secret) are shown once on a page that is not cached, as the CLI prints them once.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from callvault.api.deps import Caller, get_runtime
from callvault.audit import service as audit
from callvault.core.errors import CallvaultError, Conflict, FieldProblem, InvalidInput, NotFound
from callvault.identity import lifecycle, step_up
from callvault.identity import service as identity
from callvault.integrations.webhooks_out import service as webhooks
from callvault.policy import service as policy_service
from callvault.policy.loader import parse_policy_text
from callvault.policy.risks import policy_risks
from callvault.runtime import Runtime
from callvault.web import integrations_pages, oversight_pages, step_up_gate
from callvault.web.common import denied, form_expired, page_caller, render, same

router = APIRouter(include_in_schema=False)
MAX_POLICY_BYTES = 256 * 1024
"""A policy file is a few kilobytes; anything this large is not one."""
MAX_TOKEN_DAYS = 366
"""Integration tokens must be rotated (the CLI's ``--ttl`` has the same cap)."""


def _problems(exc: CallvaultError) -> list[FieldProblem]:
    return exc.problems if isinstance(exc, InvalidInput) and exc.problems else [FieldProblem("", exc.message)]


# ----------------------------------------------------------------------------------------- users
@router.post("/admin/users", response_class=HTMLResponse)
def add_user(request: Request, username: Annotated[str, Form()] = "", role: Annotated[str, Form()] = "",
             password: Annotated[str, Form()] = "", extension: Annotated[str, Form()] = "",
             team: Annotated[str, Form()] = "", csrf_token: Annotated[str, Form()] = "",
             caller: Caller = Depends(page_caller), runtime: Runtime = Depends(get_runtime)) -> Response:
    """``callvault users add`` from the page: a local account with a policy role and an initial password."""
    if not same(csrf_token, caller.csrf_token):
        return form_expired(request, caller)
    refused = oversight_pages.admin_only(request, caller, runtime, "user_add")
    if refused is not None:
        return refused
    try:
        with runtime.db.unit_of_work() as session:
            user = identity.create_user(session, actor=caller.user.username, policy=caller.policy, username=username,
                                        role=role, password=password, extension=extension.strip() or None,
                                        team=team.strip() or None, clock=runtime.clock)
            name = user.username
    except (InvalidInput, Conflict) as exc:
        form = {"username": username, "role": role, "extension": extension, "team": team}
        return oversight_pages.users_page_with(request, caller, runtime, add_problems=_problems(exc), add_form=form,
                                               status_code=422 if isinstance(exc, InvalidInput) else 409)
    return RedirectResponse(f"/admin/users?done=added&user={name}", status_code=303)


@router.post("/admin/users/{username}/profile", response_class=HTMLResponse)
def change_profile(username: str, request: Request, role: Annotated[str, Form()] = "",
                   extension: Annotated[str, Form()] = "", team: Annotated[str, Form()] = "",
                   csrf_token: Annotated[str, Form()] = "", caller: Caller = Depends(page_caller),
                   runtime: Runtime = Depends(get_runtime)) -> Response:
    """Role, extension and team; the extension decides which calls a specialist reaches, so it is audited. A
    role change ends the person's sessions and tokens (the new role's sign-in rules apply from their next
    sign-in), and the banner tells the administrator so."""
    if not same(csrf_token, caller.csrf_token):
        return form_expired(request, caller)
    refused = oversight_pages.admin_only(request, caller, runtime, "user_change")
    if refused is not None:
        return refused
    try:
        with runtime.db.unit_of_work() as session:
            user = identity.get_user(session, username)
            changes = lifecycle.update_profile(session, user=user, policy=caller.policy, role=role,
                                               extension=extension, team=team, actor=caller.user.username,
                                               actor_role=caller.user.role, source_ip=caller.source_ip,
                                               clock=runtime.clock)
            name = user.username
    except NotFound as exc:
        return denied(request, caller, exc.message, title="No such user", status_code=404)
    except (InvalidInput, Conflict) as exc:
        return oversight_pages.users_page_with(request, caller, runtime, edit_problems=_problems(exc),
                                               edit_user=username, status_code=422 if isinstance(exc, InvalidInput)
                                               else 409)
    done = "role-changed" if "role" in changes else "changed" if changes else "unchanged"
    return RedirectResponse(f"/admin/users?done={done}&user={name}", status_code=303)


# ----------------------------------------------------------------------------------------- API tokens
@router.post("/admin/tokens", response_class=HTMLResponse)
async def create_token(request: Request, caller: Caller = Depends(page_caller),
                       runtime: Runtime = Depends(get_runtime)) -> Response:
    """``callvault tokens create``: a scoped bearer token for an account, shown once, audited
    ``auth.token_created``. The scopes only narrow: the account's role and the policy still decide.
    A token is a credential that outlives the session, so making one needs a fresh step-up code."""
    form = await request.form()
    if not same(str(form.get("csrf_token", "")), caller.csrf_token):
        return form_expired(request, caller)
    refused = oversight_pages.admin_only(request, caller, runtime, "token_create")
    if refused is not None:
        return refused
    owner, name = str(form.get("user", "")), str(form.get("name", "")).strip() or "integration"
    scopes = [str(s) for s in form.getlist("scope")]
    unconfirmed = await run_in_threadpool(step_up_gate.refusal, runtime, caller, str(form.get("step_up_code", "")),
                                          step_up.CREATE_TOKEN)
    if unconfirmed is not None:
        return oversight_pages.users_page_with(
            request, caller, runtime, token_problems=[FieldProblem("step_up_code", unconfirmed)],
            token_form={"user": owner, "name": name, "scopes": scopes, "days": str(form.get("days", ""))},
            status_code=403)
    problems: list[FieldProblem] = []
    try:
        days = int(str(form.get("days", "90")))
    except ValueError:
        days = 0
    if not 1 <= days <= MAX_TOKEN_DAYS:
        problems.append(FieldProblem("days", f"a whole number of days from 1 to {MAX_TOKEN_DAYS}"))
    try:
        checked = identity.check_scopes(scopes)
    except InvalidInput as exc:
        problems += exc.problems
    if not problems:
        try:
            with runtime.db.unit_of_work() as session:
                account = identity.get_user(session, owner)
                refusal = identity.token_owner_refusal(caller.policy, issuer=caller.user, owner=account)
                if refusal is not None:
                    problems.append(FieldProblem("user", refusal))
                    audit.append(session, audit.AuditEvent(
                        actor=caller.user.username, actor_role=caller.user.role, action="auth.token_created",
                        decision="deny", reason=refusal, source_ip=caller.source_ip,
                        details={"user": account.username, "scopes": list(checked)}), clock=runtime.clock)
                else:
                    issued = identity.issue_token(session, user=account, ttl_seconds=days * 86400, name=name,
                                                  scopes=checked, clock=runtime.clock)
                    audit.append(session, audit.AuditEvent(
                        actor=caller.user.username, actor_role=caller.user.role, action="auth.token_created",
                        object_type="api_token", object_id=issued.token_id, source_ip=caller.source_ip,
                        details={"user": account.username, "scopes": list(checked), "ttl_seconds": days * 86400,
                                 "name": name}), clock=runtime.clock)
        except NotFound as exc:
            problems.append(FieldProblem("user", exc.message))
    if problems:
        return oversight_pages.users_page_with(request, caller, runtime, token_problems=problems, token_form={
            "user": owner, "name": name, "scopes": scopes, "days": str(form.get("days", ""))}, status_code=422)
    return render(request, "secret_once.html", {
        "caller": caller, "title": "API token created", "secret": issued.token, "back": "/admin/users#tokens",
        "what": f"Token “{name}” for {owner} with {' '.join(checked)}, valid {days} days.",
        "use": "Send it as “Authorization: Bearer …”. Only its hash is stored: it is not shown again."})


@router.post("/admin/tokens/{token_id}/revoke", response_class=HTMLResponse)
def revoke_token(token_id: str, request: Request, csrf_token: Annotated[str, Form()] = "",
                 caller: Caller = Depends(page_caller), runtime: Runtime = Depends(get_runtime)) -> Response:
    if not same(csrf_token, caller.csrf_token):
        return form_expired(request, caller)
    refused = oversight_pages.admin_only(request, caller, runtime, "token_revoke")
    if refused is not None:
        return refused
    try:
        with runtime.db.unit_of_work() as session:
            row = identity.revoke_token_id(session, token_id=token_id, actor=caller.user.username,
                                           clock=runtime.clock)
            name = row.name
    except NotFound as exc:
        return denied(request, caller, exc.message, title="No such token", status_code=404)
    return RedirectResponse(f"/admin/users?done=token-revoked&user={name}#tokens", status_code=303)


# ----------------------------------------------------------------------------------------- webhooks
@router.post("/admin/webhooks", response_class=HTMLResponse)
async def add_webhook(request: Request, caller: Caller = Depends(page_caller),
                      runtime: Runtime = Depends(get_runtime)) -> Response:
    """``callvault webhooks add``: the signing secret is shown once (callvault keeps it only wrapped)."""
    form = await request.form()
    if not same(str(form.get("csrf_token", "")), caller.csrf_token):
        return form_expired(request, caller)
    refused = oversight_pages.admin_only(request, caller, runtime, "webhook_add")
    if refused is not None:
        return refused
    name, url = str(form.get("name", "")), str(form.get("url", ""))
    events = [str(e) for e in form.getlist("events")]
    try:
        with runtime.db.unit_of_work() as session:
            new = webhooks.add_subscription(session, keyring=runtime.keyring, name=name, url=url, events=events,
                                            actor=caller.user.username, clock=runtime.clock)
    except (InvalidInput, Conflict) as exc:
        return integrations_pages.webhooks_page_with(request, caller, runtime, add_problems=_problems(exc),
                                                     add_form={"name": name, "url": url, "events": events},
                                                     status_code=422 if isinstance(exc, InvalidInput) else 409)
    return render(request, "secret_once.html", {
        "caller": caller, "title": "Webhook added", "secret": new.secret, "back": "/admin/webhooks",
        "what": f"Webhook “{name.strip()}” posts to {url.strip()}.",
        "use": "The receiver checks X-Callvault-Signature with this secret. It is not shown again."})


@router.post("/admin/webhooks/{name}/{action}", response_class=HTMLResponse)
def webhook_action(name: str, action: str, request: Request, csrf_token: Annotated[str, Form()] = "",
                   caller: Caller = Depends(page_caller), runtime: Runtime = Depends(get_runtime)) -> Response:
    """Remove a subscription (its undelivered events are cancelled) or queue a ``webhook.test`` to it."""
    if not same(csrf_token, caller.csrf_token):
        return form_expired(request, caller)
    refused = oversight_pages.admin_only(request, caller, runtime, f"webhook_{action}"[:40])
    if refused is not None:
        return refused
    if action not in ("remove", "test"):
        return denied(request, caller, f"there is no webhook action {action!r}", title="Not found", status_code=404)
    try:
        with runtime.db.unit_of_work() as session:
            if action == "remove":
                cancelled = webhooks.remove_subscription(session, name=name, actor=caller.user.username,
                                                         clock=runtime.clock)
                done = f"removed&cancelled={cancelled}"
            else:
                webhooks.send_test(session, name=name, actor=caller.user.username, actor_role=caller.user.role,
                                   source_ip=caller.source_ip, clock=runtime.clock)
                done = "tested"
    except NotFound as exc:
        return denied(request, caller, exc.message, title="No such webhook", status_code=404)
    return RedirectResponse(f"/admin/webhooks?done={done}&name={name}", status_code=303)


# ----------------------------------------------------------------------------------------- the policy
@router.post("/admin/policy/check", response_class=HTMLResponse)
async def check_policy(request: Request, file: Annotated[UploadFile, File()], csrf_token: Annotated[str, Form()] = "",
                       caller: Caller = Depends(page_caller), runtime: Runtime = Depends(get_runtime)) -> Response:
    """``callvault policy check`` on an uploaded file: every problem and warning with its line. Nothing is
    stored; a valid file comes back with a *Load this version* button that posts the same text."""
    if not same(csrf_token, caller.csrf_token):
        return form_expired(request, caller)
    refused = oversight_pages.admin_only(request, caller, runtime, "policy_check")
    if refused is not None:
        return refused
    raw = await file.read(MAX_POLICY_BYTES + 1)
    source = (file.filename or "uploaded policy")[:200]
    check: dict[str, object] = {"source": source, "problems": [], "warnings": [], "doc": None, "text": ""}
    if len(raw) > MAX_POLICY_BYTES:
        check["problems"] = [FieldProblem("", f"the file is over {MAX_POLICY_BYTES // 1024} KiB; a policy is "
                                              "a few kilobytes")]
    else:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            check["problems"] = [FieldProblem("", f"byte {exc.start} is not valid UTF-8; save the file as UTF-8",
                                              line)]
        else:
            check.update(_check_text(text, source, runtime))
    return oversight_pages.policy_page_with(request, caller, runtime, check=check,
                                            status_code=422 if check["problems"] else 200)


def _check_text(text: str, source: str, runtime: Runtime) -> dict[str, object]:
    try:
        doc = parse_policy_text(text, source=source)
    except InvalidInput as exc:
        return {"problems": _problems(exc), "text": ""}
    return {"doc": doc, "text": text,
            "warnings": policy_risks(doc, text, trusted_proxies=runtime.settings.trusted_proxies)}


@router.post("/admin/policy/load", response_class=HTMLResponse)
def load_policy(request: Request, text: Annotated[str, Form()] = "", source: Annotated[str, Form()] = "",
                step_up_code: Annotated[str, Form()] = "", csrf_token: Annotated[str, Form()] = "",
                caller: Caller = Depends(page_caller), runtime: Runtime = Depends(get_runtime)) -> Response:
    """``callvault policy load``: the checked text is validated again and stored (audited ``policy.loaded``);
    it takes effect on its effective date, and everyone re-acknowledges it then (B13). The policy decides
    who reaches what, so loading one needs a fresh step-up code (the CLI, on the server, asks for none)."""
    if not same(csrf_token, caller.csrf_token):
        return form_expired(request, caller)
    refused = oversight_pages.admin_only(request, caller, runtime, "policy_load")
    if refused is not None:
        return refused
    text = text.replace("\r\n", "\n")  # a form sends line breaks as CRLF; keep the file's own
    unconfirmed = step_up_gate.refusal(runtime, caller, step_up_code, step_up.LOAD_POLICY)
    if unconfirmed is not None:  # the checked file comes back with its Load button and the reason
        check = {"source": source[:200], "problems": [], "warnings": [], "doc": None, "text": "",
                 **_check_text(text, source[:200], runtime), "step_up_error": unconfirmed}
        return oversight_pages.policy_page_with(request, caller, runtime, check=check, status_code=403)
    source = f"web upload: {source[:150] or 'policy'}"
    try:
        with runtime.db.unit_of_work() as session:
            before = policy_service.current_version(session, clock=runtime.clock)
            old_ref = f"{before.policy_id}@{before.version}"
            row, created = policy_service.load_policy(session, text=text, source=source,
                                                      actor=caller.user.username, clock=runtime.clock)
            new_ref = f"{row.policy_id}@{row.version}"
    except (InvalidInput, Conflict) as exc:
        check = {"source": source, "problems": _problems(exc), "warnings": [], "doc": None, "text": ""}
        return oversight_pages.policy_page_with(request, caller, runtime, check=check,
                                                status_code=422 if isinstance(exc, InvalidInput) else 409)
    return RedirectResponse(f"/admin/policy?done={'loaded' if created else 'already'}&old={old_ref}&new={new_ref}",
                            status_code=303)
