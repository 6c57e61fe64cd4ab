"""Recording pages: search (all the API's filters, keyset pages) and the detail page with the
purpose-first player, the per-channel waveform, the transcript, the control timeline, retention
and (administrators) the recording's audit trail."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from callvault.access import service as access
from callvault.api.deps import Caller, get_runtime
from callvault.audit import service as audit
from callvault.capture import control
from callvault.core.errors import CallvaultError, IntegrityError, InvalidInput, NotFound, StepUpRequired
from callvault.core.instants import instant_problem
from callvault.policy.decide import Action, Decision, allowed_purposes, offered_purposes, request_link
from callvault.quality import training
from callvault.recordings import playback
from callvault.recordings import service as recordings
from callvault.recordings.models import Recording
from callvault.recordings.schemas import RecordingFilters
from callvault.runtime import Runtime
from callvault.web import player, waveform
from callvault.web.common import abilities, form_expired, page_caller, render, same

router = APIRouter(include_in_schema=False)

FILTERS = ("extension", "agent", "team", "direction", "remote_number", "local_number", "started_from",
           "started_to", "case_ref")


def _time(name: str, value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput(f"{name.replace('_', ' ')}: not a date/time like 2026-11-01 or 2026-11-01T09:00+00:00") \
            from exc
    if parsed.tzinfo is None:  # a date typed into the form: read it as UTC, as the table shows
        parsed = parsed.replace(tzinfo=UTC)
    if problem := instant_problem(parsed):  # year 1 at +14:00 has no UTC: a 500 before (issue 24)
        raise InvalidInput(f"{name.replace('_', ' ')}: {problem}")
    return parsed


@router.get("/recordings", response_class=HTMLResponse)
def search_page(request: Request, caller: Caller = Depends(page_caller),
                runtime: Runtime = Depends(get_runtime)) -> Response:
    q = {k: v for k, v in request.query_params.items() if v}
    error = None
    rows: list[Any] = []
    next_cursor = None
    try:
        direction = q.get("direction")
        if direction not in (None, "inbound", "outbound"):
            raise InvalidInput("direction: choose inbound or outbound")
        filters = RecordingFilters(
            extension=q.get("extension"), agent=q.get("agent"), team=q.get("team"),
            direction=direction,
            remote_number=q.get("remote_number"), local_number=q.get("local_number"),
            started_from=_time("started_from", q.get("started_from")),
            started_to=_time("started_to", q.get("started_to")), case_ref=q.get("case_ref"))
        with runtime.db.unit_of_work() as session:
            found, next_cursor = recordings.search(session, policy=caller.policy, actor=caller.actor,
                                                   filters=filters, limit=50, cursor=q.get("cursor"),
                                                   default_region=runtime.settings.default_region)
            rows = list(found)
            for r in rows:
                session.expunge(r)
    except CallvaultError as exc:
        error = exc.message + (" " + "; ".join(f"{p.location}: {p.message}" for p in exc.problems)
                               if isinstance(exc, InvalidInput) and exc.problems else "")
    keep = {k: v for k, v in q.items() if k in FILTERS}
    return render(request, "recordings.html", {
        "caller": caller, "rows": rows, "next_cursor": next_cursor, "q": keep, "error": error,
        "paged": "cursor" in q, "now": runtime.clock.now()})


@router.get("/recordings/{recording_id}", response_class=HTMLResponse)
def recording_page(recording_id: str, request: Request, caller: Caller = Depends(page_caller),
                   runtime: Runtime = Depends(get_runtime)) -> Response:
    purpose = request.query_params.get("purpose") or None
    with runtime.db.unit_of_work() as session:
        row = recordings.get_visible(session, policy=caller.policy, actor=caller.actor, recording_id=recording_id,
                                     source_ip=caller.source_ip, clock=runtime.clock)
        if row is None:
            found = None
        else:
            events = control.timeline(session, recording=row)
            trail = (audit.entries_for_object(session, "recording", row.id, limit=100)
                     if abilities(caller)["admin"] else None)
            for item in (row, *events, *(trail or [])):
                session.expunge(item)
            found = row
    if found is None:  # out of scope looks like absent (the look was audited)
        return render(request, "not_found.html", {"caller": caller, "what": "recording"}, status_code=404)
    row = found
    # Offer only the purposes that can reach this call (a spot check of an unsampled call, a subject access
    # nobody asked for, would only be refused); a purpose named in the address is still decided and shown.
    with runtime.db.unit_of_work() as session:
        seen = recordings.content_facts(session, row, policy=caller.policy, purpose=None, now=runtime.clock.now())
        reach = {p: recordings.content_facts(session, row, policy=caller.policy, purpose=p, now=runtime.clock.now())
                 for p in allowed_purposes(caller.policy, caller.user.role)
                 if caller.policy.purposes[p].reaches != "any_in_scope"}
    purposes = [p for p in allowed_purposes(caller.policy, caller.user.role)
                if p in offered_purposes(caller.policy, caller.actor, reach.get(p, seen))]
    context: dict[str, Any] = {
        "caller": caller, "row": row, "purposes": purposes, "purpose": purpose, "events": events,
        "role_purposes": allowed_purposes(caller.policy, caller.user.role),
        "spans": player.control_spans(row, events), "trail": trail, "decision": None, "wave": None, "wave_note": None,
        "purpose_labels": {p: caller.policy.purposes[p].description for p in caller.policy.purposes},
        "needs_approval": {p for p, rule in caller.policy.purposes.items() if rule.approval.required},
        "offers": {}, "request_link": request_link,
        "stepped_up": stepped_up(runtime, caller), "step_up_failed": request.query_params.get("step_up") == "failed",
    }
    context["markers"] = player.markers_json([*context["spans"], *player.gap_spans(row)])
    if purpose:
        context.update(_content(runtime, caller, row, purpose, context["spans"]))
    return render(request, "recording.html", context, status_code=200 if not context["decision"] or
                  context["decision"].allowed else 403)


def _anonymised_copy_made(session: Session, row: Recording, decision: Decision) -> CallvaultError | None:
    """As the audio route: a purpose served only by an anonymised copy is refused (and recorded so) until
    a reviewer has made the call's copy; otherwise the page would offer a player that cannot play."""
    if decision.serves == "original":
        return None
    redacted = recordings.redacted_only(row.id, decision)
    if redacted is not None:
        return redacted
    return training.missing_copy(session, row.id, decision.clauses)


