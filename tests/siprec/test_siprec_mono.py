"""A mixed-stream SRC (one m-line carrying both parties) is stored as one channel, as sent.

Before, such a call became a stereo WAV with a silent right channel: twice the storage, a player and
a waveform showing an "agent" lane that never spoke, and transcripts splitting one voice track into
two speakers. A two-stream call stays stereo.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import soundfile

from callvault.web import waveform
from tests.siprec.support import dominant_frequency, rms, run_sipp, running_server, sipp_or_skip, stored_recording
from tests.support.env import CallvaultEnv

SENT_RMS = 8000 / 2 ** 0.5
"""rtp_send.py's tones are 8000 * sin: their RMS, before G.711's quantisation."""


@pytest.fixture(autouse=True)
def _need_sipp() -> None:
    sipp_or_skip()


def test_one_mixed_stream_is_stored_as_one_channel_holding_what_was_sent(
        isolated_env: CallvaultEnv, tmp_path: Path) -> None:
    with running_server(isolated_env.runtime, rtp_base=36400) as server:
        run_sipp("mixed_call.xml", server.port, tmp_path)
        server.wait_idle()
    [stored] = stored_recording(isolated_env.runtime)
    assert stored.row.channels == 1
    assert stored.audio.shape[1] == 1
    voice = stored.audio[stored.rate // 2: -stored.rate // 2, 0]  # away from the edges of the media
    assert len(voice) > 2 * stored.rate
    assert abs(dominant_frequency(voice, stored.rate) - 440) < 10
    assert abs(rms(voice) - SENT_RMS) < 0.15 * SENT_RMS
    buf = io.BytesIO()

    soundfile.write(buf, stored.audio, stored.rate, format="WAV", subtype="PCM_16")
    picture = waveform.svg(buf.getvalue(), duration=stored.row.duration_seconds)
    assert picture.count('class="lane ') == 1  # the page shows one lane ("call"), not a silent agent lane


def test_a_two_stream_call_stays_stereo_with_a_party_on_each_channel(
        isolated_env: CallvaultEnv, tmp_path: Path) -> None:
    with running_server(isolated_env.runtime, rtp_base=36600) as server:
        run_sipp("live_call.xml", server.port, tmp_path)
        server.wait_idle()
    [stored] = stored_recording(isolated_env.runtime)
    assert stored.row.channels == 2
    middle = stored.audio[stored.rate: -stored.rate]
    assert abs(dominant_frequency(middle[:, 0], stored.rate) - 1000) < 10  # left: the caller (label 2)
    assert abs(dominant_frequency(middle[:, 1], stored.rate) - 440) < 10  # right: the agent (label 1)
