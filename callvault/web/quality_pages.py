"""Quality review pages (B8) and the training library (A6): the review queue, a call's scoring page
(player, scorecard, time-stamped comments, coaching note), the agent's own scores with acknowledgement,
the dashboard with calibration, and the library. Thin: every decision is the quality services'."""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from callvault.access import service as access
from callvault.api.deps import Caller, get_runtime
from callvault.capture import control
from callvault.core.errors import AccessDenied, CallvaultError, Conflict, InvalidInput, NotFound
from callvault.policy.decide import Action, request_link
from callvault.quality import review, sampling, training
from callvault.recordings import service as recordings
from callvault.recordings.models import Recording
from callvault.runtime import Runtime
from callvault.web import player
from callvault.web.common import denied, form_expired, page_caller, render, same
from callvault.web.recording_pages import stepped_up

router = APIRouter(include_in_schema=False)


def _not_reviewer(request: Request, caller: Caller) -> Response:
    roles = caller.policy.quality_review.reviewer_roles if caller.policy.quality_review else ()
    return denied(request, caller, f"Role {caller.user.role.replace('_', ' ')} does not review sampled calls.",
                  f"The policy gives the review queue to: {', '.join(roles) or 'nobody'}. Your own scores are under "
                  "My scores.", title="Not a reviewer", clauses=("B8",))


@router.get("/quality", response_class=HTMLResponse)
def queue_page(request: Request, caller: Caller = Depends(page_caller),
               runtime: Runtime = Depends(get_runtime)) -> Response:
    if not review.may_review(caller.policy, caller.user.role):
        return RedirectResponse("/quality/mine", status_code=303)
    state = request.query_params.get("state") or "open"
    if state not in ("open", "reviewed", "all"):
        state = "open"
    with runtime.db.unit_of_work() as session:
        items = [review.describe_item(i) for i in review.queue(
            session, policy=caller.policy, actor=caller.actor, state=None if state == "all" else state)]
        samples = [{"id": s.id, "start": s.period_start, "end": s.period_end, "trigger": s.trigger,
                    "population": len(s.population), "selected": len(s.selected), "excluded": s.excluded}
                   for s in sampling.recent_samples(session, limit=5)]
    return render(request, "quality_queue.html", {"caller": caller, "items": items, "state": state,
                                                  "samples": samples, "flash": request.query_params.get("done")})


@router.post("/quality/sample", response_class=HTMLResponse)
def sample_now(request: Request, csrf_token: Annotated[str, Form()] = "", caller: Caller = Depends(page_caller),
               runtime: Runtime = Depends(get_runtime)) -> Response:
    if not same(csrf_token, caller.csrf_token):
        return form_expired(request, caller)
    if not review.may_review(caller.policy, caller.user.role):
        return _not_reviewer(request, caller)
    try:
        row = sampling.draw_on_demand(runtime.db, policy=caller.policy, first=None, last=None,
                                      actor=caller.user.username, actor_role=caller.user.role, clock=runtime.clock,
                                      source_ip=caller.source_ip)
    except sampling.PeriodAlreadySampled as drawn:  # a period is sampled once: say which sample has it
        return RedirectResponse(f"/quality?done=already-{drawn.sample_id}", status_code=303)
    return RedirectResponse(f"/quality?done=sampled-{len(row.selected)}", status_code=303)


