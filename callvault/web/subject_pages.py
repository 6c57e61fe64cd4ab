"""Public pages for callers' requests for their own recordings (B7): the request form, the code
confirmation, and the emailed download link ``/s/{token}``. No account is needed and the network
allow-list does not apply here (``api.deps._public_subject_path``): callers are outside it.

This router also carries the JSON API of ``api.routes_subject_requests`` (under ``/api/v1``), so the
app registers subject requests with one line.
"""

from __future__ import annotations

from datetime import date, time
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response, StreamingResponse
from fastapi.templating import Jinja2Templates

from callvault.api import routes_subject_requests
from callvault.api.deps import get_runtime, source_ip
from callvault.core.errors import FieldProblem, InvalidInput, NotFound
from callvault.core.ids import new_id
from callvault.identity.counters import CountersUnavailable
from callvault.policy import service as policy_service
from callvault.runtime import Runtime
from callvault.subject_requests import limits, package, phone, proof
from callvault.subject_requests import service as subject

PUBLIC_FORM_LIMIT = 16 * 1024
"""The public form is open to anyone: its body is cut off at this size while it is read."""

router = APIRouter(include_in_schema=False)
FORM_UNAVAILABLE = ("The request form is temporarily unavailable; nothing was sent or stored. Please try again "
                    "in a few minutes.")
"""The rate-limit store (Redis) did not answer: refuse rather than take requests nobody limits."""
router.include_router(routes_subject_requests.router, prefix="/api/v1")

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
_NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def _page(request: Request, name: str, context: dict[str, object], status_code: int = 200) -> Response:
    return templates.TemplateResponse(request, name, context, status_code=status_code, headers=_NO_STORE)


def _date(value: str, field: str, problems: list[FieldProblem]) -> date | None:
    if not value.strip():
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        problems.append(FieldProblem(field, "a date like 2027-03-31"))
        return None


def _time(value: str, field: str, problems: list[FieldProblem]) -> time | None:
    if not value.strip():
        return None
    try:
        return time.fromisoformat(value.strip())
    except ValueError:
        problems.append(FieldProblem(field, "a time like 14:30"))
        return None


def _phone_available(runtime: Runtime) -> bool:
    """Whether a code can be sent to the caller's phone; without it the form asks for facts about a call."""
    return phone.verifier_from_env(runtime.settings.env) is not None


@router.get("/request")
def request_form(request: Request, runtime: Runtime = Depends(get_runtime)) -> Response:
    with runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=runtime.clock)
    return _page(request, "subject_request.html", {"policy": policy, "form": {}, "problems": [], "error": None,
                                                   "phone_proof": _phone_available(runtime)})


@router.post("/request", max_body_size=PUBLIC_FORM_LIMIT)
def request_submit(
    request: Request,
    phone_numbers: Annotated[str, Form(max_length=300)] = "",
    email: Annotated[str, Form(max_length=subject.MAX_EMAIL)] = "",
    date_from: Annotated[str, Form(max_length=20)] = "",
    date_to: Annotated[str, Form(max_length=20)] = "",
    description: Annotated[str, Form(max_length=subject.MAX_DESCRIPTION)] = "",
    call_date: Annotated[str, Form(max_length=20)] = "",
    call_time: Annotated[str, Form(max_length=10)] = "",
    agent_first_name: Annotated[str, Form(max_length=proof.MAX_NAME)] = "",
    call_reason: Annotated[str, Form(max_length=subject.MAX_DESCRIPTION)] = "",
    website: Annotated[str, Form(max_length=200)] = "",
    asks_for: Annotated[str, Form(max_length=16)] = "copy",
    runtime: Runtime = Depends(get_runtime),
) -> Response:
    form = {"phone_numbers": phone_numbers, "email": email, "date_from": date_from, "date_to": date_to,
            "description": description, "call_date": call_date, "call_time": call_time,
            "agent_first_name": agent_first_name, "call_reason": call_reason, "asks_for": asks_for}
    phone_proof = _phone_available(runtime)
    with runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=runtime.clock)
    # What the form needs to show itself again, with the caller's input and what went wrong.
    again: dict[str, object] = {"policy": policy, "form": form, "problems": [], "phone_proof": phone_proof}
    if website:
        # The hidden field is filled only by robots: the same answer as for a person, nothing stored or sent.
        return _page(request, "subject_request_verify.html", {"request_id": new_id(), "error": None})
    problems: list[FieldProblem] = []
    new = subject.NewRequest(
        phone_numbers=[n for n in phone_numbers.replace(",", "\n").splitlines() if n.strip()], email=email,
        date_from=_date(date_from, "date_from", problems), date_to=_date(date_to, "date_to", problems),
        description=description, call_date=_date(call_date, "call_date", problems),
        call_time=_time(call_time, "call_time", problems), agent_first_name=agent_first_name, call_reason=call_reason,
        asks_for=asks_for)
    try:
        if problems:
            raise InvalidInput("the request cannot be accepted:", problems)
        with runtime.db.unit_of_work() as session:
            row = subject.submit(session, policy=policy, new=new, source_ip=source_ip(request),
                                 counters=runtime.counters, keyring=runtime.keyring, phone_proof=phone_proof,
                                 clock=runtime.clock)
            request_id = row.id
    except limits.RateLimited as exc:
        return _page(request, "subject_request.html", {**again, "error": exc.message}, status_code=429)
    except CountersUnavailable:
        return _page(request, "subject_request.html", {**again, "error": FORM_UNAVAILABLE}, status_code=503)
    except InvalidInput as exc:
        return _page(request, "subject_request.html", {**again, "problems": exc.problems, "error": exc.message},
                     status_code=422)
    return _page(request, "subject_request_verify.html", {"request_id": request_id, "error": None})


