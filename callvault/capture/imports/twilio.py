"""Twilio recording callbacks (``RecordingStatusCallback``) → recordings, via a database queue.

The webhook only checks and records (fast 202): ``X-Twilio-Signature`` is validated with the
``twilio`` library's ``RequestValidator`` (HMAC-SHA1 over the public URL plus the sorted POST
fields, base64) against ``CALLVAULT_TWILIO_AUTH_TOKEN``; ``RecordingUrl`` must start with
``CALLVAULT_TWILIO_MEDIA_BASE_URL`` (a callback can never make us fetch from another host); the row
is keyed by ``RecordingSid``, so a repeated callback adds nothing. The worker job then fetches
``RecordingUrl + ".wav"`` (basic auth: API key or account SID + auth token; size limit; timeout; no
redirects followed), and runs the normal ingest pipeline. A failed fetch is retried with backoff,
up to ``CALLVAULT_TWILIO_MAX_ATTEMPTS``.

Metadata: ``call_id`` = ``twilio:<CallSid>:<RecordingSid>``; ``started_at`` = ``RecordingStartTime``
(RFC 2822) else the receipt time minus the duration; ``ended_at`` = start + ``RecordingDuration``.
RecordingStatusCallback carries no From/To, so direction, local number and extension come from
``CALLVAULT_TWILIO_DIRECTION`` / ``_LOCAL_NUMBER`` / ``_EXTENSION`` unless the callback URL's query
adds ``From``, ``To``, ``Direction`` (``inbound`` / ``outbound-*``) or ``Extension`` (Twilio signs
the full URL, query included). Dual-channel: Twilio puts the parent call (the caller, for an
inbound call) on channel 1, which is our left = remote party; for an outbound call the parent is the
agent's leg, so channels are swapped.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from contextlib import suppress
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from callvault.capture.admission import NotRecordable
from callvault.capture.imports.models import TwilioRecording, TwilioState
from callvault.capture.imports.pbx import _swapped
from callvault.capture.imports.settings import TwilioSettings
from callvault.capture.ingest import ingest_recording
from callvault.capture.metadata import normalise_number, parse_metadata
from callvault.core.clock import Clock
from callvault.core.errors import AuthenticationFailed, Conflict, FieldProblem, InvalidInput
from callvault.identity import service as identity

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from callvault.runtime import Runtime

log = logging.getLogger("callvault.capture.twilio")

ACTOR = "twilio-callback"
CLAIM_LEASE = timedelta(minutes=10)
REQUIRED = ("AccountSid", "CallSid", "RecordingSid", "RecordingUrl", "RecordingStatus")
_SID = {"AccountSid": "AC", "CallSid": "CA", "RecordingSid": "RE"}


def verify_signature(settings: TwilioSettings, *, url: str, params: Mapping[str, str], signature: str | None) -> None:
    """AuthenticationFailed unless ``signature`` is Twilio's for this URL and these fields."""
    if not signature:
        raise AuthenticationFailed("missing X-Twilio-Signature header")
    if not RequestValidator(settings.auth_token).validate(url, dict(params), signature):
        raise AuthenticationFailed("X-Twilio-Signature does not match (wrong auth token, or the public URL "
                                   "differs from CALLVAULT_TWILIO_PUBLIC_URL)")


