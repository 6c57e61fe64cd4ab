"""Recording pages: search (all the API's filters, keyset pages) and the detail page with the
purpose-first player, the per-channel waveform, the transcript, the control timeline, retention
and (administrators) the recording's audit trail."""

from __future__ import annotations

import csv
import io
from datetime import datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

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
from callvault.recordings.models import Recording, RecordingState
from callvault.recordings.schemas import RecordingFilters
from callvault.recordings.service import MAX_PAGE
from callvault.retention import extension
from callvault.runtime import Runtime
from callvault.transcription import search as transcript_search
from callvault.web import player, waveform
from callvault.web.common import (
    abilities,
    all_zones,
    denied,
    display_zone,
    form_expired,
    page_caller,
    policy_zones,
    render,
    same,
)
from callvault.web.emergency_pages import EMERGENCY_PURPOSE, emergency_banner

router = APIRouter(include_in_schema=False)

FILTERS = ("extension", "agent", "team", "direction", "remote_number", "local_number", "number", "started_from",
           "started_to", "case_ref", "words", "purpose", "state")
STATES = ("failed", "gaps")
"""The search page's capture filter (``?state=``, as ``RecordingFilters.state``); without it the list shows stored
and failed calls alike (``listed``), each flagged."""
EXPORT_LIMIT = 10_000
"""Rows in one CSV export of a search (newest first); the page says so when a search has more."""


def _time(name: str, value: str | None, zone: ZoneInfo, *, end_of_day: bool = False) -> datetime | None:
    """A typed date or date-time, read in the person's time zone.

    A bare date in "To" means the whole of that day (up to the next local midnight): people pick the
    last day they want, not the first day they don't."""
    if not value:
        return None
    label = "From" if name == "started_from" else "To"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput(f"{label}: “{value[:40]}” is not a date like 2026-11-01 (or a date and time like "
                           "2026-11-01T09:00); use the date picker") from exc
    if parsed.tzinfo is None:
        if end_of_day and len(value.strip()) == 10:
            parsed = datetime.combine(parsed.date() + timedelta(days=1), time(0))
        parsed = parsed.replace(tzinfo=zone)
    if problem := instant_problem(parsed):  # year 1 at +14:00 has no UTC: a 500 before (issue 24)
        raise InvalidInput(f"{label}: {problem}")
    return parsed


