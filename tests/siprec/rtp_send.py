"""Send two G.711 RTP streams of different tones (one per SIPREC m-line), as an SRC's media would.

Usage: python rtp_send.py HOST PORT1 PORT2 SECONDS [FREQ1 FREQ2] [CODEC]
Stream 1 goes to PORT1 (the first m-line), stream 2 to PORT2. Packets are 20 ms, 50 per second,
paced on the wall clock; different SSRCs and random initial sequence numbers/timestamps so wraps
and offsets are exercised. Used by the sipp scenarios through <exec> and by the benchmark.
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


def main(argv: list[str]) -> None:
    host, port1, port2, seconds = argv[0], int(argv[1]), int(argv[2]), float(argv[3])
    f1 = float(argv[4]) if len(argv) > 4 else 440.0
    f2 = float(argv[5]) if len(argv) > 5 else 1000.0
    streams: list[dict[str, Any]] = []
    for port, freq in ((port1, f1), (port2, f2)):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rng = random.Random(port)
        streams.append({"sock": sock, "addr": (host, port), "frames": tone_frames(freq, seconds),
                        "seq": 65535 - 20 if port == port1 else rng.randrange(65536),  # stream 1 wraps early
                        "ts": rng.randrange(1 << 32), "ssrc": rng.randrange(1 << 32)})
    start = time.monotonic()
    count = len(streams[0]["frames"])
    for i in range(count):
        delay = start + i * 0.02 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        for s in streams:
            header = struct.pack(">BBHII", 0x80, 0, s["seq"] & 0xFFFF, s["ts"] & 0xFFFFFFFF, s["ssrc"])
            s["sock"].sendto(header + s["frames"][i], s["addr"])
            s["seq"] += 1
            s["ts"] += 160


if __name__ == "__main__":
    main(sys.argv[1:])
