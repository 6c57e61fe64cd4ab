"""Recordings over HTTP: ingest, search, metadata, and purpose-checked audio streaming."""

from __future__ import annotations

import asyncio
import functools
import io
from datetime import datetime
from typing import Annotated, BinaryIO, Literal, NamedTuple

import anyio.to_thread
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from callvault.access import service as access
from callvault.api.deps import Caller, get_caller, get_runtime, step_up_problem
from callvault.audit import service as audit
from callvault.capture.audio import CONTENT_TYPES
from callvault.capture.ingest import ingest_recording
from callvault.core.errors import AccessDenied, CallvaultError, FieldProblem, InvalidInput, NotFound
from callvault.core.instants import instant_problem
from callvault.core.settings import UPLOAD_BYTES_CEILING
from callvault.policy.decide import Action, Decision
from callvault.quality import training
from callvault.recordings import playback
from callvault.recordings import service as recordings
from callvault.recordings.models import Recording
from callvault.recordings.schemas import IngestResponse, RecordingFilters, RecordingPage, RecordingRead
from callvault.runtime import Runtime

router = APIRouter(tags=["recordings"])

UPLOAD_THREADS = 16
"""Uploads of one server process ingested at once, in threads of their own (not the request threads).

Concurrent uploads share their transactions (``capture.group_commit``): most of these threads wait
for a batch, so more of them make bigger batches, not more CPU work, and searches and playback keep
the request threads. The audio is in memory already when an upload gets here; this bounds threads,
not memory."""


def _may_ingest(caller: Caller) -> bool:
    role = caller.policy.roles.get(caller.user.role)
    return bool(role and role.can_administer)


def _audit_ingest_refusal(runtime: Runtime, caller: Caller) -> None:
    with runtime.db.unit_of_work() as session:
        audit.append(session, audit.AuditEvent(
            actor=caller.user.username, actor_role=caller.user.role, action="recording.ingest",
            decision="deny", reason=f"role {caller.user.role} may not ingest recordings",
            source_ip=caller.source_ip), clock=runtime.clock)


RAW_AUDIO_TYPES = frozenset({*CONTENT_TYPES.values(), "audio/x-wav", "audio/wave", "audio/vnd.wave",
                             "audio/x-flac"})
"""Content types of an upload whose body is the audio itself (the format is read from the audio)."""

FORM_TYPES = frozenset({"multipart/form-data", "application/x-www-form-urlencoded"})
"""Forms: only multipart carries a file, but a URL-encoded one gets the same "attach the audio" answer."""

METADATA_HEADER = "Callvault-Metadata"
"""The header carrying the call metadata JSON when the body is the audio itself."""

_INGEST_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {"schema": {
            "type": "object", "required": ["audio", "metadata"],
            "properties": {"audio": {"type": "string", "format": "binary"},
                           "metadata": {"type": "string", "description": "the call metadata JSON"}}}},
        **{ctype: {"schema": {"type": "string", "format": "binary"}} for ctype in sorted(CONTENT_TYPES.values())},
    },
}
_INGEST_HEADER = {
    "name": METADATA_HEADER, "in": "header", "required": False, "schema": {"type": "string"},
    "description": "the call metadata JSON, when the body is the audio itself (UTF-8; required then)",
}


class _Upload(NamedTuple):
    audio: BinaryIO
    metadata: bytes | str
    form: FormData | None


async def _read_form(request: Request) -> _Upload:
    form = await request.form(max_files=1, max_fields=4, max_part_size=1024 * 1024)
    audio = form.get("audio")
    metadata = form.get("metadata")
    problems = []
    if not isinstance(audio, UploadFile):
        problems.append(FieldProblem("audio", "attach the audio file as the form field 'audio'"))
    if metadata is None:
        problems.append(FieldProblem("metadata", "send the call metadata JSON as the form field 'metadata'"))
    if problems:
        await form.close()
        raise InvalidInput("the upload is incomplete:", problems)
    assert isinstance(audio, UploadFile)
    meta_raw = await metadata.read() if isinstance(metadata, UploadFile) else str(metadata)
    return _Upload(audio.file, meta_raw, form)