def _content(runtime: Runtime, caller: Caller, row: Any, purpose: str,
             spans: list[tuple[float, float, str]]) -> dict[str, Any]:
    """Decide (and audit) the purpose for the waveform, the same way the audio route decides playback."""
    with runtime.db.unit_of_work() as session:
        grants = access.grants_for_decision(session, user_id=caller.user.id, recording_id=row.id,
                                            now=runtime.clock.now())
        decision, fresh = recordings.authorize_content(
            session, policy=caller.policy, actor=caller.actor, action=Action.PLAY, recording_id=row.id,
            purpose=purpose, grants=grants, source_ip=caller.source_ip, details={"view": "waveform"},
            check=_anonymised_copy_made, clock=runtime.clock)
        # The same facts the content routes decide on (QA items, matched requests for purposes that reach
        # only those), so an offer here is what following its link will get.
        facts = recordings.content_facts(session, row, policy=caller.policy, purpose=purpose, now=runtime.clock.now())
    out: dict[str, Any] = {"decision": decision}
    if fresh is None or not decision.allowed:
        return out
    out["offers"] = player.offers(policy=caller.policy, actor=caller.actor, facts=facts, purpose=purpose,
                                  grants=grants, clock=runtime.clock)
    if decision.serves != "original":
        out["offers"]["download"] = None  # the anonymised copy is played in the page, never handed out here
    if decision.serves != "original":
        out["wave_note"] = ("This purpose is served only by the call's anonymised copy (the agent's side, personal "
                            "data toned out): the player plays it; no waveform is drawn.")
        return out
    if row.size_bytes > waveform.MAX_DECODE_BYTES:
        out["wave_note"] = "This call is too long to draw here; the player still streams it."
        return out
    try:
        with runtime.db.unit_of_work() as session:
            reader = playback.open_reader(session, store=runtime.store, keyring=runtime.keyring, row=fresh)
        raw = b"".join(playback.stream(reader, None, row.sha256))
        out["wave"] = waveform.svg(raw, duration=float(row.duration_seconds), controls=tuple(spans))
    except (NotFound, IntegrityError, InvalidInput) as exc:
        out["wave_note"] = f"The waveform cannot be drawn: {exc.message}"
    return out


def stepped_up(runtime: Runtime, caller: Caller) -> bool:
    """Whether this session confirmed a one-time code recently enough to download (else the page asks)."""
    from callvault.identity import service as identity
    from callvault.identity import step_up

    try:
        with runtime.db.read_only() as session:
            step_up.require(session, via=caller.via, credential_id=caller.credential_id, scopes=caller.scopes,
                            full_scope=identity.FULL_SCOPE, window_seconds=runtime.settings.step_up_seconds,
                            clock=runtime.clock)
    except StepUpRequired:
        return False
    return True


@router.post("/recordings/{recording_id}/step-up")
def step_up_then_download(recording_id: str, request: Request, code: Annotated[str, Form()] = "",
                          purpose: Annotated[str, Form()] = "", csrf_token: Annotated[str, Form()] = "",
                          caller: Caller = Depends(page_caller), runtime: Runtime = Depends(get_runtime)) -> Response:
    """The recording page's "confirm with your authenticator code" form (RELIABILITY 17): a right code
    marks this web session stepped up and goes on to the download, which decides and audits as always;
    a wrong one comes back to the page with the reason. The code is checked and counted like the API's."""
    from callvault.identity import step_up

    if not same(csrf_token, caller.csrf_token):
        return form_expired(request, caller)
    with runtime.db.unit_of_work() as session:
        ok = step_up.confirm(session, user=caller.user, via=caller.via, credential_id=caller.credential_id,
                             code=code, keyring=runtime.keyring, counters=runtime.counters,
                             source_ip=caller.source_ip, clock=runtime.clock)
    if not ok:
        query = urlencode({"purpose": purpose, "step_up": "failed"})
        return RedirectResponse(f"/recordings/{recording_id}?{query}", status_code=303)
    query = urlencode({"purpose": purpose, "download": "true"})
    return RedirectResponse(f"/api/v1/recordings/{recording_id}/audio?{query}", status_code=303)
