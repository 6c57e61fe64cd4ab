"""The SIPREC recording server against a real SRC (sipp), with RTP for both streams.

Each test asserts on what a person would find in the catalog afterwards: one recording, the
right length, the remote party on the left channel and the agent on the right (told apart by
their tones, not by label order), silence where the SRC paused, metadata mapped to the agent.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from callvault.audit.models import AuditEntry
from tests.siprec.support import (
    dominant_frequency,
    rms,
    run_sipp,
    running_server,
    sent_call_seconds,
    sipp_or_skip,
    stored_recording,
)
from tests.support.env import CallvaultEnv


@pytest.fixture(autouse=True)
def _need_sipp() -> None:
    sipp_or_skip()


def test_rfc7865_call_with_pause_becomes_a_two_channel_recording(isolated_env: CallvaultEnv, tmp_path: Path) -> None:
    runtime = isolated_env.runtime
    with running_server(runtime, rtp_base=31000) as server:
        run_sipp("rfc7865_pause_resume.xml", server.port, tmp_path, trace_messages=True)
        server.wait_idle()
    [rec] = stored_recording(runtime)
    row, audio, rate = rec.row, rec.audio, rec.rate
    assert row.state == "available"
    assert (rate, audio.shape[1]) == (8000, 2)
    # INVITE at 0 s, pause at ~2 s, resume at ~3.5 s, BYE at ~5.5 s (at least: later on a busy machine).
    # The recording covers the call sipp placed, from its INVITE to its BYE. It ends when the server handles
    # the BYE, which a machine busy with other work delays (0.7 s seen with both cores loaded): an upper
    # bound that tells a late BYE from a recording that ran on (a lost BYE, a 4-hour timer).
    call = sent_call_seconds(tmp_path)
    assert row.duration_seconds >= 5.0 and row.duration_seconds >= call - 0.5
    assert row.duration_seconds <= call + 2.0
    assert row.extension == "2001" and row.agent == "alice" and row.team == "customer_support"
    assert row.remote_number == "+16135550100"
    assert row.direction == "inbound"
    # Consent evidence arrived in the partial update of the resume re-INVITE.
    assert row.consent_state == "announcement" and not row.quarantined
    left, right = audio[:, 0], audio[:, 1]
    talk = slice(int(0.5 * rate), int(1.7 * rate))
    # The caller (label 2) sent 1000 Hz, the agent (label 1) 440 Hz: left = remote party, right = agent.
    assert abs(dominant_frequency(left[talk], rate) - 1000) < 20
    assert abs(dominant_frequency(right[talk], rate) - 440) < 20
    paused = slice(int(2.4 * rate), int(3.3 * rate))
    assert rms(left[paused]) < 1 and rms(right[paused]) < 1, "audio sent while paused was kept"
    resumed = slice(int(4.0 * rate), int(5.0 * rate))
    assert abs(dominant_frequency(left[resumed], rate) - 1000) < 20
    assert abs(dominant_frequency(right[resumed], rate) - 440) < 20
    with runtime.db.unit_of_work() as session:
        entry = session.query(AuditEntry).filter_by(action="recording.captured", object_id=row.id).one()
        events = [e["event"] for e in entry.details["timeline"]]
        assert events.count("pause") == 2 and events.count("resume") == 2
        assert entry.details["mapping"] == "participantstreamassoc"


def test_legacy_metadata_over_tcp_with_update_is_recorded(isolated_env: CallvaultEnv, tmp_path: Path) -> None:
    runtime = isolated_env.runtime
    with running_server(runtime, rtp_base=32000) as server:
        run_sipp("legacy_acme_tcp_update.xml", server.port, tmp_path, transport="t1")
        server.wait_idle()
    [rec] = stored_recording(runtime)
    row, audio, rate = rec.row, rec.audio, rec.rate
    assert 2.5 <= row.duration_seconds <= 4.0
    assert row.extension == "2002" and row.agent == "bob"
    assert row.remote_number == "+16135550111"
    # apkt:callingParty=true on the caller: an inbound call. No consent evidence: quarantined.
    assert row.direction == "inbound"
    assert row.consent_state == "missing" and row.quarantined
    talk = slice(int(0.5 * rate), int(2.0 * rate))
    assert abs(dominant_frequency(audio[talk, 0], rate) - 700) < 20
    assert abs(dominant_frequency(audio[talk, 1], rate) - 1500) < 20


def test_call_on_a_private_extension_is_refused_and_nothing_is_kept(isolated_env: CallvaultEnv,
                                                                    tmp_path: Path) -> None:
    runtime = isolated_env.runtime
    with running_server(runtime, rtp_base=33000) as server:
        run_sipp("out_of_scope_refused.xml", server.port, tmp_path)
        server.wait_idle()
    assert stored_recording(runtime) == []
    with runtime.db.unit_of_work() as session:
        refusal = session.query(AuditEntry).filter_by(action="capture.refused").one()
        assert refusal.decision == "deny" and "A8" in refusal.clauses


def test_a_failed_fsync_under_a_live_call_discards_it_and_raises_the_storage_alarm(
        isolated_env: CallvaultEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """RELIABILITY.md scenario 3 for capture: the call's audio cannot be made durable, so nothing is
    kept, and compliance sees the gap as a ``storage.flush_failed`` alarm (as for uploads)."""
    runtime = isolated_env.runtime
    real_fsync = os.fsync

    def failing_fsync(fd: int) -> None:
        if "/blobs/" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with running_server(runtime, rtp_base=33400) as server:
        run_sipp("rfc7865_pause_resume.xml", server.port, tmp_path)
        server.wait_idle()
    assert stored_recording(runtime) == []
    with runtime.db.unit_of_work() as session:
        alarm = session.query(AuditEntry).filter_by(action="storage.flush_failed").one()
        discarded = session.query(AuditEntry).filter_by(action="capture.discarded").one()
    assert alarm.decision == "alarm" and "fsync failed" in (alarm.reason or "")
    assert alarm.object_id == discarded.object_id and "could not be written" in (discarded.reason or "")


def test_plain_rfc7865_call_on_a_number_with_a_standing_ivr_rule_is_available(isolated_env: CallvaultEnv,
                                                                              tmp_path: Path) -> None:
    """No SBC sends callvault's consent extension; policy A vouches for its support line's IVR (A5, A14)."""
    runtime = isolated_env.runtime
    with running_server(runtime, rtp_base=34000) as server:
        run_sipp("plain_rfc7865_ivr.xml", server.port, tmp_path, keys={"dialled": "+16135550150"},
                 trace_messages=True)
        server.wait_idle()
    [rec] = stored_recording(runtime)
    row = rec.row
    assert row.state == "available" and not row.quarantined
    assert row.local_number == "+16135550150" and row.direction == "inbound"
    assert row.consent_source == "standing_rule" and row.consent["rule"] == "support_line_ivr"
    # The 12 s announcement is cut off the head, as for reported evidence: what is left is the talk after it.
    call = sent_call_seconds(tmp_path)
    assert call - 12.0 - 0.5 <= row.duration_seconds <= call - 12.0 + 2.0
    talk = slice(int(0.2 * rec.rate), int(1.2 * rec.rate))
    assert abs(dominant_frequency(rec.audio[talk, 0], rec.rate) - 1000) < 20


def test_plain_rfc7865_call_on_a_number_no_rule_covers_is_quarantined_with_the_reason(
        isolated_env: CallvaultEnv, tmp_path: Path) -> None:
    runtime = isolated_env.runtime
    with running_server(runtime, rtp_base=35000) as server:
        run_sipp("plain_rfc7865_ivr.xml", server.port, tmp_path, keys={"dialled": "+16132380000"})
        server.wait_idle()
    [rec] = stored_recording(runtime)
    row = rec.row
    assert row.state == "available" and row.quarantined and row.consent_source == "none"
    assert "no consent.standing_evidence rule covers inbound calls to" in (row.quarantine_reason or "")
