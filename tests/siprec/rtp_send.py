"""Send two RTP streams of different tones (one per SIPREC m-line), as an SRC's media would.

Usage: python rtp_send.py HOST PORT1 PORT2 SECONDS [FREQ1 FREQ2] [OPTION ...]
Stream 1 goes to PORT1 (the first m-line), stream 2 to PORT2. Packets are 20 ms, 50 per second,
paced on the wall clock; different SSRCs and random initial sequence numbers/timestamps so wraps
and offsets are exercised. Used by the sipp scenarios through <exec> and by the benchmark.

Options (sipp passes them through <exec>):
  opus                   encode with Opus (libopus via PyAV), PT 111, 48 kHz RTP clock
  dtmf                   also send RFC 4733 telephone-events (PT 101, digits 4-1-1-1) on stream 1
                         from 1.0 s to 1.8 s, as an SBC does while a caller keys a card number
  srtp1=SUITE:B64KEY     protect stream 1 with SRTP (pylibsrtp), likewise srtp2= for stream 2
  forge2=N               additionally send N SRTP packets with a corrupted auth tag on stream 2
  seed=N                 pick other SSRCs/initial sequence numbers/timestamps (a "new" source)
  g729                   stream 1 in G.729 (PT 18): ``g729_frames`` (there is no G.729 encoder at hand)
  drop1=A-B              do not send stream 1's packets A to B-1 (their sequence numbers are lost)
  ssrc1at=K              from packet K on, stream 1 comes from a new SSRC with new sequence/timestamp
                         bases (an SBC failover or a transfer)
  gap=A-B                neither stream sends from second A to second B of the media (blocked media:
                         sequence numbers and timestamps run on, nothing arrives)
  mono                   send only stream 1 (to PORT1; PORT2 is ignored): a mixed-stream SRC's one m-line
  deaf                   send everything to a socket of this helper's own that nobody reads (media
                         sent to a wrong address or port: the server receives nothing)

With ``opus``, packets already encoded by ``write_opus_frames`` into the working directory are sent as
they are: the test encodes them before the call, so the sender does not spend the call's first
seconds importing PyAV and running libopus on a busy machine (the media would start late).
"""

from __future__ import annotations

import math
import random
import socket
import struct
import sys
import time
from typing import Any


