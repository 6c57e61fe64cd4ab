"""Transcripts over HTTP: purpose-checked viewing, keyed-hash search, CRM notes and their check (B5),
redacted audio, and the CRM connector's signed webhook.

The CRM check is transcript content both ways: reading it (its flags quote what was said) and posting a
note (``flag_count`` says what was not). The webhook stores notes and answers nothing derived from the
transcript: the CRM gets where the note went, never how it compared.

Reading a transcript or a CRM check is content access: ``authorize_content`` with
``Action.TRANSCRIPT`` and the named purpose, audited (denials committed before the refusal). The
redacted audio is decided as playback (``Action.PLAY``/``DOWNLOAD``) and audited the same way. What
an allowed request still needs (a transcript, two channels for an anonymised copy) is checked before
the entry is written, so a request answered "not yet" or "cannot" is on record as refused.

A purpose whose decision serves only a masked copy (A6 training's anonymised copy, a "minimum necessary"
purpose's redacted one) learns nothing here that the masked transcript does not show: the CRM check it sees,
and the flag count it is answered, are made from the masked note and the masked transcript; and it may not
search the word index, which holds the words as spoken (refused, audited, before the index is read).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from callvault.access import service as access
from callvault.api.deps import Caller, get_caller, get_runtime, step_up_problem
from callvault.audit import service as audit
from callvault.core.errors import AccessDenied, AuthenticationFailed, CallvaultError, Conflict, NotFound
from callvault.policy.decide import Action, Decision
from callvault.recordings import playback
from callvault.recordings import service as recordings
from callvault.recordings.models import Recording
from callvault.runtime import Runtime
from callvault.transcription import derivative, search, service, webhook
from callvault.transcription.schemas import (
    CrmNoteAccepted,
    CrmNoteIn,
    CrmNoteRead,
    CrmWebhookNoteResult,
    TranscriptHit,
    TranscriptRead,
    TranscriptSearchResult,
)

router = APIRouter(tags=["transcripts"])
Purpose = Annotated[str | None, Query(description="a purpose id from the policy, e.g. complaint_investigation",
                                      max_length=64)]
"""No purpose id is longer than the audit trail's ``purpose`` column: longer is a 422 naming ``purpose``."""


def _authorise(runtime: Runtime, caller: Caller, recording_id: str, purpose: str | None, what: str,
               check: recordings.ServeCheck | None = None) -> str:
    """Decide (and ``check``) and audit; returns what the decision serves. Raises (after committing) when refused.

    The transcript's one content decision: its purpose, the role's scope, the recorded employee's
    consents and the caller's approved grants (a purpose that needs approval is allowed only with one)."""
    with runtime.db.unit_of_work() as session:
        # The caller's approvals count here as for the audio: a grant naming ``transcript`` allows it (B6, B9).
        grants = access.grants_for_decision(session, user_id=caller.user.id, recording_id=recording_id,
                                            now=runtime.clock.now())
        decision, row = recordings.authorize_content(
            session, policy=caller.policy, actor=caller.actor, action=Action.TRANSCRIPT, recording_id=recording_id,
            purpose=purpose, grants=grants, source_ip=caller.source_ip, details={"view": what}, check=check,
            clock=runtime.clock)
    if row is None:
        raise NotFound("no such recording")
    if not decision.allowed:
        raise recordings.refusal(decision)
    return decision.serves or "original"


def _transcribed(session: Session, row: Recording, _decision: Decision) -> NotFound | None:
    """A transcript to read: "not transcribed yet" is the answer, and the record, when there is none."""
    return service.missing_transcript(session, row.id)


def _redactable(session: Session, row: Recording, decision: Decision) -> CallvaultError | None:
    """Redacted audio needs the transcript's word timings, and an anonymised copy needs two channels."""
    if decision.serves == "anonymised_derivative" and row.channels < 2:
        return AccessDenied(derivative.MONO_REFUSAL, clauses=decision.clauses)
    missing = service.missing_transcript(session, row.id)
    if missing is not None:
        return Conflict(f"redacted audio needs the transcript's word timings, and {missing.message}")
    return None


