"""Live monitoring end to end (A7): sipp sends a call to the SIPREC server, a supervisor listens in a real
browser (Debian chromium via Playwright: WebSocket + Web Audio), the agent sees it on their page, then
marks the call personal through the HTTP API and the supervisor's stream ends at once (tens of milliseconds
on an idle machine; ``bench.live`` holds the 500 ms bound), with the reason on screen. A role the policy
does not let monitor is refused, and every start/end is audited.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.typing import Origin

from callvault.api.routes_live import TAP_CLOSE_SECONDS
from callvault.audit.models import AuditEntry
from callvault.capture import control
from callvault.capture.models import RecordingControl
from callvault.core.clock import Clock
from callvault.identity import service as identity
from callvault.live.models import MonitoringSession
from callvault.policy import service as policy_service
from tests.siprec.support import rms, running_server, sipp_call, sipp_or_skip, stored_recording, wait_for_active_call
from tests.support.browser import launched, new_page, require_browser, sign_in, wait_for_js
from tests.support.env import CallvaultEnv, LiveServer

require_browser()

SHOTS = os.environ.get("CALLVAULT_SCREENSHOTS")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium that may start audio without a click (the listener's Web Audio output)."""
    with launched("--autoplay-policy=no-user-gesture-required") as chromium:
        yield chromium


@pytest.fixture(autouse=True)
def _need_sipp() -> None:
    sipp_or_skip()



def _signed_in_page(browser: Any, server: LiveServer, env: CallvaultEnv, username: str) -> Any:
    page = new_page(browser, server.base_url)
    sign_in(page, env, username)
    page.goto("/live")
    return page


def test_a_supervisor_listens_live_and_is_cut_off_when_the_call_turns_personal(
        browser: Any, server: LiveServer, env: CallvaultEnv, tmp_path: Path) -> None:
    runtime = env.runtime
    lead = _signed_in_page(browser, server, env, "lead")
    alice = _signed_in_page(browser, server, env, "alice")
    assert lead.get_by_label("Purpose").input_value() == "spot_check"  # the policy's default, named first
    with running_server(runtime, rtp_base=35000, tap=True) as srs, server.client("alice") as alice_api:
        with sipp_call(srs.port, tmp_path, "live_call_long.xml", clock=srs.manager.runtime.clock):
            call = wait_for_active_call(runtime)
            row = lead.locator(f'#live-calls tr[data-call-id="{call.call_id}"]')
            row.wait_for()
            assert "alice" in row.inner_text() and "inbound" in row.inner_text()
            row.get_by_role("button", name="Listen").click()
            wait_for_js(lead, "Number(document.getElementById('frames').textContent) >= 100")
            frames = lead.locator("#frames")
            assert int(frames.get_attribute("data-decoded") or 0) >= 100  # decoded into AudioBuffers
            latency = int(frames.get_attribute("data-latency-ms") or 99_999)
            assert latency < 1000, f"95th-percentile arrival latency + jitter buffer was {latency} ms"
            assert "Listening (spot check)" in lead.locator("#listen-status").inner_text()
            # The agent sees who is listening, and why.
            alice.locator(".monitored", has_text="lead").wait_for()
            assert "spot check" in alice.locator(".monitored").inner_text()
            if SHOTS:  # CALLVAULT_SCREENSHOTS=docs/screenshots refreshes the pictures in docs
                lead.screenshot(path=str(Path(SHOTS) / "live-listening.png"), full_page=True)
                alice.screenshot(path=str(Path(SHOTS) / "live-agent.png"), full_page=True)

            # This pytest process holds every earlier test's objects (and the capture server, the web
            # server and the browser driver besides); one full collection of that heap stops every
            # thread for hundreds of milliseconds, which a `callvault serve` process never carries.
            # Set it aside for the timed part, so the figure is the product's path.
            gc.collect()
            gc.freeze()
            try:
                sent_ms = time.time() * 1000
                resp = alice_api.post(f"/api/v1/calls/{call.call_id}/control", json={"action": "personal"})
                assert resp.status_code == 200, resp.text
                wait_for_js(lead, "document.getElementById('listen-status').dataset.closedAt !== undefined")
            finally:
                gc.unfreeze()
            status = lead.locator("#listen-status")
            closed_ms = int(status.get_attribute("data-closed-at") or 0)
            assert status.get_attribute("data-reason") == "personal"
            assert "personal" in status.inner_text()
            cut_off = closed_ms - sent_ms
            print(f"\nlive monitoring: control POST -> browser closed in {cut_off:.0f} ms; "
                  f"arrival latency p95 + jitter buffer {latency} ms")
            # Cut off by the control itself, not by the capture side letting go of the tap later (A7): a bound
            # on that order (TAP_CLOSE_SECONDS), not a speed figure, which a loaded machine stretched to 758 ms.
            assert cut_off < TAP_CLOSE_SECONDS * 1000, \
                f"the listener was cut off {cut_off:.0f} ms after the call was marked personal"
            heard = int(frames.text_content() or 0)
            time.sleep(0.5)
            assert int(frames.text_content() or 0) == heard, "audio kept arriving after the call turned personal"
        srs.wait_idle()
    with runtime.db.unit_of_work() as session:
        [monitoring] = session.scalars(select(MonitoringSession).where(MonitoringSession.call_id == call.call_id))
        assert monitoring.listener == "lead" and monitoring.purpose == "spot_check"
        assert monitoring.ended_at is not None and monitoring.end_reason == "personal"
        entries = list(session.scalars(select(AuditEntry).where(AuditEntry.object_id == call.call_id)
                                       .order_by(AuditEntry.seq)))
        started = [e for e in entries if e.action == "call.monitor_started"]
        ended = [e for e in entries if e.action == "call.monitor_ended"]
        assert [(e.decision, e.purpose, e.actor) for e in started] == [("allow", "spot_check", "lead")]
        assert [(e.purpose, e.details["end"]) for e in ended] == [("spot_check", "personal")]


