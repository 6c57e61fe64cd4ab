"""RTP for recording: packet parsing, G.711/G.722/G.729/Opus decoding, per-stream timing, the two-channel mixer.

Opus (RFC 7587) is decoded with PyAV's libopus decoder (the ``av`` wheels bundle FFmpeg and libopus,
so nothing has to be installed on the host) at 48 kHz and low-pass filtered and decimated by 3 to the
16 kHz the recording keeps: telephony Opus is at most wideband in practice, 16 kHz is what G.722
calls and the transcription engines use, and it is a third of the storage of 48 kHz. Stereo Opus is
mixed down to the stream's one channel. G.729 (and its Annex A/B variants, which one decoder reads) is
decoded by the G.729 decoder of the same bundled FFmpeg, at 8 kHz: ``sdp.g729_available`` says whether
this build has it, and SDP offers G.729 only when it does (sdp.py).

Timing model. Each stream's audio is placed on the call's timeline (samples since the INVITE, at
the recording's sample rate) by **RTP timestamp**, anchored to the arrival time of the first
packet of each SSRC segment: ``pos = anchor + (ts - ts0) * rate / clock``. So reordering and
jitter cost nothing (a packet lands where its timestamp says), loss and DTX leave silence
(counted from sequence numbers, RFC 3550 A.3), a new SSRC or a timestamp jump that disagrees
with the wall clock by more than ``RESYNC_SECONDS`` starts a new segment at its arrival time,
and 16-bit sequence / 32-bit timestamp wraps are extended (RFC 3550 A.1).

The mixer holds a short window per call (``WINDOW_SECONDS``); everything older than the reorder
delay is flushed, interleaved (left = remote party, right = agent), to the encrypted writer.
Memory per call is therefore fixed. Packets older than the flushed point are late: counted, dropped.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from callvault.capture.siprec.sdp import Codec

RESYNC_SECONDS: Final = 5.0
WINDOW_SECONDS: Final = 3.0
_HDR: Final = struct.Struct(">BBHII")

Pcm = npt.NDArray[np.int16]


class RtpError(ValueError):
    """Not an RTP packet we can use."""


@dataclass(frozen=True, slots=True)
class RtpPacket:
    payload_type: int
    marker: bool
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes


def parse_rtp(data: bytes) -> RtpPacket:
    """Parse an RTP packet honouring padding, CSRCs and header extensions; RtpError otherwise."""
    if len(data) < 12:
        raise RtpError("shorter than an RTP header")
    b0, b1, seq, ts, ssrc = _HDR.unpack_from(data)
    if b0 >> 6 != 2:
        raise RtpError("not RTP version 2")
    offset = 12 + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        if len(data) < offset + 4:
            raise RtpError("truncated header extension")
        ext_words = struct.unpack_from(">H", data, offset + 2)[0]
        offset += 4 + 4 * ext_words
    end = len(data)
    if b0 & 0x20:
        if end <= offset:
            raise RtpError("padding without payload")
        end -= data[-1]
    if end < offset:
        raise RtpError("truncated RTP packet")
    return RtpPacket(b1 & 0x7F, bool(b1 & 0x80), seq, ts, ssrc, data[offset:end])


# ------------------------------------------------------------------------------------------ decoding
def _ulaw_table() -> Pcm:
    codes = np.arange(256, dtype=np.int32) ^ 0xFF
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def _alaw_table() -> Pcm:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    return np.where(sign != 0, magnitude, -magnitude).astype(np.int16)


ULAW: Final = _ulaw_table()
ALAW: Final = _alaw_table()


def _lowpass_taps(ratio: int, taps: int = 63) -> npt.NDArray[np.float64]:
    """Windowed-sinc low-pass for decimation by ``ratio`` (cut-off a little below the new Nyquist)."""
    n = np.arange(taps) - (taps - 1) / 2
    cutoff = 0.9 / (2 * ratio)
    h = 2 * cutoff * np.sinc(2 * cutoff * n) * np.blackman(taps)
    return np.asarray(h / h.sum(), dtype=np.float64)


class OpusDecoder:
    """Opus payloads → int16 mono PCM at 16 kHz (48 kHz decode, FIR low-pass, keep every third sample).

    The filter's history is carried between packets, so packet boundaries leave no clicks; every Opus
    frame size (2.5 to 60 ms) is a multiple of 120 samples at 48 kHz, so each packet yields exactly a
    third as many samples and timestamp placement stays exact.
    """

    RATIO: Final = 3
    _TAPS: Final = _lowpass_taps(3)

    def __init__(self) -> None:
        import av  # PyAV: FFmpeg with libopus inside the wheel

        name = "libopus" if "libopus" in av.codecs_available else "opus"
        ctx: Any = av.CodecContext.create(name, "r")
        ctx.layout = "mono"  # libopus mixes stereo down itself: half the samples to convert
        self._ctx = ctx
        self._history = np.zeros(len(self._TAPS) - 1, dtype=np.float64)
        self._av = av

    def decode(self, payload: bytes) -> Pcm:
        if not payload:
            return np.zeros(0, dtype=np.int16)
        try:
            frames = self._ctx.decode(self._av.Packet(payload))
        except (self._av.error.FFmpegError, ValueError):
            return np.zeros(0, dtype=np.int16)  # a corrupt frame: silence, as for a lost packet
        pieces = [_mono(frame) for frame in frames]
        if not pieces:
            return np.zeros(0, dtype=np.int16)
        x = np.concatenate([self._history, *pieces])
        self._history = x[len(x) - len(self._history):]
        y = np.convolve(x, self._TAPS, mode="valid")[:: self.RATIO]
        return np.clip(np.rint(y), -32768, 32767).astype(np.int16)


def _mono(frame: Any) -> npt.NDArray[np.float64]:
    """One decoded PyAV frame as float samples in int16 scale, channels averaged."""
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if frame.format.is_planar:
        samples = data.reshape(channels, -1).astype(np.float64).mean(axis=0)
    else:
        samples = data.reshape(-1, channels).astype(np.float64).mean(axis=1)
    if frame.format.name.startswith(("flt", "dbl")):
        samples = samples * 32767.0
    return np.asarray(samples, dtype=np.float64)


class G729Decoder:
    """G.729/G.729A payloads (10-byte frames, several per packet) → int16 PCM at 8 kHz, via FFmpeg.

    Annex B SID frames (2 bytes) and undecodable frames give no samples: the timeline leaves silence
    there, as for a lost packet, and placement by RTP timestamp keeps what follows in place.
    """

    FRAME: Final = 10

    def __init__(self) -> None:
        import av

        ctx: Any = av.CodecContext.create("g729", "r")
        ctx.sample_rate, ctx.layout = 8000, "mono"
        self._ctx = ctx
        self._av = av

    def decode(self, payload: bytes) -> Pcm:
        speech = payload[: len(payload) - len(payload) % self.FRAME]
        if not speech:
            return np.zeros(0, dtype=np.int16)
        try:
            frames = self._ctx.decode(self._av.Packet(speech))
        except (self._av.error.FFmpegError, ValueError):
            return np.zeros(0, dtype=np.int16)
        pieces = [_mono(frame) for frame in frames]
        if not pieces:
            return np.zeros(0, dtype=np.int16)
        return np.clip(np.rint(np.concatenate(pieces)), -32768, 32767).astype(np.int16)


class Decoder:
    """Turns one codec's payloads into int16 PCM at the codec's sample rate (stateful for G.722 and Opus)."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self._g722 = None
        self._opus: OpusDecoder | G729Decoder | None = None
        if codec.name == "G722":
            # The maintained ITU-T G.722 implementation (sippy/libg722 on PyPI as G722, public domain).
            import G722  # type: ignore[import-not-found,import-untyped,unused-ignore]

            self._g722 = G722.G722(16000, 64000)
        elif codec.name == "OPUS":
            self._opus = OpusDecoder()
        elif codec.name == "G729":
            self._opus = G729Decoder()

    def decode(self, payload: bytes) -> Pcm:
        name = self.codec.name
        if name == "PCMU":
            return ULAW[np.frombuffer(payload, dtype=np.uint8)]
        if name == "PCMA":
            return ALAW[np.frombuffer(payload, dtype=np.uint8)]
        if self._opus is not None:
            return self._opus.decode(payload)
        assert self._g722 is not None
        return np.asarray(self._g722.decode(payload), dtype=np.int16)


