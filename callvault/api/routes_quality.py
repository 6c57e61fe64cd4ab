"""Quality review over HTTP (B8) and the training library (A6), under ``/api/v1/quality``.

Listening to a queued call is decided with the policy's review purpose (implied by the queue) and
audited; a clip is decided under the training purpose, which needs the recorded employee's consent.
Denials are committed before the refusal.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from callvault.api.deps import Caller, get_caller, get_runtime
from callvault.capture.audio import CONTENT_TYPES
from callvault.core.errors import AccessDenied, NotFound
from callvault.policy.decide import Action
from callvault.quality import review, sampling, training
from callvault.quality.models import QaSample, TrainingClip
from callvault.quality.schemas import (
    AcknowledgeCreate,
    CalibrationRead,
    ClipCreate,
    ClipRead,
    CommentCreate,
    CommentRead,
    DashboardRow,
    ReviewCreate,
    ReviewItemRead,
    ReviewRead,
    SampleCreate,
    SampleRead,
    SampleVerification,
)
from callvault.recordings import playback
from callvault.recordings import service as recordings
from callvault.runtime import Runtime

router = APIRouter(prefix="/quality", tags=["quality"])


def _sample_read(row: QaSample) -> SampleRead:
    return SampleRead.model_validate({**{c: getattr(row, c) for c in (
        "id", "policy_id", "policy_version", "period_start", "period_end", "trigger", "seed", "rule",
        "population_sha256", "selected", "excluded", "run_by", "created_at")}, "population_size": len(row.population)})


def _reviewer(caller: Caller) -> None:
    if not review.may_review(caller.policy, caller.user.role):
        raise AccessDenied(f"Role {caller.user.role!r} does not review sampled calls under this policy.",
                           clauses=("B8",))


@router.post("/samples", response_model=SampleRead, status_code=201)
def create_sample(body: SampleCreate, caller: Caller = Depends(get_caller),
                  runtime: Runtime = Depends(get_runtime)) -> SampleRead:
    """Draw the last complete period's random sample now and queue the chosen calls.

    ``first_day``/``last_day``, when given, must be that period's first and last day (422 otherwise: no window
    around chosen calls, no period still running, no older period); a period already sampled is a 409 naming
    its sample. Each refusal is audited (``sampling.draw_on_demand``)."""
    _reviewer(caller)
    row = sampling.draw_on_demand(runtime.db, policy=caller.policy, first=body.first_day, last=body.last_day,
                                  actor=caller.user.username, actor_role=caller.user.role, latest_only=True,
                                  clock=runtime.clock, source_ip=caller.source_ip)
    return _sample_read(row)


@router.get("/samples/{sample_id}", response_model=SampleRead)
def get_sample(sample_id: str, caller: Caller = Depends(get_caller),
               runtime: Runtime = Depends(get_runtime)) -> SampleRead:
    """A sample with its seed, rule and population digest (the population itself: ``/verify`` recomputes)."""
    _reviewer(caller)
    with runtime.db.unit_of_work() as session:
        return _sample_read(sampling.get_sample(session, sample_id))


@router.get("/samples/{sample_id}/verify", response_model=SampleVerification)
def verify_sample(sample_id: str, caller: Caller = Depends(get_caller),
                  runtime: Runtime = Depends(get_runtime)) -> SampleVerification:
    """Re-derive the selection from the recorded seed and population (an auditor's check)."""
    _reviewer(caller)
    with runtime.db.unit_of_work() as session:
        row = sampling.get_sample(session, sample_id)
        again = sampling.rederive(row)
        return SampleVerification(sample_id=row.id, matches=again == sorted(row.selected), rederived=again)


@router.get("/queue", response_model=list[ReviewItemRead])
def get_queue(state: Annotated[str, Query(pattern="^(open|reviewed|all)$")] = "open",
              caller: Caller = Depends(get_caller), runtime: Runtime = Depends(get_runtime)) -> list[ReviewItemRead]:
    """Sampled calls waiting for review (or reviewed), oldest first; never your own calls."""
    with runtime.db.unit_of_work() as session:
        items = review.queue(session, policy=caller.policy, actor=caller.actor, state=None if state == "all" else state)
        return [ReviewItemRead.model_validate(review.describe_item(i)) for i in items]


@router.get("/items/{item_id}/audio", response_class=StreamingResponse,
            responses={200: {"content": {"audio/wav": {}}}, 206: {"description": "partial content (Range)"}})
def get_item_audio(item_id: str, request: Request, caller: Caller = Depends(get_caller),
                   runtime: Runtime = Depends(get_runtime)) -> Response:
    """The queued call's audio, decided and audited under the review purpose (spot check). Honours ``Range``
    like the recording's own audio route, so the review page's player can seek without fetching the call."""
    range_header = request.headers.get("range")
    with runtime.db.unit_of_work() as session:
        decision, _, row = review.authorize_item(session, policy=caller.policy, actor=caller.actor, item_id=item_id,
                                                 source_ip=caller.source_ip, clock=runtime.clock,
                                                 range_header=range_header)
    if row is None:
        raise NotFound("no such recording")
    if not decision.allowed:
        refused = recordings.refusal(decision)
        if isinstance(refused, playback.RangeNotSatisfiable):
            return JSONResponse({"error": "range_not_satisfiable", "message": refused.message}, status_code=416,
                                headers={"Content-Range": f"bytes */{row.size_bytes}"})
        raise refused
    with runtime.db.unit_of_work() as session:
        reader = playback.open_reader(session, store=runtime.store, keyring=runtime.keyring, row=row)
    size = reader.plaintext_size
    byte_range = playback.parse_range(range_header, size)  # fits: checked against the catalog size above
    media_type = CONTENT_TYPES.get(row.audio_format, "application/octet-stream")
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "no-store"}
    if byte_range is None:
        headers["Content-Length"] = str(size)
        return StreamingResponse(playback.primed(playback.stream(reader, None, row.sha256)), media_type=media_type,
                                 headers=headers)
    headers["Content-Range"] = f"bytes {byte_range.start}-{byte_range.end}/{size}"
    headers["Content-Length"] = str(byte_range.length)
    return StreamingResponse(playback.primed(playback.stream(reader, byte_range, None)), status_code=206,
                             media_type=media_type, headers=headers)


