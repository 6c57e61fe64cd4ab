"""Twilio RecordingStatusCallback through the real server, with a fake Twilio media server on loopback."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import cast

import httpx
import pytest
from sqlalchemy import select

from callvault.audit.models import AuditEntry
from callvault.capture.imports import twilio
from callvault.capture.imports.jobs import twilio_fetch
from callvault.capture.imports.models import TwilioRecording, TwilioState
from tests.capture_imports.support import dominant_frequency, stored, tone_wav
from tests.support.env import CallvaultEnv, LiveServer

ACCOUNT = "AC" + "a1" * 16
TOKEN = "twilio-auth-token-for-tests-0123"
PATH = "/api/v1/capture/twilio/recording-status"


@dataclass
class FakeTwilio:
    """Serves ``/2010-04-01/Accounts/<AC>/Recordings/<RE>.wav`` with basic auth, failing on request."""

    wavs: dict[str, bytes] = field(default_factory=dict)
    fail_next: int = 0
    requests: list[str] = field(default_factory=list)
    base: str = ""


@pytest.fixture(scope="module")
def fake_twilio() -> Iterator[FakeTwilio]:
    state = FakeTwilio()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(self.path)
            expected = "Basic " + base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.end_headers()
                return
            if state.fail_next > 0:
                state.fail_next -= 1
                self.send_response(503)
                self.end_headers()
                return
            body = state.wavs.get(self.path)
            if body is None:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "audio/x-wav")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}/2010-04-01/Accounts/"
    yield state
    httpd.shutdown()
    httpd.server_close()


def _env_vars(env: CallvaultEnv) -> dict[str, str]:
    """The environment the server reads its settings from (a plain dict, as load_settings builds it)."""
    return cast(dict[str, str], env.runtime.settings.env)


@pytest.fixture(scope="module")
def configured(env: CallvaultEnv, fake_twilio: FakeTwilio) -> CallvaultEnv:
    _env_vars(env).update({
        "CALLVAULT_TWILIO_AUTH_TOKEN": TOKEN, "CALLVAULT_TWILIO_MEDIA_BASE_URL": fake_twilio.base,
        "CALLVAULT_TWILIO_EXTENSION": "2001", "CALLVAULT_TWILIO_DIRECTION": "inbound",
        "CALLVAULT_TWILIO_RETRY_SECONDS": "0", "CALLVAULT_TWILIO_MAX_ATTEMPTS": "3"})
    return env


CALL_START = datetime.now(UTC).replace(hour=16, minute=0, second=0, microsecond=0) - timedelta(days=2)
"""When the callbacks' recordings started: recent by the clock the suite runs on (A3: an older call whose
retention has ended is refused on arrival)."""


def _sid(prefix: str, n: int) -> str:
    return prefix + f"{n:032x}"


def _callback(fake: FakeTwilio, n: int, *, channels: int = 2, **extra: str) -> dict[str, str]:
    rec = _sid("RE", n)
    url = f"{fake.base}{ACCOUNT}/Recordings/{rec}"
    return {"AccountSid": ACCOUNT, "CallSid": _sid("CA", n), "RecordingSid": rec, "RecordingUrl": url,
            "RecordingStatus": "completed", "RecordingDuration": "2", "RecordingChannels": str(channels),
            "RecordingStartTime": format_datetime(CALL_START), "RecordingSource": "DialVerb", **extra}


def _serve(fake: FakeTwilio, tmp_path: Path, params: dict[str, str], freqs: tuple[float, ...]) -> None:
    wav = tone_wav(tmp_path / f"{params['RecordingSid']}.wav", freqs=freqs)
    path = "/" + params["RecordingUrl"].split("/", 3)[3] + ".wav"
    fake.wavs[path] = wav.read_bytes()


def _post(server: LiveServer, params: dict[str, str], *, signature: str | None = None,
          query: str = "") -> httpx.Response:
    url = server.base_url + PATH + (f"?{query}" if query else "")
    sig = signature if signature is not None else twilio.sign(TOKEN, url, params)
    return httpx.post(url, data=params, headers={"X-Twilio-Signature": sig}, timeout=10)


def _rows(env: CallvaultEnv, sid: str) -> list[TwilioRecording]:
    with env.runtime.db.unit_of_work() as session:
        rows = list(session.scalars(select(TwilioRecording).where(TwilioRecording.recording_sid == sid)))
        for row in rows:
            session.expunge(row)
        return rows


def test_signed_callback_is_fetched_and_stored_once(configured: CallvaultEnv, server: LiveServer,
                                                    fake_twilio: FakeTwilio, tmp_path: Path) -> None:
    params = _callback(fake_twilio, 1)
    _serve(fake_twilio, tmp_path, params, (700, 1500))  # channel 1 = parent call (the caller), channel 2 = agent
    in_progress = {**params, "RecordingStatus": "in-progress"}
    assert _post(server, in_progress, query="From=%2B16135550123").status_code == 204
    assert _rows(configured, params["RecordingSid"]) == []
    response = _post(server, params, query="From=%2B16135550123")
    assert response.status_code == 202, response.text
    assert _post(server, params, query="From=%2B16135550123").status_code == 200  # Twilio retried the callback

    assert twilio_fetch(configured.runtime) == 1
    assert twilio_fetch(configured.runtime) == 0
    [rec] = stored(configured.runtime, f"twilio:{params['CallSid']}:{params['RecordingSid']}")
    assert (rec.row.direction, rec.row.extension, rec.row.agent, rec.row.remote_number) == \
        ("inbound", "2001", "alice", "+16135550123")
    assert rec.row.started_at == CALL_START
    assert abs(dominant_frequency(rec.audio[:, 0], rec.rate) - 700) < 20
    assert abs(dominant_frequency(rec.audio[:, 1], rec.rate) - 1500) < 20
    [row] = _rows(configured, params["RecordingSid"])
    assert (row.state, row.recording_id, row.attempts) == (TwilioState.STORED, rec.row.id, 1)


def test_bad_signature_is_refused_and_audited(configured: CallvaultEnv, server: LiveServer,
                                              fake_twilio: FakeTwilio) -> None:
    params = _callback(fake_twilio, 2)
    forged = twilio.sign("some-other-token-entirely-000000", server.base_url + PATH, params)
    assert _post(server, params, signature=forged).status_code == 403
    assert _post(server, params, signature="").status_code == 403
    tampered = {**params, "RecordingDuration": "3"}
    assert _post(server, tampered, signature=twilio.sign(TOKEN, server.base_url + PATH, params)).status_code == 403
    assert _rows(configured, params["RecordingSid"]) == []
    with configured.runtime.db.unit_of_work() as session:
        denials = list(session.scalars(select(AuditEntry).where(AuditEntry.action == "capture.twilio_callback",
                                                                 AuditEntry.decision == "deny")))
        assert any("X-Twilio-Signature" in d.reason for d in denials)


def test_media_outside_the_configured_base_is_never_fetched(configured: CallvaultEnv, server: LiveServer,
                                                            fake_twilio: FakeTwilio) -> None:
    before = len(fake_twilio.requests)
    for url in ("http://127.0.0.2:9/2010-04-01/Accounts/x/Recordings/RE1",
                fake_twilio.base + "../../evil/Recordings/RE1",
                fake_twilio.base.replace("http://", "http://user@") + "x",
                fake_twilio.base + "%2e%2e/%2e%2e/evil/Recordings/RE1"):
        params = {**_callback(fake_twilio, 3), "RecordingUrl": url}
        response = _post(server, params)
        assert response.status_code == 422, response.text
        assert "outside the configured media base URL" in response.json()["message"]
    assert _rows(configured, _sid("RE", 3)) == []
    assert twilio_fetch(configured.runtime) == 0 and len(fake_twilio.requests) == before


def test_fetch_failure_is_retried_then_stored(configured: CallvaultEnv, server: LiveServer,
                                              fake_twilio: FakeTwilio, tmp_path: Path) -> None:
    params = _callback(fake_twilio, 4, channels=1)
    _serve(fake_twilio, tmp_path, params, (1000,))
    assert _post(server, params).status_code == 202
    fake_twilio.fail_next = 1
    assert twilio_fetch(configured.runtime) == 1
    [row] = _rows(configured, params["RecordingSid"])
    assert row.state == TwilioState.PENDING and "HTTP Error 503" in row.error and row.attempts == 1
    assert twilio_fetch(configured.runtime) == 1
    [row] = _rows(configured, params["RecordingSid"])
    assert (row.state, row.attempts) == (TwilioState.STORED, 2)
    assert len(stored(configured.runtime, f"twilio:{params['CallSid']}:{params['RecordingSid']}")) == 1

    # A recording that never becomes available: given up after CALLVAULT_TWILIO_MAX_ATTEMPTS, with the reason.
    missing = _callback(fake_twilio, 5, channels=1)
    assert _post(server, missing).status_code == 202
    for _ in range(3):
        twilio_fetch(configured.runtime)
    [row] = _rows(configured, missing["RecordingSid"])
    assert row.state == TwilioState.FAILED and row.error.startswith("gave up") and "404" in row.error


def test_public_url_behind_a_proxy_is_what_is_signed(configured: CallvaultEnv, server: LiveServer,
                                                      fake_twilio: FakeTwilio, tmp_path: Path) -> None:
    public = "https://recorder.example.com/api/v1/capture/twilio/recording-status"
    _env_vars(configured)["CALLVAULT_TWILIO_PUBLIC_URL"] = public
    try:
        params = _callback(fake_twilio, 6, channels=1)
        _serve(fake_twilio, tmp_path, params, (1000,))
        assert _post(server, params).status_code == 403  # signed for the internal URL: not what Twilio signs
        assert _post(server, params, signature=twilio.sign(TOKEN, public, params)).status_code == 202
        assert twilio_fetch(configured.runtime) == 1
    finally:
        del _env_vars(configured)["CALLVAULT_TWILIO_PUBLIC_URL"]


def test_outbound_dual_channel_puts_the_remote_party_left(configured: CallvaultEnv, server: LiveServer,
                                                         fake_twilio: FakeTwilio, tmp_path: Path) -> None:
    params = _callback(fake_twilio, 7)
    _serve(fake_twilio, tmp_path, params, (440, 1000))  # parent = the agent's leg on an outbound call
    assert _post(server, params, query="Direction=outbound-api&To=%2B16135550199").status_code == 202
    assert twilio_fetch(configured.runtime) == 1
    [rec] = stored(configured.runtime, f"twilio:{params['CallSid']}:{params['RecordingSid']}")
    assert (rec.row.direction, rec.row.remote_number) == ("outbound", "+16135550199")
    assert abs(dominant_frequency(rec.audio[:, 0], rec.rate) - 1000) < 20
    assert abs(dominant_frequency(rec.audio[:, 1], rec.rate) - 440) < 20