async def _read_raw(request: Request) -> _Upload:
    """The body is the audio; the metadata comes in a header.

    Why: a PBX script or an SBC hook posts a file with ``curl --data-binary`` and one header, and the
    server skips parsing and re-spooling a multipart body (14% of an upload's time on the GIL in a
    profile; ``bench.uploads --body raw|multipart`` compares the two).
    """
    header = request.headers.get(METADATA_HEADER)
    if header is None:
        raise InvalidInput("the upload is incomplete:", [FieldProblem(
            METADATA_HEADER, f"send the call metadata JSON in the {METADATA_HEADER} header with an audio body")])
    # Headers travel as bytes; Starlette reads them as Latin-1, so this gives back what was sent.
    return _Upload(io.BytesIO(await request.body()), header.encode("latin-1"), None)


@router.post("/recordings", response_model=IngestResponse, status_code=201, max_body_size=UPLOAD_BYTES_CEILING,
             openapi_extra={
    "requestBody": _INGEST_BODY, "parameters": [_INGEST_HEADER]},
             responses={200: {"description": "the same call was already stored with identical audio"},
                        415: {"description": "the body is neither a multipart form nor audio"}})
async def ingest(request: Request, caller: Caller = Depends(get_caller),
                 runtime: Runtime = Depends(get_runtime)) -> Response:
    """Store a call recording, sent either way:

    * a multipart form: ``audio`` (WAV/FLAC/Ogg file) and ``metadata`` (JSON);
    * the audio itself as the body (``Content-Type: audio/wav``, ``audio/flac`` or ``audio/ogg``) with
      the metadata JSON in the ``Callvault-Metadata`` header.

    Idempotent on ``metadata.call_id``: the same call with the same audio returns the existing id
    (200); with different audio, 409. Bad metadata or audio: 422 naming the field, nothing stored.
    The upload is held in memory (never in a plaintext temp file) up to the configured limit.
    """
    if not _may_ingest(caller):
        await run_in_threadpool(_audit_ingest_refusal, runtime, caller)
        raise AccessDenied(f"role {caller.user.role} may not ingest recordings")
    limit = runtime.settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is None or not declared.isdigit():
        raise InvalidInput("send the upload with a Content-Length header",
                           [FieldProblem("content-length", "required")])
    if int(declared) > limit:
        return JSONResponse({"error": "too_large", "message": f"uploads are limited to {limit} bytes"},
                            status_code=413)
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type not in FORM_TYPES and content_type not in RAW_AUDIO_TYPES:
        return JSONResponse({"error": "unsupported_media_type", "message": (
            f"send the recording as multipart/form-data (fields 'audio' and 'metadata') or as the audio "
            f"itself ({', '.join(sorted(CONTENT_TYPES.values()))}) with the metadata JSON in the "
            f"{METADATA_HEADER} header; got {content_type or 'no Content-Type'}")}, status_code=415)
    deadline = runtime.settings.upload_grace_seconds + int(declared) / runtime.settings.upload_min_bytes_per_second
    try:
        async with asyncio.timeout(deadline):  # a slow client may not hold a worker and memory forever
            upload = await (_read_form(request) if content_type in FORM_TYPES else _read_raw(request))
    except TimeoutError:
        return JSONResponse({"error": "upload_too_slow",
                             "message": f"the upload did not arrive within {deadline:.0f} s (at least "
                                        f"{runtime.settings.upload_min_bytes_per_second} bytes/s are required); "
                                        "nothing was stored, send it again"},
                            status_code=408, headers={"Connection": "close"})
    try:
        # Encryption, fsync and commits: off the event loop, or every other request of this process waits.
        result = await anyio.to_thread.run_sync(functools.partial(
            ingest_recording, db=runtime.db, store=runtime.store, keyring=runtime.keyring, audio=upload.audio,
            metadata=upload.metadata, actor=caller.user.username, actor_role=caller.user.role,
            default_region=runtime.settings.default_region, source_ip=caller.source_ip, clock=runtime.clock,
        ), limiter=getattr(request.app.state, "upload_limiter", None))
    finally:
        if upload.form is not None:
            await upload.form.close()
    body = IngestResponse(id=result.recording_id, created=result.created).model_dump()
    return JSONResponse(body, status_code=201 if result.created else 200,
                        headers={"Location": f"/api/v1/recordings/{result.recording_id}"})