def _item_context(runtime: Runtime, caller: Caller, item_id: str) -> dict[str, Any]:
    qr = sampling.rules_of(caller.policy)
    with runtime.db.unit_of_work() as session:
        item = review.get_item(session, policy=caller.policy, actor=caller.actor, item_id=item_id)
        rec = session.get(Recording, item.recording_id)
        reviews = review.reviews_of_item(session, item.id)
        mine = review.my_review_of(session, actor=caller.actor, item_id=item.id)
        previous, following = review.neighbours(session, policy=caller.policy, actor=caller.actor, item_id=item.id)
        ctx: dict[str, Any] = {
            "item": review.describe_item(item), "duration": rec.duration_seconds if rec else 0.0,
            "channels": rec.channels if rec else 1,
            "comments": [{"at": c.at_seconds, "reviewer": c.reviewer, "text": c.text}
                         for c in review.comments(session, item.id)],
            "reviews": [{"reviewer": r.reviewer, "score": r.score, "passed": r.passed, "auto_failed": r.auto_failed,
                         "shared": r.shared_at is not None, "note": r.coaching_note} for r in reviews],
            "mine": mine is not None,
            "my_review": None if mine is None else {
                "answers": dict(mine.answers), "note": mine.coaching_note, "shared": mine.shared_at is not None,
                "acknowledged_at": mine.acknowledged_at, "response": mine.agent_response},
            "previous": previous, "next": following, "markers": "[]", "offers": {}}
        if rec is not None:
            # The player's markers and offers, as on the recording page: decide()'s unaudited answers for the
            # review purpose; the audio and transcript themselves are decided and audited when fetched.
            spans = player.control_spans(rec, control.timeline(session, recording=rec))
            ctx["markers"] = player.markers_json([*spans, *player.gap_spans(rec)])
            grants = access.grants_for_decision(session, user_id=caller.user.id, recording_id=rec.id,
                                                now=runtime.clock.now())
            facts = recordings.content_facts(session, rec, policy=caller.policy, purpose=qr.purpose,
                                             now=runtime.clock.now())
            ctx["offers"] = player.offers(policy=caller.policy, actor=caller.actor, facts=facts, purpose=qr.purpose,
                                          grants=grants, clock=runtime.clock)
    return {"caller": caller, "card": qr.scorecard, "purpose": qr.purpose,
            "library": training.may_browse(caller.policy, caller.user.role), "request_link": request_link,
            "stepped_up": stepped_up(runtime, caller), **ctx}


def _start(request: Request) -> float | None:
    """Where the player starts (``?t=``, set after adding a comment so the reviewer goes on listening from there)."""
    try:
        at = float(request.query_params.get("t", ""))
    except ValueError:
        return None
    return at if math.isfinite(at) and at > 0 else None


@router.get("/quality/items/{item_id}", response_class=HTMLResponse)
def item_page(item_id: str, request: Request, caller: Caller = Depends(page_caller),
              runtime: Runtime = Depends(get_runtime)) -> Response:
    if not review.may_review(caller.policy, caller.user.role):
        return _not_reviewer(request, caller)
    try:
        refused = _read_refusal(request, runtime, caller, item_id)
        if refused is not None:
            return refused
        ctx = _item_context(runtime, caller, item_id)
    except NotFound:
        return render(request, "not_found.html", {"caller": caller, "what": "review item"}, status_code=404)
    answers = ctx["my_review"]["answers"] if ctx["my_review"] else {}
    note = ctx["my_review"]["note"] if ctx["my_review"] else ""
    return render(request, "quality_item.html", {**ctx, "errors": [], "answers": answers, "note": note,
                                                 "start": _start(request), "step_up_failed": False,
                                                 "flash": request.query_params.get("done")})


@router.post("/quality/items/{item_id}/review", response_class=HTMLResponse)
async def submit_review(item_id: str, request: Request, caller: Caller = Depends(page_caller),
                        runtime: Runtime = Depends(get_runtime)) -> Response:
    form = await request.form()
    if not same(str(form.get("csrf_token", "")), caller.csrf_token):
        return form_expired(request, caller)
    if not review.may_review(caller.policy, caller.user.role):
        return _not_reviewer(request, caller)
    answers = {k[2:]: str(v) for k, v in form.items() if k.startswith("q_")}
    note, share = str(form.get("coaching_note", "")), form.get("share") == "on"
    revised = [False]

    def work() -> list[str] | Response:
        try:
            refused = _refusal(request, runtime, caller, item_id)
            if refused is not None:
                return refused
            with runtime.db.unit_of_work() as session:
                item = review.get_item(session, policy=caller.policy, actor=caller.actor, item_id=item_id)
                # One form: the first score, then changes to it until the agent acknowledges (the service refuses
                # after that, and says so).
                change = review.revise if review.my_review_of(session, actor=caller.actor, item_id=item.id) \
                    else review.submit
                change(session, policy=caller.policy, actor=caller.actor, item=item, answers=answers,
                       coaching_note=note, share=share, clock=runtime.clock, source_ip=caller.source_ip)
                revised[0] = change is review.revise
        except InvalidInput as exc:
            return [f"{p.location}: {p.message}" for p in exc.problems] or [exc.message]
        except (Conflict, NotFound) as exc:
            return [exc.message]
        return []

    result = await run_in_threadpool(work)
    if isinstance(result, Response):
        return result
    if result:
        refused = await run_in_threadpool(_read_refusal, request, runtime, caller, item_id)
        if refused is not None:
            return refused
        ctx = await run_in_threadpool(_item_context, runtime, caller, item_id)
        return render(request, "quality_item.html", {**ctx, "errors": result, "answers": answers, "note": note,
                                                     "start": None, "step_up_failed": False, "flash": None},
                      status_code=422)
    return RedirectResponse(f"/quality/items/{item_id}?done={'revised' if revised[0] else 'scored'}", status_code=303)


