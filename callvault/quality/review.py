"""The review queue (B8): who may review, scoring, time-stamped comments, coaching notes the agent
sees and acknowledges, and the dashboard and calibration views.

Listening to a queued call is content access: ``authorize_item`` asks the policy engine with the
review purpose (``quality_review.purpose``, spot check in both example policies), implied by the queue
and written to the audit log like any other retrieval. A reviewer never reviews their own calls.
Services never commit; the request, job or command does.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from callvault.audit import service as audit
from callvault.core.clock import Clock, system_clock
from callvault.core.errors import AccessDenied, CallvaultError, Conflict, FieldProblem, InvalidInput, NotFound
from callvault.core.ids import new_id
from callvault.policy.decide import CONTENT_ACTIONS, Action, Actor, Decision, QualityItemFacts, decide
from callvault.policy.schema import PolicyDocument, QualityReviewRules
from callvault.quality import scorecards
from callvault.quality.models import QaComment, QaReview, QaReviewItem, ReviewItemState
from callvault.quality.sampling import rules_of
from callvault.recordings import playback
from callvault.recordings import service as recordings
from callvault.recordings.models import Recording

MAX_COMMENT = 2000
MAX_NOTE = 5000


def may_review(policy: PolicyDocument, role: str) -> bool:
    return policy.quality_review is not None and role in policy.quality_review.reviewer_roles


def _reviewer_rules(policy: PolicyDocument, actor: Actor) -> QualityReviewRules:
    qr = rules_of(policy)
    if actor.role not in qr.reviewer_roles:
        raise AccessDenied(f"Role {actor.role!r} does not review sampled calls; the policy gives the review queue "
                           f"to: {', '.join(qr.reviewer_roles)}.", clauses=("B8", "A9"))
    return qr


def _visible(session: Session, policy: PolicyDocument, actor: Actor, item: QaReviewItem) -> bool:
    """Whether the reviewer may see the call's details at all: within their role's scope, not quarantined
    (a policy may give reviewing to a team-scoped role; the queue must not show more than ``decide`` would)."""
    return _may_see_recording(session, policy, actor, item.recording_id)


def _may_see_recording(session: Session, policy: PolicyDocument, actor: Actor, recording_id: str) -> bool:
    """``_visible`` by the recording's id (the dashboard reads reviews, which name their item's recording)."""
    row = session.get(Recording, recording_id)
    if row is None:
        return False
    return decide(policy=policy, actor=actor, action=Action.VIEW_METADATA, recording=recordings.facts(row),
                  purpose=None).allowed


def queue(session: Session, *, policy: PolicyDocument, actor: Actor, state: str | None = "open",
          limit: int = 200) -> list[QaReviewItem]:
    """Queued calls for a reviewer, oldest first; never the reviewer's own calls, nor calls outside
    their scope or quarantined since they were sampled."""
    _reviewer_rules(policy, actor)
    query = select(QaReviewItem).where(QaReviewItem.agent != actor.username)
    if state:
        query = query.where(QaReviewItem.state == state)
    items = session.scalars(query.order_by(QaReviewItem.created_at, QaReviewItem.id).limit(limit))
    return [i for i in items if _visible(session, policy, actor, i)]


def get_item(session: Session, *, policy: PolicyDocument, actor: Actor, item_id: str) -> QaReviewItem:
    """A queued call, for a reviewer who is not its agent and may see it (anyone else: NotFound)."""
    _reviewer_rules(policy, actor)
    item = session.get(QaReviewItem, item_id)
    if item is None or item.agent == actor.username or not _visible(session, policy, actor, item):
        raise NotFound(f"no review item {item_id}")
    return item


def authorize_item(
    session: Session, *, policy: PolicyDocument, actor: Actor, item_id: str, action: Action = Action.PLAY,
    source_ip: str | None = None, clock: Clock = system_clock, range_header: str | None = None,
    reading: str | None = None,
) -> tuple[Decision, QaReviewItem, Recording | None]:
    """Decide and audit a reviewer reaching a queued call under the review purpose (the caller commits,
    then refuses with ``recordings.refusal`` when the decision is no). Listening needs the original: a
    review purpose that serves only an anonymised copy is refused, and recorded so.

    ``reading``: what the reviewer reads about the call instead of hearing it (``reviews``, ``comments``,
    ``item page``), named in the entry's details. Why decided as listening (``play``): coaching notes and
    time-stamped comments say what was said at which moment, so they are the call's content at one remove;
    whoever may not hear the call under the review purpose may not read them either, and each read is on
    record like a listen (the policy always lets its review purpose ``play``).

    ``range_header``: the player's ``Range`` (seeking). It is checked against the call's size before the
    decision is written, so a range that cannot be served is on record as refused (416), as for the
    recording's own audio route, and named in the entry's details."""
    qr = _reviewer_rules(policy, actor)
    item = get_item(session, policy=policy, actor=actor, item_id=item_id)
    details: dict[str, object] = {"quality_item": item.id}
    if reading:
        details["read"] = reading
    if range_header:
        details["range"] = range_header
    decision, row = recordings.authorize_content(
        session, policy=policy, actor=actor, action=action, recording_id=item.recording_id, purpose=qr.purpose,
        source_ip=source_ip, details=details,
        check=_original_only(range_header) if action in CONTENT_ACTIONS else None, clock=clock)
    return decision, item, row


def _original_only(range_header: str | None) -> recordings.ServeCheck:
    def check(_session: Session, row: Recording, decision: Decision) -> CallvaultError | None:
        if decision.serves != "original":
            return AccessDenied(f"The review purpose {decision.purpose!r} serves only an anonymised copy of a call; "
                                "reviewing a queued call needs the original, so the policy's quality_review.purpose "
                                "must serve it.", clauses=decision.clauses)
        try:
            playback.parse_range(range_header, row.size_bytes)
        except playback.RangeNotSatisfiable as exc:
            return exc
        return None

    return check


def parse_offset(text: str) -> float:
    """A moment of the call as a person types it: seconds (``75``, ``12.5``) or ``m:ss`` / ``h:mm:ss``
    (``1:15``, ``1:02.5``), which is how the player shows time, so a reviewer can copy what they see.
    Raises InvalidInput naming ``at_seconds``."""
    value = text.strip()
    parts = value.split(":")
    problem = FieldProblem("at_seconds", f"{text!r} is not a time: write seconds (12.5) or minutes:seconds (1:05)")
    if not value or len(parts) > 3:
        raise InvalidInput("the comment is not valid:", [problem])
    try:
        numbers = [float(p) if i == len(parts) - 1 else int(p) for i, p in enumerate(parts)]
    except ValueError as exc:
        raise InvalidInput("the comment is not valid:", [problem]) from exc
    *whole, last = numbers
    if not math.isfinite(last) or any(n < 0 for n in numbers) or (whole and last >= 60) \
            or any(n >= 60 for n in whole[1:]):
        raise InvalidInput("the comment is not valid:", [problem])
    seconds = 0.0
    for n in whole:
        seconds = seconds * 60 + n
    return seconds * 60 + last if whole else last


def submit(
    session: Session, *, policy: PolicyDocument, actor: Actor, item: QaReviewItem, answers: Mapping[str, str],
    coaching_note: str = "", share: bool = False, clock: Clock = system_clock, source_ip: str | None = None,
) -> QaReview:
    """Score ``item`` (already authorised with ``authorize_item``). A second reviewer on the same call
    makes a calibration pair; the same reviewer twice is a Conflict."""
    qr = _reviewer_rules(policy, actor)
    if len(coaching_note) > MAX_NOTE:
        raise InvalidInput("the review is not valid:",
                           [FieldProblem("coaching_note", f"at most {MAX_NOTE} characters")])
    if session.scalar(select(QaReview.id).where(QaReview.item_id == item.id, QaReview.reviewer == actor.username)):
        raise Conflict("you have already scored this call; a second opinion must come from another reviewer")
    result = scorecards.score(qr.scorecard, answers)
    now = clock.now()
    review = QaReview(
        id=new_id(), item_id=item.id, reviewer=actor.username, agent=item.agent, team=item.team,
        scorecard_id=qr.scorecard.id, scorecard_version=qr.scorecard.version,
        answers=scorecards.validate_answers(qr.scorecard, answers), section_scores=result.section_scores,
        score=result.score, auto_failed=result.auto_failed, passed=result.passed,
        coaching_note=coaching_note.strip(), submitted_at=now, shared_at=now if share else None, agent_response="")
    session.add(review)
    item.state = ReviewItemState.REVIEWED
    session.flush()
    audit.append(session, audit.AuditEvent(
        actor=actor.username, actor_role=actor.role, action="quality.review", object_type="qa_review",
        object_id=review.id, purpose=qr.purpose, source_ip=source_ip, clauses=("B8",),
        details={"item": item.id, "recording": item.recording_id, "score": result.score, "passed": result.passed,
                 "auto_failed": result.auto_failed, "shared": share}), clock=clock)
    return review


def my_review_of(session: Session, *, actor: Actor, item_id: str) -> QaReview | None:
    """The actor's own review of a queued call, if they have scored it."""
    return session.scalar(select(QaReview).where(QaReview.item_id == item_id, QaReview.reviewer == actor.username))