def _try_listen(url: str, token: str) -> tuple[dict[str, Any], int | None]:
    # The sync client: Playwright's sync API keeps an event loop running in this thread.
    with connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        message = json.loads(ws.recv(timeout=10))
        with contextlib.suppress(ConnectionClosed):
            ws.recv(timeout=10)
        return message, ws.close_code


def test_a_role_without_the_right_is_refused_and_the_refusal_is_audited(
        server: LiveServer, env: CallvaultEnv, tmp_path: Path) -> None:
    runtime = env.runtime
    with running_server(runtime, rtp_base=35400, tap=True) as srs:
        with sipp_call(srs.port, tmp_path, clock=srs.manager.runtime.clock):
            call = wait_for_active_call(runtime)
            ws_base = server.base_url.replace("http://", "ws://")
            for username, purpose in (("bob", "spot_check"), ("it", "health_safety_crime"),
                                      ("lead", "training")):
                with server.client(username) as client:
                    token = client.headers["Authorization"].split()[1]
                url = f"{ws_base}/api/v1/live/calls/{call.call_id}/listen?purpose={purpose}"
                message, code = _try_listen(url, token)
                assert message["type"] == "refused" and code == 4403, (username, message, code)
                assert "A7" in message["clauses"]
        srs.wait_idle()
    with runtime.db.unit_of_work() as session:
        denials = list(session.scalars(select(AuditEntry).where(AuditEntry.action == "call.monitor_started",
                                                                AuditEntry.decision == "deny",
                                                                AuditEntry.object_id == call.call_id)))
        assert sorted((e.actor, e.purpose) for e in denials) == [
            ("bob", "spot_check"), ("it", "health_safety_crime"), ("lead", "training")]
        assert session.scalar(select(MonitoringSession).where(MonitoringSession.call_id == call.call_id)) is None