def sign(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """What Twilio sends in X-Twilio-Signature (for tests and for checking a proxy set-up)."""
    return str(RequestValidator(auth_token).compute_signature(url, dict(params)))


def _problem(field: str, message: str) -> InvalidInput:
    return InvalidInput(f"Twilio callback: {field} {message}", [FieldProblem(field, message)])


def validate_callback(settings: TwilioSettings, params: Mapping[str, str]) -> dict[str, Any]:
    """The callback's fields, checked; InvalidInput naming the field otherwise."""
    for name in REQUIRED:
        if not params.get(name):
            raise _problem(name, "is missing")
    for name, prefix in _SID.items():
        value = params[name]
        if not (value.startswith(prefix) and len(value) == 34 and value[2:].isalnum()):
            raise _problem(name, f"is not a Twilio SID ({prefix} + 32 characters)")
    url = params["RecordingUrl"]
    parsed = urllib.parse.urlsplit(url)
    if not url.startswith(settings.media_base_url) or ".." in parsed.path or parsed.query or parsed.fragment \
            or "@" in parsed.netloc or any(c in url for c in "%\\ ") or not url.isprintable():
        raise _problem("RecordingUrl", f"is outside the configured media base URL {settings.media_base_url}; "
                                       "it was not fetched")
    out: dict[str, Any] = {"media_url": url, "status": params["RecordingStatus"][:32]}
    for name, key in (("RecordingChannels", "channels"), ("RecordingDuration", "duration_seconds")):
        raw = params.get(name, "") or "0"
        if not raw.isdigit() or int(raw) > 10 * 24 * 3600:
            raise _problem(name, "must be a whole number")
        out[key] = int(raw)
    started = None
    if params.get("RecordingStartTime"):
        try:
            started = parsedate_to_datetime(params["RecordingStartTime"])
        except (TypeError, ValueError):
            raise _problem("RecordingStartTime", "is not an RFC 2822 date") from None
        if started.tzinfo is None:
            raise _problem("RecordingStartTime", "has no time zone")
    out["started_at"] = started
    return out


def receive_callback(session: Session, *, settings: TwilioSettings, params: Mapping[str, str],
                     clock: Clock) -> tuple[TwilioRecording | None, bool]:
    """Queue the recording (idempotent by RecordingSid); returns the row and whether it was new. Never commits.

    An ``in-progress`` event (sent when ``recordingStatusCallbackEvent`` asks for it) queues nothing:
    the ``completed`` event for the same RecordingSid follows.
    """
    fields = validate_callback(settings, params)
    if fields["status"] == "in-progress":
        return None, False
    existing = session.get(TwilioRecording, params["RecordingSid"])
    if existing is not None:
        return existing, False
    now = clock.now()
    status = fields["status"]
    state = TwilioState.PENDING if status == "completed" else TwilioState.FAILED
    kept = {k: v[:200] for k, v in params.items()
            if k in ("From", "To", "Direction", "Extension", "RecordingSource", "RecordingTrack", "ErrorCode")}
    row = TwilioRecording(
        recording_sid=params["RecordingSid"], account_sid=params["AccountSid"], call_sid=params["CallSid"],
        media_url=fields["media_url"], status=status, channels=fields["channels"],
        duration_seconds=fields["duration_seconds"], started_at=fields["started_at"],
        source=params.get("RecordingSource", "")[:64], params=json.dumps(kept), state=state, attempts=0,
        error="" if state == TwilioState.PENDING else f"Twilio reported the recording as {status!r}",
        received_at=now, next_attempt_at=now, updated_at=now)
    session.add(row)
    try:
        session.flush()
    except SAIntegrityError:  # the same callback raced in on another node: that one is the record
        session.rollback()
        again = session.get(TwilioRecording, params["RecordingSid"])
        if again is None:
            raise Conflict("the callback could not be recorded; Twilio will retry") from None
        return again, False
    return row, True


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect could lead anywhere; the media must come from the configured base URL itself."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def fetch_media(settings: TwilioSettings, row: TwilioRecording) -> bytes:
    """GET ``RecordingUrl.wav`` with basic auth, at most ``max_bytes``; OSError/ValueError on failure."""
    url = row.media_url + ".wav"
    if not url.startswith(settings.media_base_url):
        raise ValueError("media URL outside the configured base")
    user = settings.api_key_sid or row.account_sid
    secret = settings.api_key_secret if settings.api_key_sid else settings.auth_token
    request = urllib.request.Request(url, headers={  # noqa: S310 - scheme checked by the base URL setting
        "Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode(),
        "Accept": "audio/wav"})
    opener = urllib.request.build_opener(_NoRedirect)
    with opener.open(request, timeout=settings.timeout_seconds) as response:
        if response.status != 200:
            raise OSError(f"HTTP {response.status}")
        length = response.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > settings.max_bytes:
            raise ValueError(f"recording is {length} bytes, over CALLVAULT_TWILIO_MAX_BYTES")
        data: bytes = response.read(settings.max_bytes + 1)
    if len(data) > settings.max_bytes:
        raise ValueError("recording is over CALLVAULT_TWILIO_MAX_BYTES")
    return data


def _claimable(now: datetime) -> Any:
    return or_((TwilioRecording.state == TwilioState.PENDING) & (TwilioRecording.next_attempt_at <= now),
               (TwilioRecording.state == TwilioState.FETCHING) & (TwilioRecording.claimed_at < now - CLAIM_LEASE))


def _claim(runtime: Runtime, exclude: set[str]) -> str | None:
    now = runtime.clock.now()
    with runtime.db.unit_of_work() as session:
        query = select(TwilioRecording.recording_sid).where(_claimable(now))
        if exclude:  # one try per recording per pass, however short the retry delay
            query = query.where(TwilioRecording.recording_sid.not_in(exclude))
        sid = session.scalar(query.order_by(TwilioRecording.received_at).limit(1).with_for_update(skip_locked=True))
        if sid is None:
            return None
        result = session.execute(update(TwilioRecording).where(
            TwilioRecording.recording_sid == sid, _claimable(now)).values(
            state=TwilioState.FETCHING, claimed_at=now, attempts=TwilioRecording.attempts + 1, updated_at=now))
        return sid if result.rowcount == 1 else None  # type: ignore[attr-defined]


def _set(runtime: Runtime, sid: str, **values: Any) -> None:
    with runtime.db.unit_of_work() as session:
        row = session.get(TwilioRecording, sid)
        if row is not None and row.state == TwilioState.FETCHING:
            for name, value in values.items():
                setattr(row, name, value)
            row.updated_at, row.claimed_at = runtime.clock.now(), None


def _metadata(runtime: Runtime, settings: TwilioSettings, row: TwilioRecording) -> dict[str, Any]:
    extra = json.loads(row.params or "{}")
    direction = settings.default_direction
    if extra.get("Direction"):
        direction = "inbound" if extra["Direction"] == "inbound" else "outbound"
    started = row.started_at or (row.received_at - timedelta(seconds=row.duration_seconds))
    extension = extra.get("Extension") or settings.extension
    user = identity.user_with_extension(runtime.db, extension)
    remote, local = (extra.get("From"), extra.get("To")) if direction == "inbound" else \
        (extra.get("To"), extra.get("From"))
    meta: dict[str, Any] = {
        "call_id": f"twilio:{row.call_sid}:{row.recording_sid}", "direction": direction,
        "started_at": started.isoformat(), "ended_at": (started + timedelta(seconds=row.duration_seconds)).isoformat(),
        "extension": extension, "agent": user.username if user else None, "team": user.team if user else None,
        "local_number": local or settings.local_number,
    }
    if remote:
        with suppress(ValueError):
            meta["remote_number"] = normalise_number(remote, runtime.settings.default_region)
    return {k: v for k, v in meta.items() if v is not None}


def process_one(runtime: Runtime, settings: TwilioSettings, *, exclude: set[str] | None = None) -> str | None:
    """Fetch and store one queued recording; returns its new state, or None when nothing is due."""
    sid = _claim(runtime, exclude if exclude is not None else set())
    if sid is None:
        return None
    if exclude is not None:
        exclude.add(sid)
    with runtime.db.unit_of_work() as session:
        row = session.get(TwilioRecording, sid)
        assert row is not None
        session.expunge(row)
    now = runtime.clock.now()
    try:
        data = fetch_media(settings, row)
    except (OSError, ValueError, urllib.error.URLError) as exc:
        error = f"fetch failed (attempt {row.attempts}): {exc}"[:500]
        if row.attempts >= settings.max_attempts:
            _set(runtime, sid, state=TwilioState.FAILED, error=f"gave up: {error}")
            return TwilioState.FAILED
        delay = settings.retry_seconds * (2 ** min(row.attempts - 1, 6))
        _set(runtime, sid, state=TwilioState.PENDING, error=error, next_attempt_at=now + timedelta(seconds=delay))
        return TwilioState.PENDING
    try:
        meta = parse_metadata(_metadata(runtime, settings, row), default_region=runtime.settings.default_region)
        audio = io.BytesIO(data)
        if row.channels == 2 and meta.direction == "outbound":
            audio = _swapped(data)
        result = ingest_recording(db=runtime.db, store=runtime.store, keyring=runtime.keyring, audio=audio,
                                  metadata=meta, actor=ACTOR, default_region=runtime.settings.default_region,
                                  clock=runtime.clock)
    except NotRecordable as exc:
        _set(runtime, sid, state=TwilioState.REFUSED, error=exc.message[:1000])
        return TwilioState.REFUSED
    except (InvalidInput, Conflict) as exc:
        _set(runtime, sid, state=TwilioState.FAILED, error=exc.message[:1000])
        return TwilioState.FAILED
    _set(runtime, sid, state=TwilioState.STORED, error="", recording_id=result.recording_id)
    return TwilioState.STORED


def process_due(runtime: Runtime, settings: TwilioSettings, *, limit: int = 100) -> int:
    handled, seen = 0, set[str]()
    for _ in range(limit):
        if process_one(runtime, settings, exclude=seen) is None:
            break
        handled += 1
    return handled