def _refusal(request: Request, runtime: Runtime, caller: Caller, item_id: str) -> Response | None:
    """As the API: the policy engine decides (and the audit log records) the reviewer reaching the call
    under the review purpose before anything is written about it; the refusal page, or None."""
    with runtime.db.unit_of_work() as session:
        decision, _, _ = review.authorize_item(
            session, policy=caller.policy, actor=caller.actor, item_id=item_id, action=Action.VIEW_METADATA,
            source_ip=caller.source_ip, clock=runtime.clock)
    return None if decision.allowed else denied(request, caller, decision.reason, clauses=decision.clauses)


def _read_refusal(request: Request, runtime: Runtime, caller: Caller, item_id: str) -> Response | None:
    """As the API's reviews and comments: the page shows every coaching note and time-stamped comment on the
    call, so it is decided and audited as listening to it under the review purpose (``review.authorize_item``)
    before they are read; the refusal page, or None. An item the reviewer may not see raises NotFound."""
    with runtime.db.unit_of_work() as session:
        decision, _, row = review.authorize_item(session, policy=caller.policy, actor=caller.actor, item_id=item_id,
                                                 source_ip=caller.source_ip, clock=runtime.clock,
                                                 reading="item page")
    if decision.allowed and row is not None:
        return None
    refused = recordings.refusal(decision) if row is not None else NotFound("no such recording")
    if isinstance(refused, NotFound):
        raise refused
    return denied(request, caller, refused.message, clauses=tuple(getattr(refused, "clauses", ())))


@router.post("/quality/items/{item_id}/comment", response_class=HTMLResponse)
def add_comment(item_id: str, request: Request, at_seconds: Annotated[str, Form()] = "",
                text: Annotated[str, Form()] = "", csrf_token: Annotated[str, Form()] = "",
                caller: Caller = Depends(page_caller), runtime: Runtime = Depends(get_runtime)) -> Response:
    if not same(csrf_token, caller.csrf_token):
        return form_expired(request, caller)
    if not review.may_review(caller.policy, caller.user.role):
        return _not_reviewer(request, caller)
    try:
        seconds = review.parse_offset(at_seconds)
    except InvalidInput:
        return denied(request, caller, f"{at_seconds!r} is not a moment of the call.", "Go back and give it in "
                      "seconds (12.5) or minutes and seconds (1:05), as the player shows it.",
                      title="Comment not added", status_code=422)
    try:
        refused = _refusal(request, runtime, caller, item_id)
        if refused is not None:
            return refused
        with runtime.db.unit_of_work() as session:
            item = review.get_item(session, policy=caller.policy, actor=caller.actor, item_id=item_id)
            rec = session.get(Recording, item.recording_id)
            review.add_comment(session, policy=caller.policy, actor=caller.actor, item=item, at_seconds=seconds,
                               text=text, duration=rec.duration_seconds if rec else 0.0, clock=runtime.clock)
    except (InvalidInput, NotFound) as exc:
        detail = "; ".join(str(p) for p in exc.problems) if isinstance(exc, InvalidInput) and exc.problems else ""
        return denied(request, caller, f"{exc.message} {detail}".strip(), "Go back and correct the comment.",
                      title="Comment not added", status_code=422)
    return RedirectResponse(f"/quality/items/{item_id}?done=commented&t={seconds:g}", status_code=303)