def _may_write_about(runtime: Runtime, caller: Caller, item_id: str) -> None:
    """Decide (and audit, committed) the reviewer reaching a queued call before anything is written about it;
    raise the refusal when the policy says no."""
    with runtime.db.unit_of_work() as session:
        decision, _, _ = review.authorize_item(session, policy=caller.policy, actor=caller.actor, item_id=item_id,
                                               action=Action.VIEW_METADATA, source_ip=caller.source_ip,
                                               clock=runtime.clock)
    if not decision.allowed:
        raise AccessDenied(decision.reason, reason=decision.reason, clauses=decision.clauses)


@router.post("/items/{item_id}/reviews", response_model=ReviewRead, status_code=201)
def post_review(item_id: str, body: ReviewCreate, caller: Caller = Depends(get_caller),
                runtime: Runtime = Depends(get_runtime)) -> ReviewRead:
    """Score a queued call with the policy's scorecard; a second reviewer makes a calibration pair."""
    _may_write_about(runtime, caller, item_id)
    with runtime.db.unit_of_work() as session:
        item = review.get_item(session, policy=caller.policy, actor=caller.actor, item_id=item_id)
        row = review.submit(session, policy=caller.policy, actor=caller.actor, item=item, answers=body.answers,
                            coaching_note=body.coaching_note, share=body.share, clock=runtime.clock,
                            source_ip=caller.source_ip)
        return ReviewRead.model_validate(row)


@router.put("/items/{item_id}/reviews/mine", response_model=ReviewRead)
def put_my_review(item_id: str, body: ReviewCreate, caller: Caller = Depends(get_caller),
                  runtime: Runtime = Depends(get_runtime)) -> ReviewRead:
    """Change your own score of a queued call until its agent has acknowledged it (409 after); audited."""
    _may_write_about(runtime, caller, item_id)
    with runtime.db.unit_of_work() as session:
        item = review.get_item(session, policy=caller.policy, actor=caller.actor, item_id=item_id)
        row = review.revise(session, policy=caller.policy, actor=caller.actor, item=item, answers=body.answers,
                            coaching_note=body.coaching_note, share=body.share, clock=runtime.clock,
                            source_ip=caller.source_ip)
        return ReviewRead.model_validate(row)


