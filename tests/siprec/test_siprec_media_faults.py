"""SIPREC calls whose media is not what the signalling promised, with a real SRC (sipp).

What a person finds afterwards: loss before an SBC failover still in the audit entry and the stats
file; a G.729 call recorded (not refused); a call whose media never arrived stored as ``failed``
(never as an "available" recording of silence); a call whose media stopped for a while stored with
that gap flagged, where it was and how long.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from prometheus_client import generate_latest
from sqlalchemy import select

from callvault.audit.models import AuditEntry
from callvault.integrations.webhooks_out import service as webhooks
from callvault.integrations.webhooks_out.models import WebhookDelivery
from callvault.ops.metrics import build_registry
from callvault.oversight.reports import ComplianceReport, build_report, to_csv, to_html
from callvault.recordings.models import DataKey, Recording
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
    # Exactly what the call's audit entry counted (how many a loaded kernel let through varies).
    assert stats["packets"] == sum(s["packets"] for s in streams.values()) > 0
    assert stats["lost"] == sum(s["lost"] for s in streams.values()) >= 25
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


def _subscribe(env: CallvaultEnv) -> None:
    with env.runtime.db.unit_of_work() as session:
        webhooks.add_subscription(session, keyring=env.runtime.keyring, name="ops", url="https://hooks.example/cv",
                                  events=["recording.failed", "recording.gap", "recording.saved"], actor="test")


def _webhooks(env: CallvaultEnv) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    with env.runtime.db.unit_of_work() as session:
        for delivery in session.scalars(select(WebhookDelivery)):
            out.setdefault(delivery.event_type, []).append(json.loads(delivery.payload)["data"])
    return out


def _metric(env: CallvaultEnv, line_start: str) -> float:
    text = generate_latest(build_registry(env.runtime.db, siprec_stats=None)[0]).decode()
    [line] = [line for line in text.splitlines() if line.startswith(line_start)]
    return float(line.rsplit(" ", 1)[1])


def _report(env: CallvaultEnv) -> ComplianceReport:
    with env.runtime.db.unit_of_work() as session:
        now = datetime.now(UTC)
        return build_report(session, start=now - timedelta(days=1), end=now + timedelta(days=1))


def test_call_whose_media_never_arrives_is_stored_as_failed_not_as_silence(
        isolated_env: CallvaultEnv, tmp_path: Path) -> None:
    _subscribe(isolated_env)
    # The SRC sends its RTP somewhere the server does not listen (a wrong advertised address or port).
    _call(isolated_env, tmp_path, "deaf", rtp_base=35800)
    with isolated_env.runtime.db.unit_of_work() as session:
        [row] = session.scalars(select(Recording).where(Recording.call_id.startswith("siprec:")))
        state, reason, rec_id, sha = row.state, row.failure_reason or "", row.id, row.sha256
        assert not session.scalars(select(DataKey).where(DataKey.recording_id == rec_id)).all()
    assert state == "failed" and sha is None
    assert "no media was received" in reason
    [failed] = _webhooks(isolated_env)["recording.failed"]
    assert failed["recording_id"] == rec_id and "no media" in failed["reason"]
    assert "recording.saved" not in _webhooks(isolated_env)
    assert _metric(isolated_env, 'callvault_recordings{state="failed"}') == 1
    assert _metric(isolated_env, 'callvault_recordings{state="available"}') == 0
    report = _report(isolated_env)
    assert report.capture_failed == 1
    assert "capture_failed" in to_csv(report) and "Capture failed for 1 calls" in to_html(report)
    with isolated_env.runtime.db.unit_of_work() as session:
        assert session.scalar(select(AuditEntry).where(AuditEntry.action == "recording.failed",
                                                       AuditEntry.object_id == rec_id)) is not None


def test_call_whose_media_stops_for_a_while_is_stored_with_the_gap_flagged(
        isolated_env: CallvaultEnv, tmp_path: Path) -> None:
    _subscribe(isolated_env)
    # Both streams go quiet on the wire from 2.0 s to 4.5 s of the media (a blocked path): 2.5 s missing.
    _call(isolated_env, tmp_path, "gap=2.0-4.5", rtp_base=36200)
    [rec] = stored_recording(isolated_env.runtime)
    row = rec.row
    assert row.state == "available"
    gaps = row.media_gaps or []
    middle = [g for g in gaps if g[0] > 1.0 and g[1] < row.duration_seconds - 0.5]
    assert len(middle) == 1
    start, end = middle[0]
    assert 2.0 <= end - start <= 3.0  # 2.5 s, give or take the packets' pacing on a loaded machine
    # The audio is silent there, and not outside it.
    rate = rec.rate
    assert rms(rec.audio[int((start + 0.2) * rate):int((end - 0.2) * rate), 0]) == 0
    assert rms(rec.audio[int((start - 1.0) * rate):int((start - 0.1) * rate), 0]) > 1000
    assert row.missing_seconds >= round(end - start, 3)
    [gap] = _webhooks(isolated_env)["recording.gap"]
    assert gap["recording_id"] == row.id and gap["missing_seconds"] == row.missing_seconds
    assert [start, end] in gap["media_gaps"]
    assert _metric(isolated_env, "callvault_recordings_with_media_gaps ") == 1
    report = _report(isolated_env)
    assert report.with_gaps == 1 and report.missing_seconds == row.missing_seconds
