"""Transcription's background work: transcribe new recordings when the policy enables it."""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import TYPE_CHECKING

from callvault.core.errors import NotFound
from callvault.core.ids import new_id
from callvault.jobs.registry import job
from callvault.policy import service as policy_service
from callvault.policy.schema import TranscriptionRules
from callvault.recordings.models import DataKey
from callvault.transcription import search, service
from callvault.transcription.engines import get_engine
from callvault.transcription.models import Transcript, TranscriptStatus

if TYPE_CHECKING:
    from callvault.runtime import Runtime

log = logging.getLogger("callvault.transcription")
BATCH_SECONDS = 240.0
"""A job run stops claiming new work after this long, so the worker's other jobs get their turn."""


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{new_id()[:8]}"


def _rules(runtime: Runtime) -> TranscriptionRules:
    with runtime.db.unit_of_work() as session:
        return policy_service.current_policy(session, clock=runtime.clock).transcription


def _process(runtime: Runtime, rules: TranscriptionRules, recording_id: str, me: str, *,
             operator: bool = False) -> service.Outcome | None:
    """Run one claimed job. Whatever fails, loading the engine included, gives the claim back: a claim
    left ``running`` would block the recording for the whole lease (``service.LEASE``). An operator's
    run (``operator``) marks the job ``failed`` at once, with the reason, for them to read and re-run;
    the worker's run goes back to ``pending`` until ``MAX_ATTEMPTS``."""
    try:
        engine = get_engine(rules.engine, data_dir=runtime.settings.data_dir, env=runtime.settings.env)
        key = search.load_search_key(runtime.settings.key_dir, runtime.settings.env)
        outcome = service.process(
            db=runtime.db, store=runtime.store, keyring=runtime.keyring, engine=engine, recording_id=recording_id,
            worker_id=me, redact_card_data=rules.redact_card_data, search_key=key,
            region=runtime.settings.default_region, env=runtime.settings.env, clock=runtime.clock)
    except BaseException as exc:  # Ctrl-C of `callvault transcribe` too: never leave the claim running
        # The message names the failure, never content (our errors carry none; others are summarised).
        message = getattr(exc, "message", "") if isinstance(exc, Exception) else "interrupted"
        service.release_failed(runtime.db, recording_id=recording_id, worker_id=me, clock=runtime.clock,
                               error=f"{type(exc).__name__}: {message}".strip(": "), final=operator)
        raise
    if outcome is not None:
        log.info("transcribed %s: %d words, %.1fs audio in %.1fs", recording_id, outcome.words,
                 outcome.seconds_audio, outcome.seconds_processing)
    return outcome


@job("transcription.transcribe_new", every_seconds=30)
def transcribe_new(runtime: Runtime) -> int:
    """Transcribe recordings that have no transcript yet (when the policy's transcription is enabled)."""
    rules = _rules(runtime)
    if not rules.enabled:
        return 0
    service.enqueue_safely(runtime.db, engine=rules.engine, clock=runtime.clock)
    me = worker_id()
    handled = 0
    deadline = time.monotonic() + BATCH_SECONDS
    while time.monotonic() < deadline:
        rec_id = service.claim(runtime.db, worker_id=me, clock=runtime.clock)
        if rec_id is None:
            break
        try:
            if _process(runtime, rules, rec_id, me) is not None:
                handled += 1
        except Exception:
            log.exception("transcription of %s failed; it will be retried", rec_id)
    return handled


def transcribe_one(runtime: Runtime, recording_id: str, *, again: bool = False) -> service.Outcome | None:
    """Transcribe one recording now (CLI). ``again`` re-runs a done or failed one.

    Works whether or not the policy enables automatic transcription; card-data removal follows the
    policy. A failed job is tried again (the operator asked for this recording; a failed run stored
    nothing). Returns None when another worker holds the claim.
    """
    rules = _rules(runtime)
    with runtime.db.unit_of_work() as session:
        if session.get(DataKey, recording_id) is None:
            raise NotFound(f"no recording {recording_id} with audio (unknown, or its key was destroyed)")
        row = session.get(Transcript, recording_id)
        if row is None:
            session.add(Transcript(recording_id=recording_id, status=TranscriptStatus.PENDING, engine=rules.engine,
                                   attempts=0, created_at=runtime.clock.now()))
        elif row.status == TranscriptStatus.FAILED or (again and row.status == TranscriptStatus.DONE):
            row.status, row.attempts = TranscriptStatus.PENDING, 0
    me = worker_id()
    if service.claim(runtime.db, worker_id=me, clock=runtime.clock, recording_id=recording_id) is None:
        return None
    return _process(runtime, rules, recording_id, me, operator=True)
