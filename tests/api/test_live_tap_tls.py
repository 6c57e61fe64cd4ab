"""Live call audio crosses the network between a capture node and an API node encrypted, never in clear.

An outside tester pointed out that the live tap spoke plain ``ws://``: on any network segment between a capture
node and an API node, whoever could see the wire heard every monitored call (and read the one-time ticket). Now
the tap speaks TLS when given a certificate, the API node verifies it (``CALLVAULT_LIVE_TAP_CA``), the capture
command refuses a tap off loopback without one, and the relay refuses a plain tap off loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner
from websockets.exceptions import ConnectionClosed, InvalidMessage
from websockets.sync.client import connect

from callvault.api import routes_live
from callvault.cli.main import app as cli_app
from callvault.live.service import Started
from tests.conftest import POLICY_A
from tests.siprec.support import running_server, sipp_call, sipp_or_skip, wait_for_active_call
from tests.support.certs import self_signed
from tests.support.env import CallvaultEnv, LiveServer, served


@pytest.fixture
def tls_world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[LiveServer, CallvaultEnv, Path, Path]]:
    """An API node that trusts the tap's (self-signed) certificate, and that certificate with its key."""
    cert, key = self_signed(tmp_path, "tap")
    (tmp_path / "db").mkdir()
    with served(request.config.getoption("--db"), tmp_path / "db", POLICY_A,
                {"CALLVAULT_LIVE_TAP_CA": str(cert)}) as (server, env):
        yield server, env, cert, key


def test_a_tls_tap_carries_the_call_to_the_listener_and_refuses_a_plain_client(
        tls_world: tuple[LiveServer, CallvaultEnv, Path, Path], tmp_path: Path) -> None:
    sipp_or_skip()
    server, env, cert, key = tls_world
    runtime = env.runtime
    with server.client("lead") as client:
        token = client.headers["Authorization"].split()[1]
    with running_server(runtime, rtp_base=36600, tap=True, tap_certfile=cert, tap_keyfile=key) as srs:
        with sipp_call(srs.port, tmp_path, "live_call_long.xml", clock=srs.manager.runtime.clock):
            call = wait_for_active_call(runtime)
            assert call.tap_url is not None and call.tap_url.startswith("wss://127.0.0.1:"), call.tap_url
            # Whoever speaks plain WebSocket to the tap gets no handshake, let alone audio.
            plain = call.tap_url.replace("wss://", "ws://") + f"/calls/{call.call_id}?ticket=guess"
            with pytest.raises((InvalidMessage, ConnectionClosed, OSError, TimeoutError)), \
                    connect(plain, open_timeout=5) as ws:
                ws.recv(timeout=5)
            url = (server.base_url.replace("http://", "ws://")
                   + f"/api/v1/live/calls/{call.call_id}/listen?purpose=spot_check")
            with connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
                hello = json.loads(ws.recv(timeout=10))
                assert hello["type"] == "hello", hello
                loudest = 0
                for _ in range(200):  # about 2 s of the two parties' 20 ms packets
                    frame = ws.recv(timeout=10)
                    if isinstance(frame, bytes):
                        loudest = max(loudest, int(np.abs(np.frombuffer(frame[8:], "<i2")).max(initial=0)))
                    if loudest > 1000:
                        break
                assert loudest > 1000, "the listener heard only silence through the TLS tap"
        srs.wait_idle()


def test_the_relay_checks_the_taps_certificate_and_opens_no_plain_tap_off_loopback(
        tls_world: tuple[LiveServer, CallvaultEnv, Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    sipp_or_skip()
    _server, env, cert, key = tls_world
    with running_server(env.runtime, rtp_base=36700, tap=True, tap_certfile=cert, tap_keyfile=key) as srs:
        with sipp_call(srs.port, tmp_path, "live_call_long.xml", clock=srs.manager.runtime.clock):
            call = wait_for_active_call(env.runtime)
            assert call.tap_url is not None
            started = Started("m-1", "no-ticket", call.tap_url, "both")
            caplog.set_level(logging.WARNING, logger="callvault.live")
            # An API node that does not trust the tap's certificate does not open it (a stranger's tap, or a
            # man in the middle, looks just like this).
            assert asyncio.run(routes_live._open_tap(started, call.call_id, ca=None)) is None
            assert "CERTIFICATE_VERIFY_FAILED" in caplog.text
            trusting = asyncio.run(_open_and_close(started, call.call_id, cert))
            assert trusting, "the API node that trusts the certificate could not open the tap"
        srs.wait_idle()

    def no_connection(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"the relay tried to open a plain tap off loopback: {args}")

    monkeypatch.setattr(routes_live, "connect", no_connection)
    caplog.clear()
    remote = Started("m-2", "ticket", "ws://10.1.2.3:5080", "both")
    assert asyncio.run(routes_live._open_tap(remote, "siprec:x", ca=None)) is None
    assert "plain ws:// off loopback" in caplog.text


async def _open_and_close(started: Started, call_id: str, ca: Path) -> bool:
    tap = await routes_live._open_tap(started, call_id, ca=ca)
    if tap is None:
        return False
    with contextlib.suppress(Exception):
        await tap.close()
    return True


@pytest.mark.parametrize(("args", "says"), [
    (["--tap", "10.1.2.3:5080"], "off loopback it must be encrypted"),
    (["--tap", "0.0.0.0:5080", "--tap-cert", "{cert}"], "the one address the API nodes reach"),
    (["--tap-cert", "{cert}"], "--tap-cert and --tap-key need --tap"),
    (["--tap", "127.0.0.1:5080", "--tap-key", "{key}"], "--tap-key needs --tap-cert"),
    (["--tap", "127.0.0.1:5080", "--tap-cert", "/nonexistent/tap.pem"], "does not exist"),
])
def test_the_capture_command_refuses_a_tap_that_would_carry_audio_in_clear_or_half_configured(
        env: CallvaultEnv, tmp_path: Path, args: list[str], says: str) -> None:
    cert, key = self_signed(tmp_path, "tap")
    filled = [a.format(cert=cert, key=key) for a in args]
    result = CliRunner().invoke(cli_app, ["capture", "siprec", "--listen", "127.0.0.1:5066", *filled,
                                          "--data-dir", str(env.data_dir)], env=env.cli_env)
    assert result.exit_code == 2, result.output
    assert says in " ".join(result.output.split())