@router.post("/request/{request_id}/verify", max_body_size=PUBLIC_FORM_LIMIT)
def request_verify(request: Request, request_id: str, code: Annotated[str, Form(max_length=16)] = "",
                   runtime: Runtime = Depends(get_runtime)) -> Response:
    try:
        with runtime.db.unit_of_work() as session:
            policy = policy_service.current_policy(session, clock=runtime.clock)
            outcome = subject.verify(session, policy=policy, request_id=request_id, code=code,
                                     source_ip=source_ip(request), counters=runtime.counters,
                                     mail_domain=routes_subject_requests.mail_domain(runtime), clock=runtime.clock)
            due_on = outcome.request.due_on if outcome.request else None
    except limits.RateLimited as exc:
        return _page(request, "subject_request_verify.html", {"request_id": request_id, "error": exc.message},
                     status_code=429)
    except CountersUnavailable:
        return _page(request, "subject_request_verify.html", {"request_id": request_id, "error": FORM_UNAVAILABLE},
                     status_code=503)
    if not outcome.ok:
        return _page(request, "subject_request_verify.html", {"request_id": request_id, "error": outcome.message},
                     status_code=422)
    verifier = phone.verifier_from_env(runtime.settings.env)
    sent = phone.send_codes(runtime.db, verifier, policy=policy, request_id=request_id, counters=runtime.counters,
                            source_ip=source_ip(request), clock=runtime.clock) if verifier is not None else []
    return _page(request, "subject_request_done.html", {"request_id": request_id, "due_on": due_on,
                                                        "policy": policy, "phone_numbers": sent, "error": None})


@router.post("/request/{request_id}/verify-phone", max_body_size=PUBLIC_FORM_LIMIT)
def request_verify_phone(request: Request, request_id: str,
                         phone_number: Annotated[str, Form(max_length=40)] = "",
                         code: Annotated[str, Form(max_length=16)] = "",
                         runtime: Runtime = Depends(get_runtime)) -> Response:
    """The code texted (or read out) to one of the caller's numbers: it proves the number is theirs."""
    context: dict[str, object] = {"request_id": request_id, "due_on": None, "phone_numbers": [phone_number],
                                  "error": None, "confirmed": None}
    try:
        with runtime.db.unit_of_work() as session:
            context["policy"] = policy = policy_service.current_policy(session, clock=runtime.clock)
            outcome = proof.verify_phone(session, policy=policy, request_id=request_id, phone_number=phone_number,
                                         code=code, source_ip=source_ip(request), counters=runtime.counters,
                                         clock=runtime.clock)
    except limits.RateLimited as exc:
        return _page(request, "subject_request_done.html", {**context, "error": exc.message}, status_code=429)
    except CountersUnavailable:
        return _page(request, "subject_request_done.html", {**context, "error": FORM_UNAVAILABLE}, status_code=503)
    if not outcome.ok:
        return _page(request, "subject_request_done.html", {**context, "error": outcome.message}, status_code=422)
    # Proven now, so the due date may have moved later with the office the number rang (``region``): show it.
    due_on = outcome.request.due_on if outcome.request is not None else None
    return _page(request, "subject_request_done.html", {**context, "phone_numbers": [], "confirmed": phone_number,
                                                        "due_on": due_on})


@router.get("/s/{token}")
def download(request: Request, token: str, runtime: Runtime = Depends(get_runtime)) -> Response:
    """The requester's package: their recordings and a manifest, zipped while it streams."""
    try:
        with runtime.db.unit_of_work() as session:
            policy = policy_service.current_policy(session, clock=runtime.clock)
            release = subject.open_link(session, policy=policy, token=token, source_ip=source_ip(request),
                                        clock=runtime.clock)
            # A refusal is audited and committed here, before the answer.
            if not isinstance(release, subject.LinkRefused):
                readers = package.open_readers(session, store=runtime.store, keyring=runtime.keyring,
                                               release=release)
    except NotFound as exc:  # a recording's key was destroyed between the check and the read
        return _page(request, "subject_request_link.html", {"message": exc.message}, status_code=410)
    if isinstance(release, subject.LinkRefused):
        return _page(request, "subject_request_link.html", {"message": release.message}, status_code=410)
    name = f"recordings-{release.request.id[:8]}.zip"
    headers = {**_NO_STORE, "Content-Disposition": f'attachment; filename="{name}"'}
    return StreamingResponse(package.stream_zip(release, readers), media_type="application/zip", headers=headers)
