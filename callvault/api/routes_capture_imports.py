"""Cloud telephony recording callbacks: ``POST /capture/twilio/recording-status`` (docs/pbx-imports.md).

No user sign-in: Twilio's signature (X-Twilio-Signature, the account's auth token) is the
credential. The handler validates and queues (202); the worker fetches the media. A bad signature is
refused with 403 and audited; a callback naming media outside the configured base URL is refused
with 422 and audited, and nothing is fetched.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from callvault.api.deps import get_runtime
from callvault.audit import service as audit
from callvault.capture.imports import twilio
from callvault.capture.imports.settings import twilio_settings
from callvault.core.errors import AuthenticationFailed, InvalidInput
from callvault.runtime import Runtime

router = APIRouter(tags=["capture imports"])

MAX_CALLBACK_BYTES = 16 * 1024
CALLBACK_PATH = "/api/v1/capture/twilio/recording-status"


def _handle(runtime: Runtime, url: str, params: dict[str, str], extras: dict[str, str], signature: str | None,
            source_ip: str | None) -> Response:
    settings = twilio_settings(runtime.settings.env)
    try:
        twilio.verify_signature(settings, url=url, params=params, signature=signature)
        with runtime.db.unit_of_work() as session:
            row, created = twilio.receive_callback(session, settings=settings, params={**extras, **params},
                                                   clock=runtime.clock)
            if row is None:  # an in-progress event: nothing to fetch yet
                return Response(status_code=204)
            if created:
                audit.append(session, audit.AuditEvent(
                    actor=twilio.ACTOR, action="capture.twilio_callback", decision="info", object_type="call",
                    object_id=row.call_sid, source_ip=source_ip,
                    details={"recording_sid": row.recording_sid, "status": row.status, "state": row.state}),
                    clock=runtime.clock)
    except (AuthenticationFailed, InvalidInput) as exc:
        with runtime.db.unit_of_work() as session:
            audit.append(session, audit.AuditEvent(
                actor=twilio.ACTOR, action="capture.twilio_callback", decision="deny", source_ip=source_ip,
                reason=exc.message[:300], details={"recording_sid": params.get("RecordingSid", "")[:64]}),
                clock=runtime.clock)
        if isinstance(exc, AuthenticationFailed):
            return JSONResponse({"error": "forbidden", "message": exc.message}, status_code=403)
        raise
    return Response(status_code=202 if created else 200)


@router.post(CALLBACK_PATH.removeprefix("/api/v1"), status_code=202, max_body_size=MAX_CALLBACK_BYTES,
             responses={200: {"description": "this RecordingSid was already received; nothing changed"},
                        403: {"description": "missing or wrong X-Twilio-Signature"},
                        422: {"description": "a field is missing or invalid, or RecordingUrl is outside the "
                                             "configured media base URL"}})
async def twilio_recording_status(request: Request, runtime: Runtime = Depends(get_runtime)) -> Response:
    """Twilio's RecordingStatusCallback (form-encoded). Queued for the worker, which fetches the WAV."""
    body = await request.body()
    if len(body) > MAX_CALLBACK_BYTES:
        return JSONResponse({"error": "too_large", "message": "callback body too large"}, status_code=413)
    form = await request.form()
    params = {k: v for k, v in form.items() if isinstance(v, str)}
    public = twilio_settings(runtime.settings.env).public_url
    url = public + (f"?{request.url.query}" if request.url.query and "?" not in public else "") if public \
        else str(request.url)
    # The callback URL's own query may add what RecordingStatusCallback lacks (signed as part of the URL).
    extra = {k: v for k, v in request.query_params.items() if k in ("From", "To", "Direction", "Extension")}
    source_ip = getattr(request.state, "client_ip", None)
    return await run_in_threadpool(_handle, runtime, url, params, extra, request.headers.get("x-twilio-signature"),
                                   source_ip)
