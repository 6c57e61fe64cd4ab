"""SIPREC media pieces: SDES crypto attributes (fuzzed), the SRTP receiver, the Opus decoder, the capture edit."""

from __future__ import annotations

import base64
import fractions
import math
import os
import struct

import numpy as np
import pylibsrtp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callvault.capture.audioedit import AudioEdit
from callvault.capture.siprec.admit import edit_stream, kept_frames
from callvault.capture.siprec.rtp import Decoder, StreamStats, StreamTimer, parse_rtp
from callvault.capture.siprec.sdp import SUITES, SdpError, build_answer, parse_crypto, parse_sdp, plan_answer
from callvault.capture.siprec.srtp import SrtpReceiver

KEY = base64.b64encode(bytes(range(30))).decode()


def _offer(crypto_lines: str, proto: str = "RTP/SAVP") -> bytes:
    return (f"v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 {proto} 0\r\n{crypto_lines}a=sendonly\r\na=label:1\r\n"
            ).encode()


def test_crypto_attribute_with_lifetime_is_parsed_and_its_key_never_shown() -> None:
    attr = parse_crypto(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^31")
    assert (attr.tag, attr.suite, attr.key) == (1, "AES_CM_128_HMAC_SHA1_80", bytes(range(30)))
    assert KEY not in repr(attr) and "key=" not in repr(attr)


@pytest.mark.parametrize(("value", "why"), [
    ("1 AES_256_CM_HMAC_SHA1_80 inline:" + base64.b64encode(bytes(46)).decode(), "suite"),
    (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20|1:4", "MKI"),
    (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY};inline:{KEY}", "several master keys"),
    (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY} UNENCRYPTED_SRTP", "UNENCRYPTED_SRTP"),
    ("1 AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(bytes(16)).decode(), "30 bytes"),
    (f"x AES_CM_128_HMAC_SHA1_80 inline:{KEY}", "tag"),
    (f"1 AES_CM_128_HMAC_SHA1_80 uri:{KEY}", "inline"),
    ("1 AES_CM_128_HMAC_SHA1_80 inline:%%%%", "base64"),
])
def test_unusable_crypto_attributes_are_refused_with_a_reason_and_without_the_key(value: str, why: str) -> None:
    with pytest.raises(SdpError) as info:
        parse_crypto(value)
    assert why in str(info.value) and KEY not in str(info.value)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=200))
def test_crypto_parser_fuzz_only_ever_raises_sdp_errors(value: str) -> None:
    try:
        attr = parse_crypto(value)
    except SdpError as exc:
        assert "inline:" not in str(exc)
    else:
        assert len(attr.key) == SUITES[attr.suite]


@settings(max_examples=200, deadline=None)
@given(tag=st.integers(0, 999_999_999), suite=st.sampled_from(sorted(SUITES)), data=st.data(),
       lifetime=st.sampled_from(["", "|2^31", "|2^48", "|1048576"]),
       params=st.sampled_from(["", " UNENCRYPTED_SRTCP"]))
def test_crypto_parser_accepts_every_well_formed_attribute(tag: int, suite: str, data: st.DataObject, lifetime: str,
                                                           params: str) -> None:
    key = data.draw(st.binary(min_size=SUITES[suite], max_size=SUITES[suite]))
    attr = parse_crypto(f"{tag} {suite} inline:{base64.b64encode(key).decode()}{lifetime}{params}")
    assert (attr.tag, attr.suite, attr.key) == (tag, suite, key)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"),
                        max_size=80), max_size=6))
def test_sdp_with_fuzzed_crypto_lines_is_planned_or_refused_cleanly(lines: list[str]) -> None:
    offer = parse_sdp(_offer("".join(f"a=crypto:{line}\r\n" for line in lines)))
    [plan] = plan_answer(offer, [6000])
    answer = build_answer(offer, [plan], address="10.0.0.10", session_id=1, version=1).decode()
    if plan.accepted:
        assert plan.srtp is not None and "m=audio 6000 RTP/SAVP 0" in answer and "a=crypto:" in answer
    else:
        assert "m=audio 0 RTP/SAVP 0" in answer and plan.reason.startswith("SRTP without usable crypto")


def test_srtp_offer_is_answered_with_the_chosen_suite_and_a_fresh_key() -> None:
    other = base64.b64encode(bytes(46)).decode()
    offer = parse_sdp(_offer(f"a=crypto:1 AES_256_CM_HMAC_SHA1_80 inline:{other}\r\n"
                             f"a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{KEY}\r\n"))
    [plan] = plan_answer(offer, [6000])
    assert plan.srtp is not None and plan.srtp.remote_key == bytes(range(30))
    answer = build_answer(offer, [plan], address="10.0.0.10", session_id=1, version=1).decode()
    [line] = [x for x in answer.splitlines() if x.startswith("a=crypto:")]
    tag, suite, inline = line.removeprefix("a=crypto:").split()
    ours = base64.b64decode(inline.removeprefix("inline:"))
    assert (tag, suite, len(ours)) == ("2", "AES_CM_128_HMAC_SHA1_32", 30) and ours != bytes(range(30))
    assert KEY not in repr(plan) and inline.removeprefix("inline:") not in repr(plan)


def _protector(key: bytes) -> pylibsrtp.Session:
    return pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                                              srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80))