def revise(
    session: Session, *, policy: PolicyDocument, actor: Actor, item: QaReviewItem, answers: Mapping[str, str],
    coaching_note: str = "", share: bool = False, clock: Clock = system_clock, source_ip: str | None = None,
) -> QaReview:
    """Change the actor's own score of ``item`` (already authorised with ``authorize_item``) until its agent
    has acknowledged it: a reviewer who misread a question can correct it, but what the agent confirmed
    reading must stay what they read, so an acknowledged review is a Conflict. Audited
    (``quality.review.revised``) with the score before and after, since a changed score changes the
    dashboard and calibration. ``share`` can share a review not shared yet; it never withdraws one."""
    qr = _reviewer_rules(policy, actor)
    review = my_review_of(session, actor=actor, item_id=item.id)
    if review is None:
        raise NotFound(f"you have not scored review item {item.id}")
    if review.acknowledged_at is not None:
        raise Conflict("the agent has acknowledged this review, so it can no longer be changed")
    if len(coaching_note) > MAX_NOTE:
        raise InvalidInput("the review is not valid:",
                           [FieldProblem("coaching_note", f"at most {MAX_NOTE} characters")])
    result = scorecards.score(qr.scorecard, answers)
    before = review.score
    review.answers = scorecards.validate_answers(qr.scorecard, answers)
    review.scorecard_id, review.scorecard_version = qr.scorecard.id, qr.scorecard.version
    review.section_scores, review.score = result.section_scores, result.score
    review.auto_failed, review.passed = result.auto_failed, result.passed
    review.coaching_note = coaching_note.strip()
    if share and review.shared_at is None:
        review.shared_at = clock.now()
    audit.append(session, audit.AuditEvent(
        actor=actor.username, actor_role=actor.role, action="quality.review.revised", object_type="qa_review",
        object_id=review.id, purpose=qr.purpose, source_ip=source_ip, clauses=("B8",),
        details={"item": item.id, "recording": item.recording_id, "score_before": before, "score": result.score,
                 "passed": result.passed, "auto_failed": result.auto_failed,
                 "shared": review.shared_at is not None}), clock=clock)
    return review