@router.get("/recordings", response_model=RecordingPage)
def list_recordings(
    caller: Caller = Depends(get_caller),
    runtime: Runtime = Depends(get_runtime),
    extension: str | None = None,
    agent: str | None = None,
    team: str | None = None,
    direction: Literal["inbound", "outbound"] | None = None,
    remote_number: str | None = None,
    local_number: str | None = None,
    started_from: Annotated[datetime | None, Query(description="ISO 8601 with offset, inclusive")] = None,
    started_to: Annotated[datetime | None, Query(description="ISO 8601 with offset, exclusive")] = None,
    case_ref: str | None = None,
    limit: Annotated[int, Query(ge=1, le=recordings.MAX_PAGE)] = 50,
    cursor: str | None = None,
) -> Response:
    """Search recordings within your role's scope (a specialist sees only their own extension)."""
    for name, value in (("started_from", started_from), ("started_to", started_to)):
        if value is not None and value.tzinfo is None:
            raise InvalidInput("invalid filter:", [FieldProblem(name, "must include a UTC offset")])
        if value is not None and (problem := instant_problem(value)):  # year 1 at +14:00 has no UTC (was a 500)
            raise InvalidInput("invalid filter:", [FieldProblem(name, problem)])
    filters = RecordingFilters(extension=extension, agent=agent, team=team, direction=direction,
                               remote_number=remote_number, local_number=local_number,
                               started_from=started_from, started_to=started_to, case_ref=case_ref)
    with runtime.db.read_only() as session:
        rows, next_cursor = recordings.search_columns(
            session, columns=_READ_FIELDS, policy=caller.policy, actor=caller.actor, filters=filters, limit=limit,
            cursor=cursor, default_region=runtime.settings.default_region)
    # One validation of the whole page (one call into pydantic, not one per row), and only one: handed
    # back as a model, FastAPI would validate and convert the page again.
    page = RecordingPage.model_validate({"items": [dict(r) for r in rows], "next_cursor": next_cursor, "limit": limit})
    return Response(page.model_dump_json(), media_type="application/json")


_READ_FIELDS = tuple(RecordingRead.model_fields)


@router.get("/recordings/{recording_id}", response_model=RecordingRead)
def get_recording(recording_id: str, caller: Caller = Depends(get_caller),
                  runtime: Runtime = Depends(get_runtime)) -> RecordingRead:
    """One recording's metadata, if it is within your scope (otherwise 404)."""
    with runtime.db.read_only() as session:
        row, event = recordings.find_visible(session, policy=caller.policy, actor=caller.actor,
                                             recording_id=recording_id, source_ip=caller.source_ip,
                                             clock=runtime.clock)
        found = RecordingRead.model_validate(row) if row is not None else None
    if event is not None:  # on record before the answer (a refusal, or a look under an emergency)
        with runtime.db.unit_of_work() as session:
            audit.append(session, event, clock=runtime.clock)
    if found is None:
        raise NotFound("no such recording")
    return found


@router.get("/recordings/{recording_id}/audio", response_class=StreamingResponse,
            responses={200: {"content": {"audio/wav": {}}}, 206: {"description": "partial content (Range)"}})
