"""The demo's SIPREC client (callvault.demo.src) against the real capture server: what the demo's calls
look like to the product — a live call of the agent's extension, then a stored two-party recording."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from callvault.demo.caller import dialogue
from callvault.demo.src import CallParties, SipError, place_call
from tests.siprec.support import dominant_frequency, rms, running_server, stored_recording, wait_for_active_call
from tests.support.env import CallvaultEnv


def test_a_demo_call_is_live_on_the_agents_extension_then_stored_with_both_voices(env: CallvaultEnv) -> None:
    parties = CallParties(extension="2001", agent_name="Alice", caller_number="+14165550190",
                          announced_at=env.runtime.clock.now(), announcement_version="1")
    t = np.arange(32000) / 8000
    audio = ((8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16),  # the agent
             (8000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16))  # the caller
    done: dict[str, object] = {}
    with running_server(env.runtime, rtp_base=35200) as srs:
        caller = threading.Thread(target=lambda: done.update(
            call_id=place_call("127.0.0.1", srs.port, parties, audio, stop=threading.Event())))
        caller.start()
        live = wait_for_active_call(env.runtime, "2001")
        caller.join(30)
        srs.wait_idle()
    assert live.direction == "inbound" and live.agent == "alice"
    [rec] = stored_recording(env.runtime, f"siprec:{done['call_id']}")
    assert rec.row.extension == "2001" and rec.row.remote_number == "+14165550190"
    assert not rec.row.quarantined and rec.row.consent_state == "announcement"
    assert 3.5 <= rec.row.duration_seconds <= 5.0
    # Each party's audio reached its channel: the caller on channel 1 (left), the agent on channel 2.
    middle = slice(8000, 24000)
    assert abs(dominant_frequency(rec.audio[middle, 0], rec.rate) - 1000) < 20
    assert abs(dominant_frequency(rec.audio[middle, 1], rec.rate) - 440) < 20


def test_the_demo_dialogue_fills_the_call_with_both_voices() -> None:
    agent, caller = dialogue("Alice", 30.0)
    assert len(agent) == len(caller) == 30 * 8000
    assert rms(agent) > 100 and rms(caller) > 100


def test_a_call_the_server_refuses_is_reported_not_retried(env: CallvaultEnv) -> None:
    """Extension 2099 is excluded by policy A (personal line): the server refuses, the caller says why."""
    parties = CallParties(extension="2099", agent_name="Private", caller_number="+14165550191")
    with running_server(env.runtime, rtp_base=35600) as srs, pytest.raises(SipError, match=r"answered SIP/2\.0 4"):
        place_call("127.0.0.1", srs.port, parties, dialogue("Private", 1.0), stop=threading.Event())