# ------------------------------------------------------------------------------------------- timing
@dataclass
class StreamStats:
    packets: int = 0
    expected: int = 0
    late: int = 0
    duplicates: int = 0
    ignored: int = 0
    """Packets of other payload types (telephone-event, comfort noise, unknown): never audio."""
    paused_dropped: int = 0
    ssrc_changes: int = 0
    resyncs: int = 0
    srtp_auth_failures: int = 0
    """SRTP packets whose authentication tag did not verify (forged, corrupted, wrong key): dropped."""
    srtp_replays: int = 0
    """SRTP packets libsrtp refused as replayed or too old: dropped."""

    @property
    def lost(self) -> int:
        return max(0, self.expected - self.packets)


@dataclass
class _Segment:
    ssrc: int
    anchor_pos: int
    base_ts: int
    last_ext_ts: int
    base_seq: int
    max_seq: int
    received: int = 0
    recent: set[int] = field(default_factory=set)


class StreamTimer:
    """Places one stream's packets on the call timeline (see the module docstring)."""

    def __init__(self, codecs: tuple[Codec, ...], out_rate: int) -> None:
        self.stats = StreamStats()
        self.out_rate = out_rate
        self.paused = False
        self._decoders = {c.payload_type: Decoder(c) for c in codecs}
        self._seg: _Segment | None = None
        self._closed_expected = 0
        self._closed_received = 0

    def set_codecs(self, codecs: tuple[Codec, ...]) -> None:
        old = {pt: d for pt, d in self._decoders.items() if d.codec in codecs}
        self._decoders = {c.payload_type: old.get(c.payload_type) or Decoder(c) for c in codecs}

    def pause(self) -> None:
        """Stop keeping audio; the next packet after ``resume`` starts a new segment (new anchor)."""
        self.paused = True
        self._close_segment()

    def resume(self) -> None:
        self.paused = False

    def _close_segment(self) -> None:
        if self._seg is not None:
            self._closed_expected += self._seg.max_seq - self._seg.base_seq + 1
            self._closed_received += self._seg.received
            self._seg = None
        self.stats.expected = self._closed_expected
        self.stats.packets = self._closed_received

    def on_packet(self, pkt: RtpPacket, arrival_pos: int) -> tuple[int, Pcm] | None:
        """Timeline position and PCM (at ``out_rate``) for a packet, or None if it carries no audio to keep."""
        if self.paused:
            self.stats.paused_dropped += 1
            return None
        decoder = self._decoders.get(pkt.payload_type)
        if decoder is None:
            # RFC 4733 telephone-events, comfort noise, unknown types: never decoded, never logged (the
            # event payload is a keyed digit). They share the stream's sequence numbers, so they are
            # counted as received, or every keyed digit would show up as packet loss.
            self.stats.ignored += 1
            seg = self._seg
            if seg is not None and seg.ssrc == pkt.ssrc:
                ext_seq = _unwrap(pkt.sequence, seg.max_seq, 1 << 16)
                if ext_seq not in seg.recent and abs(ext_seq - seg.max_seq) < 1 << 15:
                    seg.recent.add(ext_seq)
                    seg.received += 1
                    seg.max_seq = max(seg.max_seq, ext_seq)
                    seg.base_seq = min(seg.base_seq, ext_seq)
                    self.stats.expected = self._closed_expected + seg.max_seq - seg.base_seq + 1
                    self.stats.packets = self._closed_received + seg.received
            return None
        seg = self._seg
        if seg is None or seg.ssrc != pkt.ssrc:
            if seg is not None:
                # A failover or transfer: the old source's counters (its loss above all) are kept, not
                # overwritten by the new segment's, so they reach the audit entry and the stats file.
                self.stats.ssrc_changes += 1
                self._close_segment()
            seg = self._new_segment(pkt, arrival_pos)
        ext_ts = _unwrap(pkt.timestamp, seg.last_ext_ts, 1 << 32)
        ext_seq = _unwrap(pkt.sequence, seg.max_seq, 1 << 16)
        scale = self.out_rate / decoder.codec.clock_rate  # 8000 for G.711/G.722, 48000 for Opus
        pos = seg.anchor_pos + round((ext_ts - seg.base_ts) * scale)
        if abs(pos - arrival_pos) > RESYNC_SECONDS * self.out_rate:
            # A timestamp jump the wall clock does not confirm (SBC failover, hostile sender).
            self.stats.resyncs += 1
            self._close_segment()
            seg = self._new_segment(pkt, arrival_pos)
            ext_ts, ext_seq, pos = pkt.timestamp, pkt.sequence, arrival_pos
        if ext_seq in seg.recent:
            self.stats.duplicates += 1
            return None
        seg.recent.add(ext_seq)
        if len(seg.recent) > 512:
            floor = seg.max_seq - 256
            seg.recent = {s for s in seg.recent if s > floor}
        seg.received += 1
        seg.max_seq = max(seg.max_seq, ext_seq)
        seg.base_seq = min(seg.base_seq, ext_seq)
        seg.last_ext_ts = max(seg.last_ext_ts, ext_ts)
        self.stats.expected = self._closed_expected + seg.max_seq - seg.base_seq + 1
        self.stats.packets = self._closed_received + seg.received
        pcm = decoder.decode(pkt.payload)
        native = decoder.codec.sample_rate
        if native != self.out_rate:
            pcm = pcm[::2] if native > self.out_rate else np.repeat(pcm, self.out_rate // native)
        return pos, pcm

    def _new_segment(self, pkt: RtpPacket, arrival_pos: int) -> _Segment:
        self._seg = _Segment(pkt.ssrc, arrival_pos, pkt.timestamp, pkt.timestamp, pkt.sequence, pkt.sequence)
        return self._seg


def _unwrap(value: int, reference: int, modulus: int) -> int:
    """Extend a wrapping counter to the value nearest ``reference`` (RFC 3550 A.1 idea)."""
    base = reference - (reference % modulus)
    candidate = base + value
    half = modulus // 2
    if candidate - reference > half:
        candidate -= modulus
    elif reference - candidate > half:
        candidate += modulus
    return candidate


# -------------------------------------------------------------------------------------------- mixer
class Mixer:
    """Two channels (or one) on one timeline, flushed interleaved to ``sink`` (PCM16 little-endian).

    With ``channels=1`` (a mixed-stream call) every stream is added into the one channel, clipped: a
    single stream's samples land on zeros, so it is stored exactly as received.
    """

    def __init__(self, rate: int, sink: Callable[[bytes], None], *, window_seconds: float = WINDOW_SECONDS,
                 channels: int = 2) -> None:
        self.rate = rate
        self._sink = sink
        self._size = int(window_seconds * rate)
        self.channels = channels
        self._buf = np.zeros((self._size, channels), dtype=np.int16)
        self.base = 0
        """Timeline position of ``_buf[0]``: everything before it has been written."""
        self.high = 0
        """One past the last position any audio reached."""
        self.late_samples = 0

    def put(self, channel: int, pos: int, pcm: Pcm) -> None:
        end = pos + len(pcm)
        if end <= self.base:
            self.late_samples += len(pcm)
            return
        if pos < self.base:
            self.late_samples += self.base - pos
            pcm = pcm[self.base - pos:]
            pos = self.base
        if end > self.base + self._size:
            self.flush(end - self._size)
        start = pos - self.base
        if self.channels == 1:
            lane = self._buf[start:start + len(pcm), 0]
            lane[:] = np.clip(lane.astype(np.int32) + pcm, -32768, 32767)
        else:
            self._buf[start:start + len(pcm), channel] = pcm
        self.high = max(self.high, end)

    def flush(self, upto: int) -> None:
        """Write everything before ``upto`` (silence where nothing arrived)."""
        n = upto - self.base
        if n <= 0:
            return
        while n > self._size:  # a long silent stretch: write it without holding it
            self._sink(self._buf.tobytes())
            self._buf[:] = 0
            self.base += self._size
            n -= self._size
        self._sink(self._buf[:n].tobytes())
        self._buf[: self._size - n] = self._buf[n:].copy()
        self._buf[self._size - n:] = 0
        self.base += n

    def finish(self, end: int | None = None) -> int:
        """Flush to ``end`` (default: the last audio) and return the total frames written."""
        self.flush(max(end if end is not None else self.high, self.base))
        return self.base