def test_srtp_receiver_decrypts_and_counts_forged_and_replayed_packets() -> None:
    key = os.urandom(30)
    offer = parse_sdp(_offer(f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{base64.b64encode(key).decode()}\r\n"))
    [plan] = plan_answer(offer, [6000])
    assert plan.srtp is not None
    stats = StreamStats()
    receiver = SrtpReceiver(plan.srtp, stats)
    sender = _protector(key)
    plain = struct.pack(">BBHII", 0x80, 0, 7, 1600, 42) + b"\x55" * 160
    protected = sender.protect(plain)
    assert receiver.unprotect(protected) == plain
    assert receiver.unprotect(protected) is None and stats.srtp_replays == 1
    forged = sender.protect(struct.pack(">BBHII", 0x80, 0, 8, 1760, 42) + b"\x55" * 160)
    assert receiver.unprotect(forged[:-1] + bytes([forged[-1] ^ 1])) is None and stats.srtp_auth_failures == 1
    wrong_key = _protector(os.urandom(30)).protect(struct.pack(">BBHII", 0x80, 0, 9, 1920, 42) + b"\x55" * 160)
    assert receiver.unprotect(wrong_key) is None and stats.srtp_auth_failures == 2
    assert receiver.same_key(plan.srtp) and "key" not in repr(receiver).replace("<key hidden>", "")


def _opus_packets(freq: float, seconds: float) -> list[bytes]:
    import av

    enc = av.CodecContext.create("libopus", "w")
    enc.sample_rate, enc.layout, enc.format, enc.bit_rate = 48000, "mono", "s16", 32000
    n = int(seconds * 48000)
    tone = (8000 * np.sin(2 * math.pi * freq * np.arange(n) / 48000)).astype(np.int16)
    packets: list[bytes] = []
    for i in range(0, n, 960):
        frame = av.AudioFrame.from_ndarray(tone[i:i + 960].reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48000, i, fractions.Fraction(1, 48000)
        packets.extend(bytes(p) for p in enc.encode(frame))
    return packets


def test_opus_is_decoded_to_16_khz_a_third_of_the_rtp_clock_per_packet() -> None:
    offer = parse_sdp(b"v=0\nm=audio 4000 RTP/AVP 111\na=rtpmap:111 opus/48000/2\n")
    [plan] = plan_answer(offer, [6000])
    [codec] = plan.codecs
    assert (codec.name, codec.clock_rate, codec.sample_rate, codec.rtpmap) == ("OPUS", 48000, 16000, "opus/48000/2")
    decoder = Decoder(codec)
    packets = _opus_packets(1200, 1.0)
    pieces = [decoder.decode(p) for p in packets]
    assert [len(x) for x in pieces] == [320] * len(packets), "20 ms at 16 kHz from every packet"
    pcm = np.concatenate(pieces)
    spectrum = np.abs(np.fft.rfft(pcm[3200:].astype(float)))
    assert abs(np.fft.rfftfreq(len(pcm) - 3200, 1 / 16000)[int(np.argmax(spectrum))] - 1200) < 5
    assert 4000 < float(np.sqrt(np.mean(pcm[3200:].astype(float) ** 2))) < 7000
    garbage = decoder.decode(b"\xff\xff\xff")  # a corrupt frame is silence at worst, never an exception
    assert garbage.dtype == np.int16


def test_opus_packets_are_placed_by_their_48_khz_timestamps() -> None:
    [plan] = plan_answer(parse_sdp(b"v=0\nm=audio 4000 RTP/AVP 111\na=rtpmap:111 opus/48000/2\n"), [6000])
    timer = StreamTimer(plan.codecs, 16000)
    packets = _opus_packets(440, 0.2)
    first = timer.on_packet(parse_rtp(struct.pack(">BBHII", 0x80, 111, 1, 96000, 5) + packets[0]), 0)
    third = timer.on_packet(parse_rtp(struct.pack(">BBHII", 0x80, 111, 3, 96000 + 1920, 5) + packets[1]), 0)
    assert first is not None and third is not None
    assert (first[0], third[0], len(first[1])) == (0, 640, 320)
    assert timer.stats.lost == 1


def test_capture_edit_cuts_the_announcement_silences_pauses_and_cuts_after_a_stop() -> None:
    rate, frames = 8000, 8000 * 4
    # Each frame holds its own index (mod 30000) so the test can see exactly which frames were kept.
    index = (np.arange(frames) % 30000 + 1).astype(np.int16)
    spool = np.stack([index, index], axis=1).tobytes()
    chunks = [spool[i:i + 1000] for i in range(0, len(spool), 1000)]  # odd chunk size: edges cross chunks
    edit = AudioEdit(keep_from=1.0, keep_until=3.5, silence=((2.0, 2.5),))
    out = np.frombuffer(b"".join(edit_stream(iter(chunks), edit, rate=rate, frames=frames)), dtype=np.int16)
    out = out.reshape(-1, 2)
    assert len(out) == kept_frames(edit, rate=rate, frames=frames) == int(2.5 * rate)
    assert out[0, 0] == index[rate], "the first kept frame is the end of the announcement"
    assert (out[:rate, 0] == index[rate:2 * rate]).all()
    assert not out[rate:int(1.5 * rate)].any(), "call time 2.0-2.5 s (paused) is silent"
    assert (out[int(1.5 * rate):, 1] == index[int(2.5 * rate):int(3.5 * rate)]).all()
