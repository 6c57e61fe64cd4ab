"""SIPREC media and policy at capture with a real SRC (sipp): Opus, telephone-events, SRTP, the announcement.

What a person would check afterwards: the recording exists (or, for a call that ended during the
announcement, does not), it has the right rate, each party's tone is on their channel, digits keyed
during the call are neither in the audio nor in any log or audit entry, and SRTP keys appear
nowhere but on the wire.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from callvault.audit.models import AuditEntry
from tests.siprec.rtp_send import write_opus_frames
from tests.siprec.support import (
    HELPER,
    StreamSipClient,
    dominant_frequency,
    free_port,
    rms,
    run_sipp,
    running_server,
    sipp_or_skip,
    stored_recording,
)
from tests.support.env import CallvaultEnv


@pytest.fixture(autouse=True)
def _need_sipp() -> None:
    sipp_or_skip()


def _audit_text(env: CallvaultEnv) -> str:
    with env.runtime.db.unit_of_work() as session:
        return json.dumps([[e.action, e.reason, e.details] for e in session.query(AuditEntry).all()], default=str)


def test_opus_call_is_recorded_at_16_khz_and_keyed_digits_are_dropped(
        isolated_env: CallvaultEnv, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    runtime = isolated_env.runtime
    caplog.set_level(logging.DEBUG)
    for freq in (440, 1000):  # the sender reads these instead of encoding during the call
        write_opus_frames(str(tmp_path), freq, 3.2)
    with running_server(runtime, rtp_base=34000) as server:
        run_sipp("opus_dtmf.xml", server.port, tmp_path)
        server.wait_idle()
    [rec] = stored_recording(runtime)
    row, audio, rate = rec.row, rec.audio, rec.rate
    assert (rate, audio.shape[1]) == (16000, 2), "Opus is kept at 16 kHz, two channels"
    assert 3.5 <= row.duration_seconds <= 5.0
    # Media starts when the sender is up (its Opus is encoded before the call, so only a Python start) and
    # lasts 3.2 s; the SRC hangs up 4 s after the ACK. Measure from the first audio.
    onset = int(np.argmax(np.abs(audio[:, 1]) > 500))
    assert onset < 1.5 * rate
    talk = slice(onset + int(0.1 * rate), onset + int(2.0 * rate))
    # Caller (label 2) sent 1000 Hz, the agent (label 1) 440 Hz, both through libopus.
    assert abs(dominant_frequency(audio[talk, 0], rate) - 1000) < 15
    assert abs(dominant_frequency(audio[talk, 1], rate) - 440) < 15
    assert rms(audio[talk, 0]) > 2000 and rms(audio[talk, 1]) > 2000
    # Digits were keyed on the agent's stream from 1.0 to 1.8 s of its media: that stretch is the same
    # clean tone (event payloads were not decoded as audio, which would leave clicks and dropouts).
    keyed = audio[onset + int(1.05 * rate):onset + int(1.75 * rate), 1].astype(float)
    steady = audio[onset + int(0.2 * rate):onset + int(0.9 * rate), 1].astype(float)
    assert abs(rms(keyed) - rms(steady)) < 0.1 * rms(steady)
    assert abs(dominant_frequency(keyed, rate) - 440) < 15
    with runtime.db.unit_of_work() as session:
        entry = session.query(AuditEntry).filter_by(action="recording.captured", object_id=row.id).one()
        agent_stream = next(s for s in entry.details["streams"].values() if s["label"] == "1")
        assert agent_stream["ignored"] == 40, "the 40 telephone-event packets are counted as ignored"
        assert agent_stream["lost"] == 0, "telephone-events sharing the sequence space are not loss"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for text in (logged, _audit_text(isolated_env)):
        assert "4111" not in text and "telephone" not in text.lower() and "dtmf" not in text.lower()


def test_srtp_call_is_decrypted_with_the_offered_keys_and_forged_packets_are_dropped(
        isolated_env: CallvaultEnv, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    runtime = isolated_env.runtime
    caplog.set_level(logging.DEBUG)
    keys = {f"key{i}": base64.b64encode(os.urandom(46 if i == 3 else 30)).decode() for i in (1, 2, 3)}
    with running_server(runtime, rtp_base=35000) as server:
        run_sipp("srtp_sdes.xml", server.port, tmp_path, keys=keys, trace_messages=True)
        server.wait_idle()
        snapshot = server.manager.snapshot()
    [rec] = stored_recording(runtime)
    audio, rate = rec.audio, rec.rate
    talk = slice(int(0.4 * rate), int(2.6 * rate))
    assert abs(dominant_frequency(audio[talk, 0], rate) - 1000) < 20
    assert abs(dominant_frequency(audio[talk, 1], rate) - 440) < 20
    assert snapshot["srtp_auth_failures"] == 5, "each forged packet is dropped and counted"
    # The answer: RTP/SAVP on both m-lines, the chosen tag and suite, and a fresh key of the SRS's own.
    messages = next(tmp_path.glob("*_messages.log")).read_text(errors="replace")
    answer = messages[messages.index("SIP/2.0 200 OK"):]
    answer = answer[:answer.index("-----")] if "-----" in answer else answer
    assert len(re.findall(r"m=audio [1-9]\d* RTP/SAVP 0", answer)) == 2
    crypto = re.findall(r"a=crypto:(\d) (\S+) inline:(\S+)", answer)
    assert [(tag, suite) for tag, suite, _ in crypto] == [("1", "AES_CM_128_HMAC_SHA1_80"),
                                                         ("2", "AES_CM_128_HMAC_SHA1_32")]
    for _, _, key in crypto:
        assert len(base64.b64decode(key)) == 30 and key not in keys.values()
    # No key (theirs or ours) in any log record, audit entry or catalog row.
    logged = "\n".join(r.getMessage() for r in caplog.records)
    stored = _audit_text(isolated_env) + repr(rec.row.__dict__)
    for key in [*keys.values(), *(k for _, _, k in crypto)]:
        assert key not in logged and key not in stored


def _announcement_keys(start: datetime, seconds: float) -> dict[str, str]:
    return {"ann_start": start.isoformat().replace("+00:00", "Z"),
            "ann_end": (start + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")}


def test_call_that_ends_during_the_announcement_keeps_no_caller_audio(isolated_env: CallvaultEnv,
                                                                      tmp_path: Path) -> None:
    runtime = isolated_env.runtime
    with running_server(runtime, rtp_base=36000) as server:
        # The announcement runs 10 s; the caller hangs up after 3 s.
        run_sipp("announcement.xml", server.port, tmp_path, keys=_announcement_keys(runtime.clock.now(), 10))
        server.wait_idle()
    assert stored_recording(runtime) == []
    with runtime.db.unit_of_work() as session:
        refusal = session.query(AuditEntry).filter_by(action="recording.not_stored").one()
        assert refusal.decision == "deny" and "A14" in refusal.clauses
        assert "announcement" in (refusal.reason or "")
        discarded = session.query(AuditEntry).filter_by(action="capture.discarded").one()
        assert "announcement" in (discarded.reason or "")


def test_consent_evidence_from_metadata_extension_data_and_the_announcement_is_cut(
        isolated_env: CallvaultEnv, tmp_path: Path) -> None:
    runtime = isolated_env.runtime
    announced = runtime.clock.now()
    with running_server(runtime, rtp_base=37000) as server:
        # The announcement ends 1.2 s after it started; the caller stays on the line (3 s).
        run_sipp("announcement.xml", server.port, tmp_path, keys=_announcement_keys(announced, 1.2))
        server.wait_idle()
    [rec] = stored_recording(runtime)
    row, audio, rate = rec.row, rec.audio, rec.rate
    assert row.consent_state == "announcement" and not row.quarantined
    assert row.consent["announcement_version"] == "1" and "announcement_ended_at" in row.consent
    # The INVITE arrived a little after the announcement started (sipp start-up); the call lasted ~3 s
    # from the INVITE; everything before the end of the announcement is cut, as for an upload.
    started = row.started_at if row.started_at.tzinfo else row.started_at.replace(tzinfo=UTC)
    announcement_end = (announced + timedelta(seconds=1.2) - started).total_seconds()
    assert 0.5 < announcement_end <= 1.2
    assert 2.9 - announcement_end <= row.duration_seconds <= 3.8 - announcement_end
    # Media began ~0.3 s after the INVITE, so the kept audio has both tones from its start.
    assert rms(audio[: int(0.3 * rate)]) > 1000
    after = slice(int(0.2 * rate), int(1.5 * rate))
    assert abs(dominant_frequency(audio[after, 0], rate) - 1000) < 20
    assert abs(dominant_frequency(audio[after, 1], rate) - 440) < 20
    with runtime.db.unit_of_work() as session:
        entry = session.query(AuditEntry).filter_by(action="recording.captured", object_id=row.id).one()
        assert any("announcement" in note for note in entry.details["admission"])


def _srtp_body(port: int, key1: str, key2: str, version: int) -> str:
    sdp = (f"v=0\no=- 1 {version} IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n"
           f"m=audio {port} RTP/SAVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{key1}\na=sendonly\na=label:1\n"
           f"m=audio {port + 2} RTP/SAVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{key2}\na=sendonly\n"
           f"a=label:2\n")
    return (f"--b1\nContent-Type: application/sdp\n\n{sdp}--b1\nContent-Type: application/rs-metadata+xml\n"
            f"Content-Disposition: recording-session\n\n{METADATA}--b1--\n")


METADATA = """<recording xmlns="urn:ietf:params:xml:ns:recording:1"><datamode>complete</datamode>
<participant participant_id="PC"><nameID aor="sip:+16135550100@carrier.example"/></participant>
<participant participant_id="PA"><nameID aor="sip:2001@pbx.example"/></participant>
<stream stream_id="T1"><label>1</label></stream><stream stream_id="T2"><label>2</label></stream>
<participantstreamassoc participant_id="PA"><send>T1</send></participantstreamassoc>
<participantstreamassoc participant_id="PC"><send>T2</send></participantstreamassoc>
</recording>
"""


def test_srtp_re_invite_with_new_keys_starts_new_sessions_and_old_keys_stop_working(
        isolated_env: CallvaultEnv) -> None:
    runtime = isolated_env.runtime
    old = [base64.b64encode(os.urandom(30)).decode() for _ in range(2)]
    new = [base64.b64encode(os.urandom(30)).decode() for _ in range(2)]
    media = free_port()

    def send(ports: list[str], keys: list[str], seed: int) -> None:
        subprocess.run([sys.executable, str(HELPER), "127.0.0.1", ports[0], ports[1], "1.5", "440", "1000",
                        f"srtp1=AES_CM_128_HMAC_SHA1_80:{keys[0]}", f"srtp2=AES_CM_128_HMAC_SHA1_80:{keys[1]}",
                        f"seed={seed}"], check=True, timeout=30)

    with running_server(runtime, rtp_base=39200) as server:
        client = StreamSipClient(server.port)
        contact = "Require: siprec\r\nContact: <sip:src@127.0.0.1;transport=tcp>;+sip.src\r\n"
        client.request("INVITE", 1, content_type="multipart/mixed;boundary=b1",
                       body=_srtp_body(media, old[0], old[1], version=1), extra=contact)
        status, head, answer = client.final_response()
        assert status == 200
        to_tag = re.search(r"(?im)^to:.*(;tag=[^;\s]+)", head).group(1)  # type: ignore[union-attr]
        ports = re.findall(r"m=audio (\d+) RTP/SAVP", answer)
        client.request("ACK", 1, to_tag=to_tag)
        send(ports, old, seed=0)  # 0.0-1.5 s: the first keys
        client.request("INVITE", 2, to_tag=to_tag, content_type="multipart/mixed;boundary=b1",
                       body=_srtp_body(media, new[0], new[1], version=2), extra=contact)
        status, _, reanswer = client.final_response()
        assert status == 200 and re.findall(r"m=audio (\d+) RTP/SAVP", reanswer) == ports
        client.request("ACK", 2, to_tag=to_tag)
        send(ports, old, seed=1)  # 1.5-3.0 s: still the old keys, which no longer authenticate
        send(ports, new, seed=2)  # 3.0-4.5 s: the new keys
        client.request("BYE", 3, to_tag=to_tag)
        assert client.final_response()[0] == 200
        client.sock.close()
        server.wait_idle()
        snapshot = server.manager.snapshot()
    assert snapshot["srtp_auth_failures"] == 2 * 75, "every packet under the old keys is refused"
    [rec] = stored_recording(runtime)
    audio, rate = rec.audio, rec.rate
    # Audio in 20 ms blocks: loud where a tone was kept. Expect tone (old keys, before the re-INVITE),
    # then >= 1.2 s of nothing (old keys after it), then tone again (new keys).
    block = rate // 50
    loud = [rms(audio[i:i + block, 1]) > 1000 for i in range(0, len(audio) - block, block)]
    runs: list[tuple[bool, int]] = []
    for value in loud:
        if runs and runs[-1][0] == value:
            runs[-1] = (value, runs[-1][1] + 1)
        else:
            runs.append((value, 1))
    tones = [n for value, n in runs if value]
    silences = [n for value, n in runs if not value]
    assert len(tones) == 2 and all(60 <= n <= 80 for n in tones), runs  # two 1.5 s stretches of tone
    assert max(silences) >= 60, "media under the replaced keys must not be recorded"
    end = len(loud) * block - sum(n for value, n in runs[-1:] if not value) * block
    last = slice(end - int(1.0 * rate), end - int(0.1 * rate))
    assert abs(dominant_frequency(audio[last, 0], rate) - 1000) < 20
    assert abs(dominant_frequency(audio[last, 1], rate) - 440) < 20
