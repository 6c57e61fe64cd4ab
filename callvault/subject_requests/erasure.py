"""Carrying out a caller's erasure request when a reviewer approves it.

Only a policy whose caller notice promises deletion (``notice.caller_requests: [copy, erasure]``) lets a caller
ask for it (``service.submit``). Before, approving such a request took the copy path: the caller was mailed a
download link to the recordings they had asked to have deleted, and nothing was deleted.

Approving one now, for each recording the reviewer confirmed as the caller's:

* destroyed at once (the ``retention.erasure`` method, crypto-shred: ``retention.shred``; a destruction
  record with rule ``caller_erasure`` naming the request; audited ``recording.destroyed``), unless
* it is kept, with the reason, because deleting it would destroy evidence or break a retention rule: the
  retention minimum has not passed (``retention.min_age_months``), or a legal hold, an unresolved case, an
  open access request, another open subject request or a quality-review sample rests on it (the same
  checks that keep an agent from marking a stored call personal, ``capture.personal.evidence``).

The outcome is kept on the request (``erasure_outcome``), shown to staff, and mailed to the caller in plain
words, so a caller whose recording is kept is told why and can contest it. The blobs are deleted by
``retention.shred.finish`` after the caller's transaction commits (the edge calls it; a crash in between is
finished by the next sweep's ``shred.resume``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from callvault.capture import personal
from callvault.core.clock import Clock, system_clock
from callvault.policy.decide import Actor
from callvault.policy.schema import PolicyDocument
from callvault.recordings.models import Recording, RecordingState
from callvault.retention import service as retention
from callvault.retention.models import RetentionRule
from callvault.retention.shred import Doomed, Pending, destroy_now
from callvault.storage.keys import Keyring

CALLER_WORDS = {
    "legal hold": "it is under a legal hold",
    "linked to an unresolved case": "it is evidence in a complaint or case that is still open",
    "named by an open access request": "it is part of a review still in progress",
    "covered by an open subject request": "another request about it is still being answered",
    "in a quality review sample": "it is part of a quality review still in progress",
}
"""What the caller reads for each reason a recording is kept (staff see the full sentence)."""


@dataclass
class Erasure:
    destroyed: list[str] = field(default_factory=list)
    kept: list[dict[str, str]] = field(default_factory=list)
    """``{"recording_id", "reason" (for staff), "caller_reason", "call" (mailed)}`` per recording kept."""
    pending: list[Pending] = field(default_factory=list)
    """Blobs to delete once the transaction has committed (``retention.shred.finish``)."""

    def outcome(self) -> dict[str, Any]:
        return {"destroyed": list(self.destroyed),
                "kept": [{"recording_id": k["recording_id"], "reason": k["reason"]} for k in self.kept]}


def _kept_because(session: Session, policy: PolicyDocument, rec: Recording, *, request_id: str,
                  now: datetime) -> tuple[str, str] | None:
    """(reason for staff, reason for the caller) when ``rec`` must be kept; None when it may be destroyed."""
    if retention.under_minimum(rec, now):
        assert rec.keep_until is not None
        return (retention.minimum_refusal(policy, rec, "deleted"),
                f"we must keep it until {rec.keep_until:%d %B %Y} under our retention rules")
    blocker = personal.evidence(session, rec, now, what="deleted", except_request=request_id)
    if blocker is not None:
        return str(blocker), CALLER_WORDS.get(blocker.reason, "it is still needed as evidence")
    return None


def carry_out(session: Session, *, policy: PolicyDocument, actor: Actor, request_id: str,
              recordings: list[Recording], keyring: Keyring, source_ip: str | None = None,
              clock: Clock = system_clock) -> Erasure:
    """Destroy what may be destroyed of ``recordings`` (in the caller's transaction) and say what is kept."""
    now = clock.now()
    done = Erasure()
    doomed = []
    for rec in recordings:
        if rec.state == RecordingState.DESTROYED:
            done.destroyed.append(rec.id)  # already gone (retention got there first): deleted all the same
            continue
        kept = _kept_because(session, policy, rec, request_id=request_id, now=now)
        if kept is not None:
            done.kept.append({"recording_id": rec.id, "reason": kept[0], "caller_reason": kept[1],
                              "call": f"{rec.started_at:%d %B %Y %H:%M} UTC"})
            continue
        doomed.append(Doomed.of(rec, RetentionRule.CALLER_ERASURE.value,
                                reason=f"the caller's erasure request {request_id}, approved by {actor.username}"))
        done.destroyed.append(rec.id)
    done.pending = destroy_now(session, keyring=keyring, doomed=doomed, actor=actor.username, actor_role=actor.role,
                               source_ip=source_ip, clock=clock)
    return done


def caller_mail(request_id: str, done: Erasure) -> str:
    """The answer mailed to the caller: what was deleted, what is kept and why, how to contest it."""
    deleted = len(done.destroyed)
    if not done.destroyed and not done.kept:
        return (f"We looked for recordings matching your request to delete your call recordings ({request_id}) and "
                "hold no recordings of your calls: either none were recorded, or they have already been destroyed "
                "under our retention policy.\n")
    lines = [f"We have carried out your request to delete your call recordings ({request_id}).", ""]
    lines.append(f"We deleted {deleted} recording{'s' if deleted != 1 else ''}: they cannot be recovered, by us or "
                 "anyone else." if deleted else "We could not delete any of them yet.")
    if done.kept:
        count = len(done.kept)
        lines += ["", f"{count} recording{' is' if count == 1 else 's are'} kept for now:"]
        lines += [f"- your call of {k['call']}: {k['caller_reason']}" for k in done.kept]
        lines += ["", "Once that reason no longer applies, it is destroyed under our retention policy like every "
                      "recording, and you may ask again. If you think keeping it is wrong, reply to this mail."]
    return "\n".join(lines) + "\n"