def test_the_agent_pauses_and_resumes_their_call_from_the_calls_now_page(
        browser: Any, server: LiveServer, env: CallvaultEnv, tmp_path: Path) -> None:
    runtime = env.runtime
    alice = _signed_in_page(browser, server, env, "alice")
    with running_server(runtime, rtp_base=35800, tap=True) as srs:
        with sipp_call(srs.port, tmp_path, "live_call_long.xml", clock=srs.manager.runtime.clock):
            call = wait_for_active_call(runtime)
            card = alice.locator(f'.own-call[data-call-id="{call.call_id}"]')
            card.wait_for()  # the page notices the new call by itself
            while _since(call.started_at, runtime.clock) < 2.0:
                time.sleep(0.02)
            pause_at = _since(call.started_at, runtime.clock)
            card.get_by_role("button", name="Pause recording").click()
            assert "Pause recording: sent to the call" in alice.locator(".flash").inner_text()
            resume = alice.locator(f'.own-call[data-call-id="{call.call_id}"]').get_by_role(
                "button", name="Resume recording")
            deadline = time.monotonic() + 3
            while not resume.count() and time.monotonic() < deadline:
                alice.reload()
            time.sleep(max(0.0, pause_at + 2.0 - _since(call.started_at, runtime.clock)))
            resume_at = _since(call.started_at, runtime.clock)
            resume.click()
            assert "Resume recording: sent to the call" in alice.locator(".flash").inner_text()
        srs.wait_idle()
    with runtime.db.unit_of_work() as session:
        events = {c.kind: c for c in session.scalars(select(RecordingControl).where(
            RecordingControl.call_id == call.call_id))}
    # The buttons file the instant the server got the click; the recording is silent exactly from there.
    pause_event, resume_event = events["pause"].at, events["resume"].at
    assert pause_event is not None and resume_event is not None
    paused = (pause_event - call.started_at).total_seconds()
    resumed = (resume_event - call.started_at).total_seconds()
    assert pause_at <= paused < pause_at + 1.5 and resume_at <= resumed < resume_at + 1.5
    [rec] = stored_recording(runtime, call.call_id)
    rate = rec.rate
    silent = slice(int((paused + 0.03) * rate), int((resumed - 0.03) * rate))
    assert rms(rec.audio[silent]) < 1, "audio of the span the agent paused was kept"
    after = slice(int((resumed + 0.6) * rate), int((resumed + 1.6) * rate))
    assert rms(rec.audio[after, 0]) > 1000 and rms(rec.audio[after, 1]) > 1000
    before = slice(int(0.5 * rate), int((paused - 0.1) * rate))
    assert rms(rec.audio[before, 0]) > 1000
    assert all(e.outcome.startswith("applied live") for e in events.values())


def _since(start: datetime, clock: Clock) -> float:
    """Seconds into the call by the capture's own clock (the one that stamped ``start``)."""
    return (clock.now() - start).total_seconds()


def test_a_signed_in_browser_session_cannot_be_used_from_another_site(browser: Any, server: LiveServer,
                                                                      env: CallvaultEnv) -> None:
    lead = _signed_in_page(browser, server, env, "lead")
    cookies = "; ".join(f"{c['name']}={c['value']}" for c in lead.context.cookies())
    url = server.base_url.replace("http://", "ws://") + "/api/v1/live/calls/siprec:nobody/listen?purpose=spot_check"

    def attempt(origin: str) -> tuple[dict[str, Any], int | None]:
        with connect(url, additional_headers={"Cookie": cookies}, origin=Origin(origin)) as ws:
            message = json.loads(ws.recv(timeout=10))
            with contextlib.suppress(ConnectionClosed):
                ws.recv(timeout=10)
            return message, ws.close_code

    foreign, code = attempt("http://evil.example")
    assert (foreign["type"], code) == ("refused", 4403) and "Origin" in foreign["message"]
    own, code = attempt(server.base_url)  # the same session from its own page gets as far as the call
    assert (own["type"], code) == ("refused", 4404) and "not being recorded now" in own["message"]


def test_a_control_filed_on_another_node_cuts_the_listener_through_the_capture_process(
        server: LiveServer, env: CallvaultEnv, tmp_path: Path) -> None:
    """The relay's own cut-off only covers controls filed through this server; one filed anywhere else
    (here: straight into the database, as another API node would) reaches the listener through the
    capture process's poll and the tap, with its reason and close code."""
    runtime = env.runtime
    with server.client("lead") as client:
        token = client.headers["Authorization"].split()[1]
    with running_server(runtime, rtp_base=36200, tap=True) as srs:
        with sipp_call(srs.port, tmp_path, "live_call_long.xml", clock=srs.manager.runtime.clock):
            call = wait_for_active_call(runtime)
            url = (server.base_url.replace("http://", "ws://")
                   + f"/api/v1/live/calls/{call.call_id}/listen?purpose=spot_check")
            with connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
                assert json.loads(ws.recv(timeout=10))["type"] == "hello"
                while not isinstance(ws.recv(timeout=10), bytes):  # audio is flowing
                    pass
                with runtime.db.unit_of_work() as session:
                    policy = policy_service.current_policy(session)
                    agent = identity.actor_for(session, identity.get_user(session, "alice"), policy)
                    control.file_control(session, policy=policy, actor=agent, kind="stop", call_id=call.call_id,
                                         at=runtime.clock.now())
                filed = time.monotonic()
                ended = None
                with contextlib.suppress(ConnectionClosed):
                    while True:
                        message = ws.recv(timeout=5)
                        if isinstance(message, str) and json.loads(message)["type"] == "ended":
                            ended = json.loads(message)
                waited = time.monotonic() - filed
            assert ended is not None and ended["reason"] == "stopped" and ws.close_code == 4003
            assert waited < 2, f"the listener heard on for {waited:.2f} s after the stop"
        srs.wait_idle()
