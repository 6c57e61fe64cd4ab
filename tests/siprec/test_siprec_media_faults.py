"""SIPREC calls whose media is not what the signalling promised, with a real SRC (sipp).

What a person finds afterwards: loss before an SBC failover still in the audit entry and the stats
file; a G.729 call recorded (not refused); a call whose media never arrived stored as ``failed``
(never as an "available" recording of silence); a call whose media stopped for a while stored with
that gap flagged, where it was and how long.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from sqlalchemy import select

from callvault.audit.models import AuditEntry
from tests.siprec.rtp_send import g729_frames
from tests.siprec.support import dominant_frequency, rms, run_sipp, running_server, sipp_or_skip, stored_recording
from tests.support.env import CallvaultEnv


@pytest.fixture(autouse=True)
def _need_sipp() -> None:
    sipp_or_skip()


def _call(env: CallvaultEnv, tmp_path: Path, media: str, *, rtp_base: int, pt1: str = "0",
          enc1: str = "PCMU/8000") -> dict[str, Any]:
    """Run one ``media_call.xml`` call with the sender options ``media``; the server's stats after it."""
    with running_server(env.runtime, rtp_base=rtp_base) as server:
        run_sipp("media_call.xml", server.port, tmp_path, keys={"media": media, "pt1": pt1, "enc1": enc1})
        server.wait_idle()
        return server.manager.snapshot()


def _captured_streams(env: CallvaultEnv) -> dict[str, Any]:
    with env.runtime.db.unit_of_work() as session:
        entry = session.scalar(select(AuditEntry).where(AuditEntry.action == "recording.captured"))
        assert entry is not None
        streams: dict[str, Any] = json.loads(json.dumps(entry.details))["streams"]
    return {s["label"]: s for s in streams.values()}


def test_loss_before_an_ssrc_change_reaches_the_audit_entry_and_the_stats_file(
        isolated_env: CallvaultEnv, tmp_path: Path) -> None:
    # Stream 1 (the agent, label 1) loses packets 40-64, then its SBC fails over to a new SSRC at 150.
    stats = _call(isolated_env, tmp_path, "drop1=40-65 ssrc1at=150", rtp_base=35000)
    streams = _captured_streams(isolated_env)
    assert streams["1"]["ssrc_changes"] == 1
    assert 25 <= streams["1"]["lost"] <= 30  # 25 dropped; a loaded kernel may drop a few more
    assert streams["2"]["ssrc_changes"] == 0
    # The stats file counts the loss of calls that have ended too (it did not even count this one's).
    assert stats["lost"] >= 25 and stats["packets"] >= 500
    [rec] = stored_recording(isolated_env.runtime)
    assert rec.row.state == "available"


def _decoded_g729(payloads: list[bytes]) -> np.ndarray:
    """What FFmpeg's G.729 decoder (PyAV) makes of ``payloads``, as the server's decoder would."""
    ctx: Any = av.CodecContext.create("g729", "r")
    ctx.sample_rate, ctx.layout = 8000, "mono"
    out = [frame.to_ndarray().reshape(-1) for p in payloads for frame in ctx.decode(av.Packet(p))]
    return np.concatenate(out).astype(np.int16)


def test_g729_call_is_recorded_with_ffmpegs_decoder(isolated_env: CallvaultEnv, tmp_path: Path) -> None:
    if "g729" not in av.codecs_available:
        pytest.skip("this PyAV build has no G.729 decoder")
    _call(isolated_env, tmp_path, "g729", rtp_base=35400, pt1="18", enc1="G729/8000")
    [rec] = stored_recording(isolated_env.runtime)
    assert rec.row.state == "available" and rec.rate == 8000
    left, right = rec.audio[:, 0], rec.audio[:, 1]
    # The caller's PCMU tone on the left, the agent's G.729 stream on the right: exactly the samples the
    # decoder gives for the frames sent (a window from the middle of the call, found in the recording).
    assert abs(dominant_frequency(left[int(1.0 * rec.rate):int(3.0 * rec.rate)], rec.rate) - 1000) < 20
    reference = _decoded_g729(g729_frames(300))
    window = reference[4000:4064]
    assert rms(window) > 100
    hits = np.flatnonzero((sliding_window_view(right, len(window)) == window).all(axis=1))
    assert len(hits) == 1
    assert rms(right) > 100