@router.get("/recordings/{recording_id}/transcript", response_model=TranscriptRead)
def get_transcript(recording_id: str, purpose: Purpose = None, redact: bool = False,
                   caller: Caller = Depends(get_caller), runtime: Runtime = Depends(get_runtime)) -> TranscriptRead:
    """The transcript (who said what, with word timings), naming a purpose; decided and audited.

    ``redact=true`` masks phone numbers, e-mails, account numbers and names; a purpose that serves only an
    anonymised copy (training) always gets the masked version.
    """
    serves = _authorise(runtime, caller, recording_id, purpose, "transcript", check=_transcribed)
    with runtime.db.unit_of_work() as session:
        row, doc = service.load_transcript(session, keyring=runtime.keyring, recording_id=recording_id)
        completed = row.completed_at
    masked = redact or service.masks(serves)
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
    and allowed for ``purpose``. Audited with the purpose, the number of hits and the recordings returned
    (each also as a transcript access of that call), never the words.

    A purpose that serves only a masked copy is refused (403) whatever ``q`` says: the index holds what was
    said unmasked, so any answer would tell whether a masked number or name was said."""
    key = search.load_search_key(runtime.settings.key_dir, runtime.settings.env)
    with runtime.db.unit_of_work() as session:
        answer = search.allowed_hits(session, key=key, policy=caller.policy, actor=caller.actor, query=q,
                                     purpose=purpose, source_ip=caller.source_ip, limit=limit, clock=runtime.clock)
        items = [TranscriptHit(recording_id=r.id, started_at=r.started_at, extension=r.extension, agent=r.agent)
                 for r in answer.hits]
    if answer.refusal is not None:
        raise answer.refusal  # after the commit: the refusal is on record
    return TranscriptSearchResult(items=items)


@router.post("/recordings/{recording_id}/crm-note", response_model=CrmNoteAccepted, status_code=201)
def post_crm_note(recording_id: str, body: CrmNoteIn, purpose: Purpose = None, caller: Caller = Depends(get_caller),
                  runtime: Runtime = Depends(get_runtime)) -> JSONResponse:
    """Store the CRM note for a call (sealed) and compare it with the transcript (now, or once it exists).

    Content access, decided and audited like reading the transcript (a purpose, a token scope that covers
    content, the role's scope, grants): the answer's ``flag_count`` tells what was not said on the call.
    The decision is taken before the note is looked at, so a refused caller gets the same answer whatever
    the note says, and nothing is stored. (A CRM system sends notes through the signed ``/crm/notes``.)

    A purpose that serves only a masked copy is answered the flag count of the masked note against the masked
    transcript (``redacted: true``), so a note guessing a masked number gets the same count right or wrong; the
    check stored with the note is still made from what was said, for the purposes that may see it.
    """
    masked = service.masks(_authorise(runtime, caller, recording_id, purpose, "crm_check_post"))
    with runtime.db.unit_of_work() as session:
        row = session.get(Recording, recording_id)
        if row is None:
            raise NotFound("no such recording")
        note = service.add_crm_note(session, keyring=runtime.keyring, recording=row, note=body.note,
                                    products=body.products, actor=caller.user.username,
                                    env=runtime.settings.env, clock=runtime.clock)
        flag_count = note.flag_count
        if masked:
            flag_count = service.read_crm_notes(session, keyring=runtime.keyring, recording_id=recording_id,
                                                masked=True, region=runtime.settings.default_region,
                                                env=runtime.settings.env, note_id=note.id)[0]["flag_count"]
        accepted = CrmNoteAccepted(id=note.id, check_state=note.check_state, flag_count=flag_count, redacted=masked)
    return JSONResponse(accepted.model_dump(), status_code=201)


@router.get("/recordings/{recording_id}/crm-note", response_model=list[CrmNoteRead])
def get_crm_notes(recording_id: str, purpose: Purpose = None, caller: Caller = Depends(get_caller),
                  runtime: Runtime = Depends(get_runtime)) -> list[CrmNoteRead]:
    """The CRM notes and their flags with evidence from the call; content access, decided and audited.

    A purpose that serves only a masked copy sees each note masked and its check made from the masked note and
    the masked transcript (``redacted: true``): the stored check quotes the digits, dates and words that copy
    hides, and its flag count would confirm a guessed number."""
    masked = service.masks(_authorise(runtime, caller, recording_id, purpose, "crm_check"))
    with runtime.db.unit_of_work() as session:
        notes = service.read_crm_notes(session, keyring=runtime.keyring, recording_id=recording_id, masked=masked,
                                       region=runtime.settings.default_region, env=runtime.settings.env)
    return [CrmNoteRead.model_validate(n) for n in notes]


@router.get("/recordings/{recording_id}/audio/redacted", response_class=StreamingResponse,
            responses={200: {"content": {"audio/wav": {}}}})
def get_redacted_audio(recording_id: str, purpose: Purpose = None, download: bool = False,
                       caller: Caller = Depends(get_caller), runtime: Runtime = Depends(get_runtime)) -> Response:
    """The audio with a 1 kHz tone over personal data (card data, phone numbers, e-mails, account
    numbers, names), on the channel where it was said; 16-bit WAV built on demand, never stored.

    Decided like playback (a purpose, your scope, grants) and audited. A purpose that serves only an
    anonymised copy (training) also gets the caller's channel silenced. Needs the transcript's word
    timings (409 until the recording is transcribed). No ``Range`` support.
    """
    action = Action.DOWNLOAD if download else Action.PLAY
    step_up = step_up_problem(runtime, caller) if download else None

    def check(session: Session, row: Recording, decision: Decision) -> CallvaultError | None:
        return step_up if step_up is not None else _redactable(session, row, decision)

    with runtime.db.unit_of_work() as session:
        grants = access.grants_for_decision(session, user_id=caller.user.id, recording_id=recording_id,
                                            now=runtime.clock.now())
        decision, row = recordings.authorize_content(
            session, policy=caller.policy, actor=caller.actor, action=action, recording_id=recording_id,
            purpose=purpose, grants=grants, source_ip=caller.source_ip, details={"view": "redacted_audio"},
            check=check, clock=runtime.clock)
    if row is None:
        raise NotFound("no such recording")
    if not decision.allowed:
        raise recordings.refusal(decision)
    with runtime.db.unit_of_work() as session:
        try:
            _, doc = service.load_transcript(session, keyring=runtime.keyring, recording_id=recording_id)
        except NotFound as exc:
            raise Conflict(f"redacted audio needs the transcript's word timings, and {exc.message}") from None
        reader = playback.open_reader(session, store=runtime.store, keyring=runtime.keyring, row=row)
    raw = b"".join(playback.stream(reader, None, row.sha256))
    result = derivative.build(raw, doc, mask_caller=decision.serves == "anonymised_derivative",
                              region=runtime.settings.default_region)
    headers = {"Content-Length": str(result.size), "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
               "X-Callvault-Redacted-Spans": str(sum(result.counts.values())),
               "X-Callvault-Caller-Masked": "true" if result.caller_masked else "false"}
    if download:
        headers["Content-Disposition"] = f'attachment; filename="{row.id}.redacted.wav"'
    return StreamingResponse(result.chunks, media_type="audio/wav", headers=headers)


MAX_WEBHOOK_BYTES = 64 * 1024


def _receive_webhook(runtime: Runtime, body: bytes, timestamp: str | None, signature: str | None,
                     source_ip: str | None) -> JSONResponse:
    try:
        secret = webhook.load_secret(runtime.settings.env)
        digest = webhook.verify(secret, timestamp=timestamp, signature=signature, body=body, clock=runtime.clock)
        note = webhook.parse(body)
        try:
            with runtime.db.unit_of_work() as session:
                delivery = webhook.receive(session, keyring=runtime.keyring, note=note, digest=digest,
                                           env=runtime.settings.env, clock=runtime.clock)
                result = CrmWebhookNoteResult.model_validate({
                    "note_id": delivery.note_id, "crm_ref": delivery.crm_ref, "created": delivery.created,
                    "notes": [{"recording_id": n.recording_id, "id": n.id} for n in delivery.notes]})
        except SAIntegrityError:  # the same delivery raced in twice: one wins, the other is a replay
            raise AuthenticationFailed("this delivery was already received (replay refused)") from None
    except (AuthenticationFailed, NotFound) as exc:
        with runtime.db.unit_of_work() as session:
            audit.append(session, audit.AuditEvent(
                actor=webhook.ACTOR, action="crm_note.webhook", decision="deny", source_ip=source_ip,
                reason=exc.message[:300] if isinstance(exc, AuthenticationFailed)
                else "no recording has the note's crm_ref"), clock=runtime.clock)
        raise
    return JSONResponse(result.model_dump(mode="json"), status_code=201 if result.created else 200)


@router.post("/crm/notes", response_model=CrmWebhookNoteResult, status_code=201, max_body_size=MAX_WEBHOOK_BYTES,
             responses={200: {"description": "this note_id was already stored (a re-send); nothing changed"},
                        401: {"description": "missing, wrong, expired or replayed signature"},
                        404: {"description": "no recording has this crm_ref"}})
async def crm_webhook_note(request: Request, runtime: Runtime = Depends(get_runtime)) -> JSONResponse:
    """The CRM connector: a note for the call(s) tagged with ``crm_ref``, signed with the shared secret.

    Body ``{"note_id", "crm_ref", "note", "author", "created_at"}``; headers ``X-Callvault-Timestamp``
    (Unix seconds) and ``X-Callvault-Signature: sha256=<hex HMAC-SHA-256 of "<timestamp>.<body>">``.
    No user sign-in: the signature is the credential. See docs/transcription.md.
    """
    body = await request.body()
    if len(body) > MAX_WEBHOOK_BYTES:
        return JSONResponse({"error": "too_large", "message": f"notes are limited to {MAX_WEBHOOK_BYTES} bytes"},
                            status_code=413)
    source_ip = getattr(request.state, "client_ip", None)
    return await run_in_threadpool(_receive_webhook, runtime, body, request.headers.get(webhook.TIMESTAMP_HEADER),
                                   request.headers.get(webhook.SIGNATURE_HEADER), source_ip)