class _Search:
    """One run of the search form: the filters as typed, the service's answer, and what to tell the person."""

    def __init__(self, request: Request, caller: Caller, runtime: Runtime) -> None:
        self.q = {k: v.strip() for k, v in request.query_params.items() if v and v.strip()}
        self.zone = display_zone(request, caller)
        self.error: str | None = None
        self.swap_link: str | None = None
        self.agents: list[str] = []
        self.runtime, self.caller = runtime, caller
        self.filters: RecordingFilters | None = None
        try:
            self.filters = self._filters()
        except CallvaultError as exc:
            self.error = _message(exc)

    def _filters(self) -> RecordingFilters:
        q = self.q
        direction = q.get("direction")
        if direction not in (None, "inbound", "outbound"):
            raise InvalidInput("Direction: choose inbound or outbound")
        chosen = q.get("state")
        if chosen and chosen not in STATES:
            raise InvalidInput("Capture: choose failed, or incomplete (stretches without media)")
        state = chosen or "listed"
        start = _time("started_from", q.get("started_from"), self.zone)
        end = _time("started_to", q.get("started_to"), self.zone, end_of_day=True)
        if start and end and start >= end:
            swapped = {**{k: v for k, v in q.items() if k in FILTERS or k == "tz"},
                       "started_from": q["started_to"], "started_to": q["started_from"]}
            self.swap_link = "/recordings?" + urlencode(swapped)
            raise InvalidInput(f"From ({q['started_from']}) is after To ({q['started_to']}), so no call can match: "
                               "From is the earliest start you want, To the latest.")
        agent = q.get("agent", "").lower() or None
        with self.runtime.db.read_only() as session:
            self.agents = recordings.agents_in_scope(session, policy=self.caller.policy, actor=self.caller.actor)
        exact = agent in self.agents  # picked from the list: that agent only; typed: any name containing it
        return RecordingFilters(
            extension=q.get("extension"), agent=agent if exact else None,
            agent_contains=None if exact else agent, team=q.get("team"), direction=direction,
            remote_number=q.get("remote_number"), local_number=q.get("local_number"),
            number_contains=q.get("number"), started_from=start, started_to=end, case_ref=q.get("case_ref"),
            state=state)

    def words_hits(self, source_ip: str | None) -> tuple[str, ...] | None:
        """The recordings whose transcript holds every word typed (decided for the purpose and audited by
        the same service as ``GET /api/v1/transcripts/search``), or None when no words were typed.

        In a unit of work of its own, so that a refusal (a purpose served only a masked copy may not search
        what was said) is on record before the page shows it."""
        words = self.q.get("words")
        if not words:
            return None
        purpose = self.q.get("purpose")
        if not purpose:
            raise InvalidInput("Words said: choose why you are searching what was said (the purpose); "
                               "a transcript is recording content, like listening")
        if purpose not in allowed_purposes(self.caller.policy, self.caller.user.role):
            raise InvalidInput(f"Purpose: your role may not use {purpose}")
        key = transcript_search.load_search_key(self.runtime.settings.key_dir, self.runtime.settings.env)
        with self.runtime.db.unit_of_work() as session:
            answer = transcript_search.allowed_hits(
                session, key=key, policy=self.caller.policy, actor=self.caller.actor, query=words[:200],
                purpose=purpose, source_ip=source_ip, limit=MAX_PAGE, clock=self.runtime.clock)
            ids = tuple(r.id for r in answer.hits)
        if answer.refusal is not None:
            raise answer.refusal
        return ids

    def run(self, *, limit: int, cursor: str | None, pages: int = 1) -> tuple[list[Any], str | None]:
        """Up to ``pages`` service pages from ``cursor`` (the CSV export reads several), rows detached."""
        if self.filters is None:
            return [], None
        rows: list[Any] = []
        next_cursor = cursor
        try:
            ids = self.words_hits(self.caller.source_ip)
            with self.runtime.db.unit_of_work() as session:
                filters = self.filters if ids is None else self.filters.model_copy(update={"recording_ids": ids})
                for _ in range(pages):
                    found, next_cursor = recordings.search(
                        session, policy=self.caller.policy, actor=self.caller.actor, filters=filters, limit=limit,
                        cursor=next_cursor, default_region=self.runtime.settings.default_region)
                    rows.extend(found)
                    if next_cursor is None:
                        break
                for r in rows:
                    session.expunge(r)
        except CallvaultError as exc:
            self.error = _message(exc)
            return [], None
        return rows, next_cursor

    @property
    def kept(self) -> dict[str, str]:
        return {k: v for k, v in self.q.items() if k in FILTERS}


def _message(exc: CallvaultError) -> str:
    text = exc.message
    if isinstance(exc, InvalidInput) and exc.problems:
        text = "; ".join(f"{_FIELD_LABELS.get(p.location, p.location)}: {p.message}" for p in exc.problems)
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


_FIELD_LABELS = {"remote_number": "Remote number", "local_number": "Local number", "number": "Number"}


@router.get("/recordings", response_class=HTMLResponse)
def search_page(request: Request, caller: Caller = Depends(page_caller),
                runtime: Runtime = Depends(get_runtime)) -> Response:
    search = _Search(request, caller, runtime)
    rows, next_cursor = search.run(limit=50, cursor=search.q.get("cursor"))
    response = render(request, "recordings.html", {
        "caller": caller, "rows": rows, "next_cursor": next_cursor, "q": search.kept, "error": search.error,
        "swap_link": search.swap_link, "paged": "cursor" in search.q, "now": runtime.clock.now(),
        "zone": search.zone, "zones": policy_zones(caller.policy), "all_zones": all_zones(),
        "agents": search.agents, "purposes": allowed_purposes(caller.policy, caller.user.role),
        "purpose_labels": {p: r.description for p, r in caller.policy.purposes.items()}},
        status_code=422 if search.error else 200)
    return response


def _cell(value: object) -> str:
    """A CSV cell a spreadsheet will not run: text starting with = + - @ (a formula) gets a leading '.
    E.164 numbers (+ and digits only) stay as they are: a spreadsheet reads them as numbers, never code."""
    text = "" if value is None else str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not (text[:1] == "+" and text[1:].isdigit()):
        return "'" + text
    return text