def get_audio(
    recording_id: str,
    request: Request,
    purpose: Annotated[str | None, Query(description="a purpose id from the policy, e.g. spot_check",
                                         max_length=64)] = None,
    download: bool = False,
    caller: Caller = Depends(get_caller),
    runtime: Runtime = Depends(get_runtime),
) -> Response:
    """Stream the original audio, naming a purpose. Honours ``Range``. Every call is decided and audited."""
    action = Action.DOWNLOAD if download else Action.PLAY
    step_up = step_up_problem(runtime, caller) if download else None
    range_header = request.headers.get("range")
    with runtime.db.unit_of_work() as session:
        grants = access.grants_for_decision(session, user_id=caller.user.id, recording_id=recording_id,
                                            now=runtime.clock.now())
        decision, row = recordings.authorize_content(
            session, policy=caller.policy, actor=caller.actor, action=action, recording_id=recording_id,
            purpose=purpose, grants=grants, source_ip=caller.source_ip,
            details={"range": range_header} if range_header else None, check=_servable(range_header, step_up),
            clock=runtime.clock,
        )
    if row is None:
        raise NotFound("no such recording")
    if not decision.allowed:
        refused = recordings.refusal(decision)
        if isinstance(refused, playback.RangeNotSatisfiable):
            return JSONResponse({"error": "range_not_satisfiable", "message": refused.message}, status_code=416,
                                headers={"Content-Range": f"bytes */{row.size_bytes}"})
        raise refused
    if decision.serves != "original":
        return _anonymised_copy(runtime, row.id, download=download)
    with runtime.db.unit_of_work() as session:
        reader = playback.open_reader(session, store=runtime.store, keyring=runtime.keyring, row=row)
    size = reader.plaintext_size
    byte_range = playback.parse_range(range_header, size)  # fits: checked against the catalog size above
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    if download:
        headers["Content-Disposition"] = f'attachment; filename="{row.id}.{row.audio_format}"'
    media_type = CONTENT_TYPES.get(row.audio_format, "application/octet-stream")
    if byte_range is None:
        headers["Content-Length"] = str(size)
        body = playback.primed(playback.stream(reader, None, row.sha256))
        return StreamingResponse(body, media_type=media_type, headers=headers)
    headers["Content-Range"] = f"bytes {byte_range.start}-{byte_range.end}/{size}"
    headers["Content-Length"] = str(byte_range.length)
    body = playback.primed(playback.stream(reader, byte_range, None))
    return StreamingResponse(body, status_code=206, media_type=media_type, headers=headers)


def _servable(range_header: str | None, step_up: CallvaultError | None = None) -> recordings.ServeCheck:
    """What playback needs once the policy said yes, checked before the decision is audited: a purpose
    served only by an anonymised derivative needs the call's copy (A6); the original, a ``Range`` that fits."""

    def check(session: Session, row: Recording, decision: Decision) -> CallvaultError | None:
        if step_up is not None:  # a download with no fresh authenticator code (RELIABILITY 17)
            return step_up
        redacted = recordings.redacted_only(row.id, decision)
        if redacted is not None:
            return redacted
        if decision.serves != "original":
            return training.missing_copy(session, row.id, decision.clauses)
        try:
            playback.parse_range(range_header, row.size_bytes)
        except playback.RangeNotSatisfiable as exc:
            return exc
        return None

    return check


def _anonymised_copy(runtime: Runtime, recording_id: str, *, download: bool) -> Response:
    """What a purpose that serves only an anonymised derivative gets (A6): the call's training clip."""
    with runtime.db.unit_of_work() as session:
        clip = training.clip_for_recording(session, recording_id)
        if clip is not None:
            session.expunge(clip)
    if clip is None:  # destroyed since the decision (its employee withdrew consent a moment ago)
        raise NotFound("the anonymised copy of this call has just been destroyed")
    headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "X-Callvault-Anonymised": "true"}
    if download:
        headers["Content-Disposition"] = f'attachment; filename="{clip.id}.anonymised.wav"'
    return Response(training.read_clip(runtime.keyring, runtime.store, clip), media_type="audio/wav", headers=headers)