def _may_read_about(runtime: Runtime, caller: Caller, item_id: str, reading: str) -> None:
    """Decide (and audit, committed) the reviewer reading what was written about a queued call as listening to
    it under the review purpose (``review.authorize_item``: coaching notes and comments are the call's content
    at one remove); raise the refusal when the policy says no."""
    with runtime.db.unit_of_work() as session:
        decision, _, row = review.authorize_item(session, policy=caller.policy, actor=caller.actor, item_id=item_id,
                                                 source_ip=caller.source_ip, clock=runtime.clock, reading=reading)
    if row is None:
        raise NotFound("no such recording")
    if not decision.allowed:
        raise recordings.refusal(decision)


@router.get("/items/{item_id}/reviews", response_model=list[ReviewRead])
def get_reviews(item_id: str, caller: Caller = Depends(get_caller),
                runtime: Runtime = Depends(get_runtime)) -> list[ReviewRead]:
    """Every reviewer's score and coaching note on a queued call: decided and audited as listening to it."""
    _may_read_about(runtime, caller, item_id, "reviews")
    with runtime.db.unit_of_work() as session:
        item = review.get_item(session, policy=caller.policy, actor=caller.actor, item_id=item_id)
        return [ReviewRead.model_validate(r) for r in review.reviews_of_item(session, item.id)]


@router.post("/items/{item_id}/comments", response_model=CommentRead, status_code=201)
def post_comment(item_id: str, body: CommentCreate, caller: Caller = Depends(get_caller),
                 runtime: Runtime = Depends(get_runtime)) -> CommentRead:
    """A comment pinned to a moment of the call (seconds from the start)."""
    with runtime.db.unit_of_work() as session:
        decision, item, row = review.authorize_item(
            session, policy=caller.policy, actor=caller.actor, item_id=item_id, action=Action.VIEW_METADATA,
            source_ip=caller.source_ip, clock=runtime.clock)
    if not decision.allowed or row is None:
        raise AccessDenied(decision.reason, reason=decision.reason, clauses=decision.clauses)
    with runtime.db.unit_of_work() as session:
        item = review.get_item(session, policy=caller.policy, actor=caller.actor, item_id=item_id)
        comment = review.add_comment(session, policy=caller.policy, actor=caller.actor, item=item,
                                     at_seconds=body.at_seconds, text=body.text, duration=row.duration_seconds,
                                     clock=runtime.clock)
        session.flush()
        return CommentRead.model_validate(comment)


@router.get("/items/{item_id}/comments", response_model=list[CommentRead])
def get_comments(item_id: str, caller: Caller = Depends(get_caller),
                 runtime: Runtime = Depends(get_runtime)) -> list[CommentRead]:
    """The reviewers' time-stamped comments on a queued call: decided and audited as listening to it."""
    _may_read_about(runtime, caller, item_id, "comments")
    with runtime.db.unit_of_work() as session:
        item = review.get_item(session, policy=caller.policy, actor=caller.actor, item_id=item_id)
        return [CommentRead.model_validate(c) for c in review.comments(session, item.id)]


@router.post("/reviews/{review_id}/share", response_model=ReviewRead)
def share_review(review_id: str, caller: Caller = Depends(get_caller),
                 runtime: Runtime = Depends(get_runtime)) -> ReviewRead:
    """Show your review (score and coaching note) to the agent."""
    with runtime.db.unit_of_work() as session:
        return ReviewRead.model_validate(review.share(session, actor=caller.actor, review_id=review_id,
                                                      clock=runtime.clock))


@router.get("/my-reviews", response_model=list[ReviewRead])
def my_reviews(caller: Caller = Depends(get_caller), runtime: Runtime = Depends(get_runtime)) -> list[ReviewRead]:
    """Reviews of your own calls that were shared with you."""
    with runtime.db.unit_of_work() as session:
        return [ReviewRead.model_validate(r) for r in review.my_reviews(session, actor=caller.actor)]


@router.get("/my-reviews/{review_id}/comments", response_model=list[CommentRead])
def my_review_comments(review_id: str, caller: Caller = Depends(get_caller),
                       runtime: Runtime = Depends(get_runtime)) -> list[CommentRead]:
    """The reviewers' time-stamped comments on a call of yours whose review was shared with you."""
    with runtime.db.unit_of_work() as session:
        return [CommentRead.model_validate(c) for c in review.my_review_comments(session, actor=caller.actor,
                                                                                 review_id=review_id)]