@router.get("/recordings.csv")
def export_search(request: Request, caller: Caller = Depends(page_caller),
                  runtime: Runtime = Depends(get_runtime)) -> Response:
    """The search's result list as CSV: metadata only (never audio or transcript text), newest first, at
    most ``EXPORT_LIMIT`` rows. Audited (``recordings.list_exported``: the filters used and the row count)
    because a list of who called whom, when, is personal data leaving the system."""
    search = _Search(request, caller, runtime)
    rows, more = search.run(limit=MAX_PAGE, cursor=None, pages=EXPORT_LIMIT // MAX_PAGE)
    if search.error:
        return denied(request, caller, search.error, "Fix the search and export again.", title="Cannot export",
                      status_code=422)
    zone = search.zone
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "call_id", f"started ({zone.key})", "started_utc", "direction", "extension", "agent", "team",
                     "remote_number", "local_number", "duration_seconds", "consent_state", "quarantined", "case_ref",
                     "destroy_after", "on_hold", "capture"])
    for r in rows:
        writer.writerow([_cell(v) for v in (
            r.id, r.call_id, r.started_at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S"), r.started_at.isoformat(),
            r.direction, r.extension, r.agent, r.team, r.remote_number, r.local_number, f"{r.duration_seconds:.1f}",
            r.consent_state, "yes" if r.quarantined else "no", r.case_ref,
            r.destroy_after.isoformat() if r.destroy_after else "", "yes" if r.on_hold else "no",
            player.capture_summary(r))])
    with runtime.db.unit_of_work() as session:
        audit.append(session, audit.AuditEvent(
            actor=caller.user.username, actor_role=caller.user.role, action="recordings.list_exported",
            decision="allow", source_ip=caller.source_ip, clauses=("A10",),
            details={"filters": sorted(search.kept), "rows": len(rows), "truncated": more is not None,
                     "format": "csv"}), clock=runtime.clock)
    stamp = runtime.clock.now().astimezone(zone).strftime("%Y%m%d-%H%M")
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="recordings-{stamp}.csv"', "Cache-Control": "no-store"})


@router.get("/recordings/{recording_id}", response_class=HTMLResponse)
def recording_page(recording_id: str, request: Request, caller: Caller = Depends(page_caller),
                   runtime: Runtime = Depends(get_runtime)) -> Response:
    purpose = request.query_params.get("purpose") or None
    with runtime.db.unit_of_work() as session:
        row = recordings.get_visible(session, policy=caller.policy, actor=caller.actor, recording_id=recording_id,
                                     source_ip=caller.source_ip, clock=runtime.clock, states=recordings.WITH_FAILED)
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
    failed = row.state == RecordingState.FAILED
    purposes = [] if failed else _reaching_purposes(runtime, caller, row)
    labels = {p: caller.policy.purposes[p].description for p in caller.policy.purposes}
    if emergency_banner(request, caller) is not None and not failed:
        # Under a declaration the purpose is still asked (and audited); one more choice names the emergency.
        purposes.append(EMERGENCY_PURPOSE)
        labels[EMERGENCY_PURPOSE] = "the emergency you declared (reviewed afterwards)"
    context: dict[str, Any] = {
        "caller": caller, "row": row, "purposes": purposes, "purpose": purpose, "events": events,
        "role_purposes": allowed_purposes(caller.policy, caller.user.role),
        "spans": player.control_spans(row, events), "trail": trail, "decision": None, "wave": None, "wave_note": None,
        "purpose_labels": labels,
        "extension": extension.bounds(caller.policy, row)
        if extension.may_extend(caller.policy, caller.user.role) and not failed else None,
        "failed": failed, "gaps": player.gap_lines(row),
        "extended": request.query_params.get("done") == "extended",
        "extension_error": (request.query_params.get("extension_error") or "")[:500] or None,
        "needs_approval": {p for p, rule in caller.policy.purposes.items() if rule.approval.required},
        "offers": {}, "request_link": request_link,
        "stepped_up": stepped_up(runtime, caller), "step_up_failed": request.query_params.get("step_up") == "failed",
    }
    context["markers"] = player.markers_json([*context["spans"], *player.gap_spans(row)])
    if purpose and not failed:  # a failed capture kept no audio: nothing to decide, nothing to play
        context.update(_content(runtime, caller, row, purpose, context["spans"]))
    return render(request, "recording.html", context, status_code=200 if not context["decision"] or
                  context["decision"].allowed else 403)


def _reaching_purposes(runtime: Runtime, caller: Caller, row: Recording) -> list[str]:
    """The purposes to offer: only those that can reach this call (a spot check of an unsampled call, a subject
    access nobody asked for, would only be refused); a purpose named in the address is still decided and shown."""
    with runtime.db.unit_of_work() as session:
        seen = recordings.content_facts(session, row, policy=caller.policy, purpose=None, now=runtime.clock.now())
        reach = {p: recordings.content_facts(session, row, policy=caller.policy, purpose=p, now=runtime.clock.now())
                 for p in allowed_purposes(caller.policy, caller.user.role)
                 if caller.policy.purposes[p].reaches != "any_in_scope"}
    return [p for p in allowed_purposes(caller.policy, caller.user.role)
            if p in offered_purposes(caller.policy, caller.actor, reach.get(p, seen))]


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