@router.post("/quality/items/{item_id}/promote", response_class=HTMLResponse)
def promote(item_id: str, request: Request, title: Annotated[str, Form()] = "", csrf_token: Annotated[str, Form()] = "",
            caller: Caller = Depends(page_caller), runtime: Runtime = Depends(get_runtime)) -> Response:
    if not same(csrf_token, caller.csrf_token):
        return form_expired(request, caller)
    try:
        training.promote(db=runtime.db, store=runtime.store, keyring=runtime.keyring, policy=caller.policy,
                         actor=caller.actor, item_id=item_id, title=title, region=runtime.settings.default_region,
                         source_ip=caller.source_ip, clock=runtime.clock)
    except AccessDenied as exc:
        return denied(request, caller, exc.message, "Training use needs the recorded employee's consent on file "
                      "(they give it under their account); ask them, or choose another call.", clauses=exc.clauses)
    except CallvaultError as exc:
        return denied(request, caller, exc.message, "Go back to the call.", title="Not promoted", status_code=409)
    return RedirectResponse("/quality/training?done=promoted", status_code=303)


@router.get("/quality/mine", response_class=HTMLResponse)
def my_scores(request: Request, caller: Caller = Depends(page_caller),
              runtime: Runtime = Depends(get_runtime)) -> Response:
    with runtime.db.unit_of_work() as session:
        rows = review.my_reviews(session, actor=caller.actor)
        for r in rows:
            session.expunge(r)
        comments = {r.item_id: [{"at": c.at_seconds, "text": c.text} for c in review.comments(session, r.item_id)]
                    for r in rows}
        calls = review.recordings_of_reviews(session, rows)
    return render(request, "quality_mine.html", {"caller": caller, "reviews": rows, "comments": comments,
                                                 "calls": calls,
                                                 "flash": request.query_params.get("done")})


@router.post("/quality/mine/{review_id}/acknowledge", response_class=HTMLResponse)
def acknowledge(review_id: str, request: Request, response: Annotated[str, Form()] = "",
                csrf_token: Annotated[str, Form()] = "", caller: Caller = Depends(page_caller),
                runtime: Runtime = Depends(get_runtime)) -> Response:
    if not same(csrf_token, caller.csrf_token):
        return form_expired(request, caller)
    try:
        with runtime.db.unit_of_work() as session:
            review.acknowledge(session, actor=caller.actor, review_id=review_id, response=response,
                               clock=runtime.clock, source_ip=caller.source_ip)
    except (NotFound, Conflict, InvalidInput) as exc:
        return denied(request, caller, exc.message, "Reload My scores.", title="Not acknowledged", status_code=409)
    return RedirectResponse("/quality/mine?done=acknowledged", status_code=303)


@router.get("/quality/dashboard", response_class=HTMLResponse)
def dashboard(request: Request, caller: Caller = Depends(page_caller),
              runtime: Runtime = Depends(get_runtime)) -> Response:
    if not review.may_review(caller.policy, caller.user.role):
        return _not_reviewer(request, caller)
    with runtime.db.unit_of_work() as session:
        agents = review.dashboard(session, policy=caller.policy, actor=caller.actor, by="agent")
        teams = review.dashboard(session, policy=caller.policy, actor=caller.actor, by="team")
        pairs = [{"item": p.item.id, "agent": p.item.agent, "spread": p.spread, "disagreements": p.disagreements,
                  "scores": [(r.reviewer, r.score) for r in p.reviews]}
                 for p in review.calibration(session, policy=caller.policy, actor=caller.actor)]
    return render(request, "quality_dashboard.html", {"caller": caller, "agents": agents, "teams": teams,
                                                      "pairs": pairs})


@router.get("/quality/training", response_class=HTMLResponse)
def library(request: Request, caller: Caller = Depends(page_caller),
            runtime: Runtime = Depends(get_runtime)) -> Response:
    if not training.may_browse(caller.policy, caller.user.role):
        return denied(request, caller, "Your role may not browse the training library under this policy.",
                      title="Not allowed", clauses=("A6",))
    with runtime.db.unit_of_work() as session:
        clips = training.list_clips(session, policy=caller.policy, actor=caller.actor)
        for c in clips:
            session.expunge(c)
    return render(request, "quality_training.html", {"caller": caller, "clips": clips,
                                                     "flash": request.query_params.get("done")})
