"""Account lifecycle pages (issue 24 point 7): changing your own password on /account, choosing a new
password with an administrator's reset code (/password/reset, before sign-in), and the administrator's
actions on the users page (MFA reset, enrolment code, deactivate / reactivate, password reset).
Thin over ``identity.lifecycle`` and ``identity.account_codes``, like the API and the CLI."""

from __future__ import annotations

import secrets
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from callvault.api.deps import Caller, cookie_name, get_runtime, read_cookie, secure_request, source_ip
from callvault.core.errors import Conflict, FieldProblem, InvalidInput
from callvault.identity import account_codes, lifecycle, preferences, step_up
from callvault.identity import service as identity
from callvault.runtime import Runtime
from callvault.web import sso_pages, step_up_gate
from callvault.web.common import PRELOGIN_COOKIE, abilities, denied, form_expired, page_caller, render, same, templates

router = APIRouter(include_in_schema=False)
Action = Literal["mfa-reset", "enrolment-code", "deactivate", "reactivate", "password-reset"]
DONE = {"mfa-reset": "mfa-reset", "deactivate": "deactivated", "reactivate": "reactivated"}
STEPPED_UP = {"mfa-reset": step_up.RESET_MFA, "password-reset": step_up.RESET_PASSWORD,
              "enrolment-code": step_up.ENROLMENT_CODE}
"""The actions that make or remove a credential: they need a fresh step-up code (``web.step_up_gate``)."""
LABELS = {"mfa-reset": "Reset MFA", "password-reset": "Reset password", "enrolment-code": "Enrolment code"}


@router.post("/account/password", response_class=HTMLResponse)
def change_password(request: Request, current_password: Annotated[str, Form()] = "",
                    new_password: Annotated[str, Form()] = "", confirm_password: Annotated[str, Form()] = "",
                    otp: Annotated[str, Form()] = "", csrf_token: Annotated[str, Form()] = "",
                    caller: Caller = Depends(page_caller), runtime: Runtime = Depends(get_runtime)) -> Response:
    """Your own password: the current one and a one-time code (MFA set up). Your other sessions and tokens
    end; this browser stays signed in."""
    if not same(csrf_token, caller.csrf_token):
        return form_expired(request, caller)
    problems: list[FieldProblem] = []
    if new_password != confirm_password:
        problems.append(FieldProblem("confirm_password", "does not match the new password"))
    else:
        try:
            lifecycle.change_password(runtime.db, username=caller.user.username, current_password=current_password,
                                      new_password=new_password, otp=otp or None, keyring=runtime.keyring,
                                      counters=runtime.counters, keep_session_id=caller.credential_id,
                                      source_ip=caller.source_ip, clock=runtime.clock)
        except InvalidInput as exc:
            problems = exc.problems or [FieldProblem("password", exc.message)]
    if problems:
        return sso_pages.account_page(request, caller, runtime, password_problems=problems, status_code=422)
    return RedirectResponse("/account?done=password-changed", status_code=303)


@router.post("/account/timezone", response_class=HTMLResponse)
def change_timezone(request: Request, timezone: Annotated[str, Form()] = "", csrf_token: Annotated[str, Form()] = "",
                    caller: Caller = Depends(page_caller), runtime: Runtime = Depends(get_runtime)) -> Response:
    """Your own time zone, kept on your account: every page's times and the search's dates use it.
    Empty goes back to the policy's zone; a name that is not an IANA zone is refused with an example."""
    if not same(csrf_token, caller.csrf_token):
        return form_expired(request, caller)
    try:
        with runtime.db.unit_of_work() as session:
            user = identity.get_user(session, caller.user.username)
            preferences.set_timezone(session, user=user, zone=timezone, source_ip=caller.source_ip,
                                     clock=runtime.clock)
    except InvalidInput as exc:
        return sso_pages.account_page(request, caller, runtime, timezone_problems=exc.problems,
                                      timezone_typed=timezone[:64], status_code=422)
    return RedirectResponse("/account?done=timezone", status_code=303)