def ulaw_encode(sample: int) -> int:
    bias, clip = 0x84, 32635
    sign = 0x80 if sample < 0 else 0
    sample = min(abs(sample), clip) + bias
    exponent = 7
    mask = 0x4000
    while exponent > 0 and not sample & mask:
        exponent -= 1
        mask >>= 1
    mantissa = (sample >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def tone_frames(freq: float, seconds: float, rate: int = 8000) -> list[bytes]:
    table = bytes(ulaw_encode(int(8000 * math.sin(2 * math.pi * freq * n / rate))) for n in range(int(seconds * rate)))
    return [table[i : i + 160] for i in range(0, len(table) - 159, 160)]


def opus_frames(freq: float, seconds: float) -> list[bytes]:
    """20 ms Opus packets of a tone (48 kHz mono, libopus through PyAV)."""
    import fractions

    import av

    enc: Any = av.CodecContext.create("libopus", "w")
    enc.sample_rate, enc.layout, enc.format, enc.bit_rate = 48000, "mono", "s16", 32000
    n = int(seconds * 48000) // 960 * 960
    pcm = [int(8000 * math.sin(2 * math.pi * freq * i / 48000)) for i in range(n + 960 * 4)]
    import numpy as np

    samples = np.asarray(pcm, dtype=np.int16)
    out: list[bytes] = []
    for i in range(0, len(samples), 960):
        frame = av.AudioFrame.from_ndarray(samples[i:i + 960].reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48000, i, fractions.Fraction(1, 48000)
        out.extend(bytes(p) for p in enc.encode(frame))
    return out[: n // 960]


def opus_frames_file(freq: float, seconds: float) -> str:
    return f"opus-{freq:g}-{seconds:g}.frames"


def write_opus_frames(directory: str, freq: float, seconds: float) -> None:
    """Encode a tone's Opus packets into ``directory`` for a later ``opus`` send (length-prefixed)."""
    with open(f"{directory}/{opus_frames_file(freq, seconds)}", "wb") as out:
        for packet in opus_frames(freq, seconds):
            out.write(struct.pack(">H", len(packet)) + packet)


def load_opus_frames(freq: float, seconds: float) -> list[bytes]:
    """Packets written by ``write_opus_frames`` in the working directory, else encoded now."""
    try:
        with open(opus_frames_file(freq, seconds), "rb") as stored:
            data = stored.read()
    except FileNotFoundError:
        return opus_frames(freq, seconds)
    frames, at = [], 0
    while at < len(data):
        (size,) = struct.unpack_from(">H", data, at)
        frames.append(data[at + 2:at + 2 + size])
        at += 2 + size
    return frames


def g729_frames(count: int, seed: int = 729) -> list[bytes]:
    """``count`` 20 ms G.729 payloads (two 10-byte frames each) of seeded pseudo-random bits.

    Neither PyAV nor anything else on the test machine encodes G.729, but every 80-bit G.729 frame is
    a valid parameter set (line spectral pairs, pitch lags, codebook indices, gains) that a decoder
    turns into speech-like sound; so the test sends these and checks that the recording holds what
    FFmpeg's G.729 decoder makes of exactly these frames.
    """
    rng = random.Random(seed)
    return [bytes(rng.randrange(256) for _ in range(20)) for _ in range(count)]


def srtp_session(spec: str) -> Any:
    import base64

    import pylibsrtp

    suite, _, key = spec.partition(":")
    profiles = {"AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
                "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32}
    return pylibsrtp.Session(policy=pylibsrtp.Policy(key=base64.b64decode(key), srtp_profile=profiles[suite],
                                                     ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))


DTMF_DIGITS = (4, 1, 1, 1)


def main(argv: list[str]) -> None:
    host, port1, port2, seconds = argv[0], int(argv[1]), int(argv[2]), float(argv[3])
    f1 = float(argv[4]) if len(argv) > 4 else 440.0
    f2 = float(argv[5]) if len(argv) > 5 else 1000.0
    options = dict(o.partition("=")[::2] for o in argv[6:])
    opus = "opus" in options
    deaf = None
    if "deaf" in options:
        deaf = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        deaf.bind((host, 0))
    drop = tuple(int(x) for x in options["drop1"].split("-")) if "drop1" in options else (0, 0)
    gap = tuple(float(x) for x in options["gap"].split("-")) if "gap" in options else (0.0, 0.0)
    switch_at = int(options.get("ssrc1at", -1))
    streams: list[dict[str, Any]] = []
    legs = ((port1, f1),) if "mono" in options else ((port1, f1), (port2, f2))
    for n, (port, freq) in enumerate(legs, start=1):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rng = random.Random(port + 7919 * int(options.get("seed", 0)))  # seed=N: another SSRC/sequence/timestamp
        srtp = options.get(f"srtp{n}")
        frames = load_opus_frames(freq, seconds) if opus else tone_frames(freq, seconds)
        if n == 1 and "g729" in options:
            frames = g729_frames(len(frames))
        streams.append({"sock": sock, "addr": deaf.getsockname() if deaf is not None else (host, port),
                        "pt": 18 if n == 1 and "g729" in options else (111 if opus else 0), "frames": frames,
                        "seq": 65535 - 20 if port == port1 else rng.randrange(65536),  # stream 1 wraps early
                        "ts": rng.randrange(1 << 32), "ssrc": rng.randrange(1 << 32),
                        "srtp": srtp_session(srtp) if srtp else None, "forge": int(options.get(f"forge{n}", 0))})
    step = 960 if opus else 160
    start = time.monotonic()
    count = min(len(s["frames"]) for s in streams)
    for i in range(count):
        delay = start + i * 0.02 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        for n, s in enumerate(streams, start=1):
            if n == 1 and i == switch_at:
                s["ssrc"], s["seq"], s["ts"] = (s["ssrc"] + 1) & 0xFFFFFFFF, s["seq"] + 20000, s["ts"] + 10**6
            if (n == 1 and drop[0] <= i < drop[1]) or gap[0] <= i * 0.02 < gap[1]:
                s["seq"] += 1
                s["ts"] += step
                continue
            packets = [struct.pack(">BBHII", 0x80, s["pt"], s["seq"] & 0xFFFF, s["ts"] & 0xFFFFFFFF, s["ssrc"])
                       + s["frames"][i]]
            if n == 1 and "dtmf" in options and 50 <= i < 90:
                # RFC 4733: one event per 200 ms, event timestamp = its start, E bit on the last packet.
                digit = DTMF_DIGITS[(i - 50) // 10]
                event_ts = s["ts"] - step * ((i - 50) % 10)
                end = (i - 50) % 10 == 9
                payload = struct.pack(">BBH", digit, (0x80 if end else 0) | 10, step * ((i - 50) % 10 + 1))
                s["seq"] += 1
                packets.append(struct.pack(">BBHII", 0x80, 101, s["seq"] & 0xFFFF, event_ts & 0xFFFFFFFF, s["ssrc"])
                               + payload)
            for packet in packets:
                if s["srtp"] is not None:
                    packet = s["srtp"].protect(packet)
                s["sock"].sendto(packet, s["addr"])
            if s["srtp"] is not None and s["forge"] > 0 and i % 10 == 5:
                s["forge"] -= 1
                s["seq"] += 1
                forged = s["srtp"].protect(struct.pack(">BBHII", 0x80, s["pt"], s["seq"] & 0xFFFF,
                                                       (s["ts"] + step // 2) & 0xFFFFFFFF, s["ssrc"])
                                           + bytes(len(s["frames"][i])))
                s["sock"].sendto(forged[:-1] + bytes([forged[-1] ^ 0x5A]), s["addr"])
            s["seq"] += 1
            s["ts"] += step


if __name__ == "__main__":
    main(sys.argv[1:])