def neighbours(session: Session, *, policy: PolicyDocument, actor: Actor,
               item_id: str) -> tuple[str | None, str | None]:
    """The previous and next item of the reviewer's whole queue (open and scored, oldest first) around
    ``item_id``: the review page's "previous / next call", so a reviewer works through a sample without
    going back to the list. Scored items stay in the order, so "next" still works after scoring."""
    ids = [i.id for i in queue(session, policy=policy, actor=actor, state=None)]
    if item_id not in ids:
        return None, None
    at = ids.index(item_id)
    return (ids[at - 1] if at > 0 else None), (ids[at + 1] if at + 1 < len(ids) else None)


def share(session: Session, *, actor: Actor, review_id: str, clock: Clock = system_clock) -> QaReview:
    """Show a review (score and coaching note) to the agent; only its reviewer can."""
    review = session.get(QaReview, review_id)
    if review is None or review.reviewer != actor.username:
        raise NotFound(f"no review {review_id} of yours")
    if review.shared_at is None:
        review.shared_at = clock.now()
        audit.append(session, audit.AuditEvent(
            actor=actor.username, actor_role=actor.role, action="quality.review.shared", object_type="qa_review",
            object_id=review.id, clauses=("B8",)), clock=clock)
    return review


def add_comment(session: Session, *, policy: PolicyDocument, actor: Actor, item: QaReviewItem, at_seconds: float,
                text: str, duration: float, clock: Clock = system_clock) -> QaComment:
    """A comment pinned to ``at_seconds`` of the call (which must lie inside it)."""
    _reviewer_rules(policy, actor)
    problems: list[FieldProblem] = []
    if not 0 <= at_seconds <= duration:
        problems.append(FieldProblem("at_seconds", f"must be between 0 and the call's length ({duration:.1f} s)"))
    text = text.strip()
    if not text or len(text) > MAX_COMMENT:
        problems.append(FieldProblem("text", f"write between 1 and {MAX_COMMENT} characters"))
    if problems:
        raise InvalidInput("the comment is not valid:", problems)
    row = QaComment(id=new_id(), item_id=item.id, reviewer=actor.username, at_seconds=round(at_seconds, 2),
                    text=text, created_at=clock.now())
    session.add(row)
    return row