def _reset_form(request: Request, *, problems: list[FieldProblem], done: bool = False,
                status_code: int = 200) -> Response:
    token = secrets.token_urlsafe(32)  # double-submit, as the sign-in form (no session yet)
    response = templates.TemplateResponse(request, "password_reset.html", {
        "problems": problems, "done": done, "csrf_token": token}, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"
    response.set_cookie(cookie_name(request, PRELOGIN_COOKIE), token, httponly=True, samesite="strict",
                        secure=secure_request(request), path="/", max_age=3600)
    return response


@router.get("/password/reset", response_class=HTMLResponse)
def reset_page(request: Request) -> Response:
    return _reset_form(request, problems=[])


@router.post("/password/reset", response_class=HTMLResponse)
def reset_submit(request: Request, username: Annotated[str, Form()] = "", reset_code: Annotated[str, Form()] = "",
                 new_password: Annotated[str, Form()] = "", confirm_password: Annotated[str, Form()] = "",
                 otp: Annotated[str, Form()] = "", csrf_token: Annotated[str, Form()] = "",
                 runtime: Runtime = Depends(get_runtime)) -> Response:
    """A new password with the administrator's one-time reset code (and a one-time code, MFA set up)."""
    if not same(csrf_token, read_cookie(request, PRELOGIN_COOKIE) or ""):
        return _reset_form(request, problems=[FieldProblem("form", "expired; please try again")], status_code=403)
    if new_password != confirm_password:
        return _reset_form(request, problems=[FieldProblem("confirm_password", "does not match the new password")],
                           status_code=422)
    try:
        lifecycle.set_password_with_code(runtime.db, username=username, reset_code=reset_code,
                                         new_password=new_password, otp=otp or None, keyring=runtime.keyring,
                                         counters=runtime.counters, source_ip=source_ip(request), clock=runtime.clock)
    except InvalidInput as exc:
        return _reset_form(request, problems=exc.problems, status_code=422)
    return _reset_form(request, problems=[], done=True)


@router.post("/admin/users/{username}/{action}", response_class=HTMLResponse)
def user_action(username: str, action: Action, request: Request, step_up_code: Annotated[str, Form()] = "",
                csrf_token: Annotated[str, Form()] = "", caller: Caller = Depends(page_caller),
                runtime: Runtime = Depends(get_runtime)) -> Response:
    """The administrator's account actions; a code is shown once on its own page (not cached). Those that
    make or remove a credential (``STEPPED_UP``) need a fresh step-up code, so a hijacked session cannot
    hand itself a way back in."""
    if not same(csrf_token, caller.csrf_token):
        return form_expired(request, caller)
    if not abilities(caller)["admin"]:
        return denied(request, caller, f"role {caller.user.role} does not administer accounts",
                      "These actions are for the roles the policy lets administer callvault.")
    if action in STEPPED_UP:
        unconfirmed = step_up_gate.refusal(runtime, caller, step_up_code, STEPPED_UP[action])
        if unconfirmed is not None:
            return denied(request, caller, unconfirmed, f"Go back to the users page, type the code in the field "
                          f"next to “{LABELS[action]}” for {username}, and press it again.",
                          title="Confirm with your one-time code")
    actor, role, ip, clock = caller.user.username, caller.user.role, caller.source_ip, runtime.clock
    try:
        with runtime.db.unit_of_work() as session:
            user = identity.get_user(session, username)
            issued: account_codes.IssuedCode | None = None
            if action == "mfa-reset":
                lifecycle.reset_mfa(session, user=user, actor=actor, actor_role=role, source_ip=ip, clock=clock)
            elif action == "enrolment-code":
                issued = account_codes.issue(session, user=user, purpose="enrol", actor=actor, actor_role=role,
                                             source_ip=ip, clock=clock)
            elif action == "deactivate":
                lifecycle.deactivate(session, user=user, policy=caller.policy, actor=actor, actor_role=role,
                                     source_ip=ip, clock=clock)
            elif action == "reactivate":
                lifecycle.reactivate(session, user=user, actor=actor, actor_role=role, source_ip=ip, clock=clock)
            else:
                issued = lifecycle.reset_password(session, user=user, actor=actor, actor_role=role, source_ip=ip,
                                                  clock=clock)
    except Conflict as exc:
        return denied(request, caller, exc.message, title="Not done", status_code=409)
    if issued is None:
        return RedirectResponse(f"/admin/users?done={DONE[action]}&user={username}", status_code=303)
    return render(request, "account_code.html", {"caller": caller, "username": username, "issued": issued,
                                                 "what": account_codes.NAMES[issued.purpose]})