@router.post("/my-reviews/{review_id}/acknowledge", response_model=ReviewRead)
def acknowledge(review_id: str, body: AcknowledgeCreate, caller: Caller = Depends(get_caller),
                runtime: Runtime = Depends(get_runtime)) -> ReviewRead:
    """Confirm you have read a review of your call, optionally answering it."""
    with runtime.db.unit_of_work() as session:
        return ReviewRead.model_validate(review.acknowledge(session, actor=caller.actor, review_id=review_id,
                                                            response=body.response, clock=runtime.clock,
                                                            source_ip=caller.source_ip))


@router.get("/dashboard", response_model=list[DashboardRow])
def dashboard(by: Annotated[str, Query(pattern="^(agent|team)$")] = "agent", caller: Caller = Depends(get_caller),
              runtime: Runtime = Depends(get_runtime)) -> list[DashboardRow]:
    """Average score, passes and auto-fails per agent (or team) and month, over the calls you may see."""
    with runtime.db.unit_of_work() as session:
        rows = review.dashboard(session, policy=caller.policy, actor=caller.actor, by=by)
    return [DashboardRow.model_validate(r.__dict__) for r in rows]


@router.get("/calibration", response_model=list[CalibrationRead])
def calibration(caller: Caller = Depends(get_caller), runtime: Runtime = Depends(get_runtime)) -> list[CalibrationRead]:
    """Calls you may see scored by two or more reviewers, widest disagreement first."""
    with runtime.db.unit_of_work() as session:
        pairs = review.calibration(session, policy=caller.policy, actor=caller.actor)
        return [CalibrationRead(item_id=p.item.id, recording_id=p.item.recording_id, agent=p.item.agent,
                                spread=p.spread, scores={r.reviewer: r.score for r in p.reviews},
                                disagreements=p.disagreements) for p in pairs]


# ------------------------------------------------------------------------------------ training library
def promote_item(runtime: Runtime, caller: Caller, item_id: str, title: str) -> ClipRead:
    clip_id = training.promote(db=runtime.db, store=runtime.store, keyring=runtime.keyring, policy=caller.policy,
                               actor=caller.actor, item_id=item_id, title=title,
                               region=runtime.settings.default_region, source_ip=caller.source_ip, clock=runtime.clock)
    with runtime.db.unit_of_work() as session:
        clip = session.get(TrainingClip, clip_id)
        return ClipRead.model_validate(clip)


@router.post("/items/{item_id}/training-clip", response_model=ClipRead, status_code=201)
async def post_training_clip(item_id: str, body: ClipCreate, caller: Caller = Depends(get_caller),
                             runtime: Runtime = Depends(get_runtime)) -> ClipRead:
    """Promote a reviewed call to the training library as an anonymised clip (caller removed, personal data
    toned out); needs the recorded employee's consent to training (A6)."""
    return await run_in_threadpool(promote_item, runtime, caller, item_id, body.title)


@router.get("/training/clips", response_model=list[ClipRead])
def list_clips(caller: Caller = Depends(get_caller), runtime: Runtime = Depends(get_runtime)) -> list[ClipRead]:
    """The training library (for the roles the policy allows)."""
    with runtime.db.unit_of_work() as session:
        return [ClipRead.model_validate(c) for c in training.list_clips(session, policy=caller.policy,
                                                                        actor=caller.actor)]


@router.get("/training/clips/{clip_id}/audio", response_class=Response,
            responses={200: {"content": {"audio/wav": {}}}})
def clip_audio(clip_id: str, caller: Caller = Depends(get_caller), runtime: Runtime = Depends(get_runtime)) -> Response:
    """A clip's audio under the training purpose: decided (library role, employee consent) and audited."""
    with runtime.db.unit_of_work() as session:
        decision, clip = training.authorize_clip(session, policy=caller.policy, actor=caller.actor, clip_id=clip_id,
                                                 source_ip=caller.source_ip, clock=runtime.clock)
        if clip is not None:
            session.expunge(clip)
    if clip is None:
        raise NotFound("no such training clip")
    if not decision.allowed:
        raise AccessDenied(decision.reason, reason=decision.reason, clauses=decision.clauses)
    data = training.read_clip(runtime.keyring, runtime.store, clip)
    return Response(data, media_type="audio/wav", headers={"Cache-Control": "no-store",
                                                           "X-Content-Type-Options": "nosniff"})
