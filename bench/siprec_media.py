"""CPU per SIPREC stream for each codec and for SRTP, relative to G.711 measured in the same run.

    .venv/bin/python -m bench.siprec_media [--seconds 20]

Feeds ``--seconds`` of 20 ms packets of one stream through exactly what the capture server runs per
packet after the socket — SRTP unprotect (libsrtp, when the stream is SRTP), RTP parse, timeline
placement, decode (G.711 table, G.722, Opus via libopus with the 48→16 kHz decimation) and the mixer
— and reports microseconds per packet (best of three runs) and the share of one core per
two-stream call (100 packets/s).
The reference is plain PCMU in the same run: bench/siprec.py measured what a capture process does
end to end with G.711, so these ratios say how that capacity figure shrinks for Opus or SRTP calls.
"""

from __future__ import annotations

import argparse
import base64
import fractions
import math
import os
import struct
import time
from collections.abc import Callable

import numpy as np
import pylibsrtp

from callvault.capture.siprec.rtp import Mixer, StreamStats, StreamTimer, parse_rtp
from callvault.capture.siprec.sdp import parse_sdp, plan_answer
from callvault.capture.siprec.srtp import SrtpReceiver

PACKETS_PER_CALL_SECOND = 100  # two streams of 20 ms packets


def _payloads(codec: str, n: int) -> tuple[int, int, list[bytes]]:
    """(payload type, timestamp step, n payloads) of a 440 Hz tone in ``codec``."""
    if codec in ("PCMU", "PCMA"):
        return (0 if codec == "PCMU" else 8), 160, [bytes(range(96, 256))[:160]] * n
    if codec == "G722":
        import G722  # type: ignore[import-not-found,import-untyped,unused-ignore]

        enc = G722.G722(16000, 64000)
        tone = (8000 * np.sin(2 * math.pi * 440 * np.arange(320 * 50) / 16000)).astype(np.int16)
        frames = [bytes(enc.encode(tone[i:i + 320])) for i in range(0, len(tone), 320)]
        return 9, 160, [frames[i % len(frames)] for i in range(n)]
    import av

    ctx = av.CodecContext.create("libopus", "w")
    ctx.sample_rate, ctx.layout, ctx.format, ctx.bit_rate = 48000, "mono", "s16", 32000
    tone = (8000 * np.sin(2 * math.pi * 440 * np.arange(960 * 60) / 48000)).astype(np.int16)
    out: list[bytes] = []
    for i in range(0, len(tone), 960):
        frame = av.AudioFrame.from_ndarray(tone[i:i + 960].reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48000, i, fractions.Fraction(1, 48000)
        out.extend(bytes(p) for p in ctx.encode(frame))
    return 111, 960, [out[i % len(out)] for i in range(n)]


def run(codec: str, *, srtp: bool, seconds: float) -> float:
    """Microseconds per packet for one stream of ``codec`` (optionally SRTP)."""
    n = int(seconds * 50)
    pt, step, payloads = _payloads(codec, n)
    rtpmap = {"PCMU": "", "PCMA": "", "G722": "", "OPUS": "a=rtpmap:111 opus/48000/2\n"}[codec]
    key = os.urandom(30)
    crypto = f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{base64.b64encode(key).decode()}\n" if srtp else ""
    proto = "RTP/SAVP" if srtp else "RTP/AVP"
    offer = parse_sdp(f"v=0\nc=IN IP4 127.0.0.1\nm=audio 4000 {proto} {pt}\n{rtpmap}{crypto}a=sendonly\n".encode())
    [plan] = plan_answer(offer, [6000])
    assert plan.accepted, plan.reason
    rate = plan.codecs[0].sample_rate
    timer = StreamTimer(plan.codecs, rate)
    mixer = Mixer(rate, lambda _data: None)
    stats = StreamStats()
    receiver = SrtpReceiver(plan.srtp, stats) if plan.srtp is not None else None
    sender = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                                                srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80))
    packets = []
    for i, payload in enumerate(payloads):
        packet = struct.pack(">BBHII", 0x80, pt, i & 0xFFFF, (i * step) & 0xFFFFFFFF, 7) + payload
        packets.append(sender.protect(packet) if srtp else packet)
    unprotect: Callable[[bytes], bytes | None] = receiver.unprotect if receiver is not None else (lambda d: d)
    samples_per_packet = rate // 50
    start = time.perf_counter()
    for i, data in enumerate(packets):
        plain = unprotect(data)
        assert plain is not None
        placed = timer.on_packet(parse_rtp(plain), i * samples_per_packet)
        if placed is not None:
            mixer.put(0, placed[0], placed[1])
    mixer.finish()
    elapsed = time.perf_counter() - start
    assert stats.srtp_auth_failures == 0 and timer.stats.lost == 0
    return elapsed / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="stream length per case")
    args = parser.parse_args()
    cases = [("PCMU", False), ("PCMU", True), ("G722", False), ("OPUS", False), ("OPUS", True)]
    # Best of three: on a shared machine the minimum is the least disturbed measurement.
    results = {case: min(run(case[0], srtp=case[1], seconds=args.seconds) for _ in range(3)) for case in cases}
    reference = results[("PCMU", False)]
    print(f"{'stream':<12} {'us/packet':>10} {'x PCMU':>8} {'% core per call':>16} {'calls/core (CPU)':>17}")
    for (codec, srtp), us in results.items():
        share = us * PACKETS_PER_CALL_SECOND / 1e6
        print(f"{codec + (' SRTP' if srtp else ''):<12} {us:>10.1f} {us / reference:>8.2f} {share * 100:>15.3f}% "
              f"{1 / share:>17.0f}")
    print("(per-packet work after the socket only; socket receive and the spool writer come on top, "
          "see bench/siprec.py for the end-to-end G.711 figure)")


if __name__ == "__main__":
    main()
