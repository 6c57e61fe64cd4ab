"""Transcripts over HTTP: purpose-checked viewing, keyed-hash search, CRM notes and their check (B5).

Reading a transcript or a CRM check is content access: ``authorize_content`` with
``Action.TRANSCRIPT`` and the named purpose, audited (denials committed before the refusal).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from callvault.api.deps import Caller, get_caller, get_runtime
from callvault.audit import service as audit
from callvault.core.errors import AccessDenied, NotFound
from callvault.policy.decide import Action, decide
from callvault.recordings import service as recordings
from callvault.runtime import Runtime
from callvault.transcription import search, service
from callvault.transcription.schemas import (
    CrmNoteAccepted,
    CrmNoteIn,
    CrmNoteRead,
    TranscriptHit,
    TranscriptRead,
    TranscriptSearchResult,
)

router = APIRouter(tags=["transcripts"])
Purpose = Annotated[str | None, Query(description="a purpose id from the policy, e.g. complaint_investigation")]


def _authorise(runtime: Runtime, caller: Caller, recording_id: str, purpose: str | None, what: str) -> str:
    """Decide and audit; returns what the decision serves. Raises (after committing) when refused."""
    with runtime.db.unit_of_work() as session:
        decision, row = recordings.authorize_content(
            session, policy=caller.policy, actor=caller.actor, action=Action.TRANSCRIPT, recording_id=recording_id,
            purpose=purpose, source_ip=caller.source_ip, details={"view": what}, clock=runtime.clock)
    if row is None:
        raise NotFound("no such recording")
    if not decision.allowed:
        raise AccessDenied(decision.reason, reason=decision.reason, clauses=decision.clauses)
    return decision.serves or "original"


@router.get("/recordings/{recording_id}/transcript", response_model=TranscriptRead)
def get_transcript(recording_id: str, purpose: Purpose = None, redact: bool = False,
                   caller: Caller = Depends(get_caller), runtime: Runtime = Depends(get_runtime)) -> TranscriptRead:
    """The transcript (who said what, with word timings), naming a purpose; decided and audited.

    ``redact=true`` masks phone numbers, e-mails and account numbers; a purpose that serves only an
    anonymised copy (training) always gets the masked version.
    """
    serves = _authorise(runtime, caller, recording_id, purpose, "transcript")
    with runtime.db.unit_of_work() as session:
        row, doc = service.load_transcript(session, keyring=runtime.keyring, recording_id=recording_id)
        completed = row.completed_at
    masked = redact or serves == "anonymised_derivative"
    if masked:
        doc = service.redacted(doc, region=runtime.settings.default_region)
    return TranscriptRead.model_validate({
        "recording_id": recording_id, "engine": doc.engine, "redacted": masked, "speakers": doc.speakers,
        "segments": [{"speaker": s.speaker, "start": s.start, "end": s.end, "text": s.text,
                      "words": [w.__dict__ for w in s.words]} for s in doc.segments],
        "removed": doc.removed, "completed_at": completed})


@router.get("/transcripts/search", response_model=TranscriptSearchResult)
def search_transcripts(q: Annotated[str, Query(min_length=1, max_length=200, description="words, all must occur")],
                       purpose: Purpose = None,
                       limit: Annotated[int, Query(ge=1, le=200)] = 50,
                       caller: Caller = Depends(get_caller),
                       runtime: Runtime = Depends(get_runtime)) -> TranscriptSearchResult:
    """Recordings whose transcript contains every word of ``q`` (exact words, see docs), within your scope
    and allowed for ``purpose``. Audited with the purpose and the number of hits, never the words."""
    key = search.load_search_key(runtime.settings.key_dir, runtime.settings.env)
    with runtime.db.unit_of_work() as session:
        rows = search.candidates(session, key=key, policy=caller.policy, actor=caller.actor, query=q, limit=limit)
        hits = [r for r in rows if decide(policy=caller.policy, actor=caller.actor, action=Action.TRANSCRIPT,
                                          recording=recordings.facts(r), purpose=purpose).allowed]
        items = [TranscriptHit(recording_id=r.id, started_at=r.started_at, extension=r.extension, agent=r.agent)
                 for r in hits]
        denied = bool(rows) and not hits and not purpose
        audit.append(session, audit.AuditEvent(
            actor=caller.user.username, actor_role=caller.user.role, action="transcript.search",
            decision="deny" if denied else "allow", purpose=purpose, source_ip=caller.source_ip,
            reason="no purpose named" if denied else "",
            details={"terms": len(search.normalise(q)), "hits": len(items)}), clock=runtime.clock)
    return TranscriptSearchResult(items=items)


@router.post("/recordings/{recording_id}/crm-note", response_model=CrmNoteAccepted, status_code=201)
def post_crm_note(recording_id: str, body: CrmNoteIn, caller: Caller = Depends(get_caller),
                  runtime: Runtime = Depends(get_runtime)) -> JSONResponse:
    """Store the CRM note for a call (sealed) and compare it with the transcript (now, or once it exists).

    Allowed for anyone who may see the recording's details (the agent who wrote the note, an
    integration account); the answer carries no content, only the number of flags.
    """
    with runtime.db.unit_of_work() as session:
        row = recordings.get_visible(session, policy=caller.policy, actor=caller.actor, recording_id=recording_id,
                                     source_ip=caller.source_ip, clock=runtime.clock)
        note = None
        if row is not None:
            note = service.add_crm_note(session, keyring=runtime.keyring, recording=row, note=body.note,
                                        products=body.products, actor=caller.user.username,
                                        env=runtime.settings.env, clock=runtime.clock)
            accepted = CrmNoteAccepted(id=note.id, check_state=note.check_state, flag_count=note.flag_count)
    if note is None:
        raise NotFound("no such recording")
    return JSONResponse(accepted.model_dump(), status_code=201)


@router.get("/recordings/{recording_id}/crm-note", response_model=list[CrmNoteRead])
def get_crm_notes(recording_id: str, purpose: Purpose = None, caller: Caller = Depends(get_caller),
                  runtime: Runtime = Depends(get_runtime)) -> list[CrmNoteRead]:
    """The CRM notes and their flags with evidence from the call; content access, decided and audited."""
    _authorise(runtime, caller, recording_id, purpose, "crm_check")
    with runtime.db.unit_of_work() as session:
        notes = service.read_crm_notes(session, keyring=runtime.keyring, recording_id=recording_id)
    return [CrmNoteRead.model_validate(n) for n in notes]