def comments(session: Session, item_id: str) -> list[QaComment]:
    return list(session.scalars(select(QaComment).where(QaComment.item_id == item_id)
                                .order_by(QaComment.at_seconds, QaComment.created_at)))


def reviews_of_item(session: Session, item_id: str) -> list[QaReview]:
    return list(session.scalars(select(QaReview).where(QaReview.item_id == item_id).order_by(QaReview.submitted_at)))


# ------------------------------------------------------------------------------------------ the agent
def my_reviews(session: Session, *, actor: Actor) -> list[QaReview]:
    """The reviews of the actor's own calls that were shared with them, newest first."""
    return list(session.scalars(select(QaReview).where(QaReview.agent == actor.username,
                                                       QaReview.shared_at.is_not(None))
                                .order_by(QaReview.submitted_at.desc())))


def my_review_comments(session: Session, *, actor: Actor, review_id: str) -> list[QaComment]:
    """The comments on the call of a review shared with the actor (its agent)."""
    review = session.get(QaReview, review_id)
    if review is None or review.agent != actor.username or review.shared_at is None:
        raise NotFound(f"no review {review_id} of your calls")
    return comments(session, review.item_id)


def recordings_of_reviews(session: Session, reviews: list[QaReview]) -> dict[str, str]:
    """item id -> recording id for the agent's reviews, so My scores can open each reviewed call (opening it
    is decided and audited on the recording page like any other look at a call)."""
    ids = {r.item_id for r in reviews}
    if not ids:
        return {}
    rows = session.execute(select(QaReviewItem.id, QaReviewItem.recording_id).where(QaReviewItem.id.in_(ids)))
    return {item_id: recording_id for item_id, recording_id in rows}


def acknowledge(session: Session, *, actor: Actor, review_id: str, response: str = "",
                clock: Clock = system_clock, source_ip: str | None = None) -> QaReview:
    """The agent confirms they have read a shared review, optionally answering it; once."""
    review = session.get(QaReview, review_id)
    if review is None or review.agent != actor.username or review.shared_at is None:
        raise NotFound(f"no review {review_id} of your calls")
    if review.acknowledged_at is not None:
        raise Conflict("you have already acknowledged this review")
    if len(response) > MAX_NOTE:
        raise InvalidInput("the acknowledgement is not valid:",
                           [FieldProblem("response", f"at most {MAX_NOTE} characters")])
    review.acknowledged_at, review.agent_response = clock.now(), response.strip()
    audit.append(session, audit.AuditEvent(
        actor=actor.username, actor_role=actor.role, action="quality.review.acknowledged", object_type="qa_review",
        object_id=review.id, source_ip=source_ip, clauses=("B8",)), clock=clock)
    return review


# ------------------------------------------------------------------------------------------ dashboard
@dataclass
class ScoreRow:
    key: str
    """Agent or team."""
    month: str
    """``YYYY-MM`` of submission."""
    reviews: int = 0
    average: float = 0.0
    passed: int = 0
    auto_failed: int = 0


def dashboard(session: Session, *, policy: PolicyDocument, actor: Actor, by: str = "agent",
              since: datetime | None = None) -> list[ScoreRow]:
    """Average scores per agent (or team) and month, with pass and auto-fail counts, over the calls the
    reviewer may see (``_visible``): the rows name agents and teams, so a team-scoped reviewer's dashboard
    must not show another team's people or scores, nor a call quarantined since it was scored."""
    _reviewer_rules(policy, actor)
    if by not in ("agent", "team"):
        raise InvalidInput("cannot build the dashboard:", [FieldProblem("by", "agent or team")])
    query = select(QaReview, QaReviewItem.recording_id).join(QaReviewItem, QaReviewItem.id == QaReview.item_id)
    if since is not None:
        query = query.where(QaReview.submitted_at >= since)
    rows: dict[tuple[str, str], ScoreRow] = {}
    totals: dict[tuple[str, str], float] = defaultdict(float)
    seen: dict[str, bool] = {}
    for r, recording_id in session.execute(query):
        if recording_id not in seen:
            seen[recording_id] = _may_see_recording(session, policy, actor, recording_id)
        if not seen[recording_id]:
            continue
        key = (r.agent if by == "agent" else (r.team or "(no team)"), r.submitted_at.strftime("%Y-%m"))
        row = rows.setdefault(key, ScoreRow(key=key[0], month=key[1]))
        row.reviews += 1
        row.passed += int(r.passed)
        row.auto_failed += int(r.auto_failed)
        totals[key] += r.score
    for key, row in rows.items():
        row.average = round(totals[key] / row.reviews, 1)
    return sorted(rows.values(), key=lambda r: (r.key, r.month))


@dataclass
class CalibrationPair:
    item: QaReviewItem
    reviews: list[QaReview]
    spread: float
    """Highest score minus lowest."""
    disagreements: list[str] = field(default_factory=list)
    """Question ids answered differently."""


def calibration(session: Session, *, policy: PolicyDocument, actor: Actor, limit: int = 100) -> list[CalibrationPair]:
    """Calls scored by two or more reviewers, with how far apart they were (widest first); only calls the
    reviewer may see (``_visible``: each pair names the recording, its agent and every reviewer's score)."""
    _reviewer_rules(policy, actor)
    multi = select(QaReview.item_id).group_by(QaReview.item_id).having(func.count(QaReview.id) >= 2)
    candidates = session.scalars(select(QaReviewItem).where(QaReviewItem.id.in_(multi))
                                 .order_by(QaReviewItem.created_at, QaReviewItem.id))
    items = [i for i in candidates if _visible(session, policy, actor, i)][:limit]
    pairs: list[CalibrationPair] = []
    for item in items:
        reviews = reviews_of_item(session, item.id)
        questions = sorted({q for r in reviews for q in r.answers})
        differ = [q for q in questions if len({r.answers.get(q) for r in reviews}) > 1]
        scores = [r.score for r in reviews]
        pairs.append(CalibrationPair(item=item, reviews=reviews, spread=round(max(scores) - min(scores), 2),
                                     disagreements=differ))
    return sorted(pairs, key=lambda p: -p.spread)


def items_of_recording(session: Session, recording_id: str) -> list[QaReviewItem]:
    """Every review item (open or reviewed) drawn for a recording: its scores rest on the call (B8)."""
    return list(session.scalars(select(QaReviewItem).where(QaReviewItem.recording_id == recording_id)
                                .order_by(QaReviewItem.created_at)))


def item_facts(session: Session, recording_id: str) -> tuple[QualityItemFacts, ...]:
    """What ``decide`` needs for a purpose that reaches only sampled calls (B8): each review item (open or
    scored) holding the recording."""
    return tuple(QualityItemFacts(item_id=i.id, sample_id=i.sample_id, open=i.state == ReviewItemState.OPEN)
                 for i in items_of_recording(session, recording_id))


def describe_item(item: QaReviewItem) -> dict[str, Any]:
    return {"id": item.id, "sample_id": item.sample_id, "recording_id": item.recording_id, "agent": item.agent,
            "team": item.team, "direction": item.direction, "state": item.state, "created_at": item.created_at}
