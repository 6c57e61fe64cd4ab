"""Audio handling for transcription: decode, split channels, resample, find and blank DTMF tones.

Channel convention (documented for integrators): channel 0 is the caller (remote party), channel 1
the agent. A mono recording is transcribed as one speaker, ``call``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import soundfile

from callvault.core.errors import InvalidInput

Samples = np.ndarray[Any, np.dtype[np.float32]]
SPEAKERS: Final = ("caller", "agent")
TARGET_RATE: Final = 16000

_DTMF_LOW: Final = (697.0, 770.0, 852.0, 941.0)
_DTMF_HIGH: Final = (1209.0, 1336.0, 1477.0, 1633.0)
_KEYS: Final = ("123A", "456B", "789C", "*0#D")


@dataclass
class DecodedAudio:
    """A recording's samples as float32 (frames x channels) plus what is needed to write it back."""

    data: np.ndarray[Any, np.dtype[np.float32]]
    rate: int
    format: str
    subtype: str

    @property
    def channels(self) -> int:
        return int(self.data.shape[1])

    def speaker(self, channel: int) -> str:
        if self.channels == 1:
            return "call"
        return SPEAKERS[channel] if channel < len(SPEAKERS) else f"channel{channel}"

    def encode(self) -> bytes:
        buf = io.BytesIO()
        soundfile.write(buf, self.data, self.rate, format=self.format, subtype=self.subtype)
        return buf.getvalue()


def decode(raw: bytes) -> DecodedAudio:
    try:
        with soundfile.SoundFile(io.BytesIO(raw)) as f:
            data = f.read(dtype="float32", always_2d=True)
            return DecodedAudio(data=data, rate=int(f.samplerate), format=str(f.format), subtype=str(f.subtype))
    except (RuntimeError, soundfile.LibsndfileError) as exc:
        raise InvalidInput(f"the recording's audio cannot be decoded: {exc}") from exc


def resample(x: Samples, rate: int, target: int = TARGET_RATE) -> Samples:
    """Band-limited resampling (windowed-sinc low-pass when going down, then interpolation)."""
    if rate == target or len(x) == 0:
        return x.astype(np.float32, copy=False)
    if target < rate:
        cutoff = 0.5 * target / rate * 0.95
        taps = np.arange(-32, 33)
        kernel = 2 * cutoff * np.sinc(2 * cutoff * taps) * np.hamming(len(taps))
        x = np.convolve(x, kernel / kernel.sum(), mode="same")
    n = round(len(x) * target / rate)
    positions = np.arange(n) * (rate / target)
    out: Samples = np.interp(positions, np.arange(len(x)), x).astype(np.float32)
    return out


def _goertzel_power(frames: np.ndarray[Any, np.dtype[np.float64]], freq: float, rate: int) -> np.ndarray[Any, Any]:
    """|X(f)|² for every row of ``frames`` (vectorised Goertzel at an exact, non-bin frequency)."""
    n = frames.shape[1]
    w = 2.0 * np.pi * freq / rate
    coeff = 2.0 * np.cos(w)
    s1 = np.zeros(frames.shape[0])
    s2 = np.zeros(frames.shape[0])
    for i in range(n):
        s0 = frames[:, i] + coeff * s1 - s2
        s2, s1 = s1, s0
    return np.asarray(s1 * s1 + s2 * s2 - coeff * s1 * s2)


@dataclass(frozen=True)
class ToneRun:
    start: float
    end: float
    key: str
    """The key pressed. Used only to decide that one tone run ended; never stored or logged."""


def detect_dtmf(x: Samples, rate: int, *, frame_seconds: float = 0.02, min_seconds: float = 0.03) -> list[ToneRun]:
    """Runs of DTMF tones in one channel.

    A frame counts as a key when the strongest low-group and high-group frequencies together hold
    most of the frame's energy (speech and music spread theirs), neither is drowned by the other
    (twist), and the frame is not silence.
    """
    n = max(64, int(rate * frame_seconds))
    count = len(x) // n
    if count == 0:
        return []
    frames = x[: count * n].astype(np.float64).reshape(count, n)
    energy = np.sum(frames * frames, axis=1)
    rel = {f: 2.0 * _goertzel_power(frames, f, rate) / (n * np.maximum(energy, 1e-12))
           for f in (*_DTMF_LOW, *_DTMF_HIGH)}
    low = np.stack([rel[f] for f in _DTMF_LOW], axis=1)
    high = np.stack([rel[f] for f in _DTMF_HIGH], axis=1)
    li, hi = low.argmax(axis=1), high.argmax(axis=1)
    lp, hp = low.max(axis=1), high.max(axis=1)
    loud = energy / n > 1e-5
    is_tone = loud & (lp + hp > 0.7) & (lp > 0.15) & (hp > 0.15)
    runs: list[ToneRun] = []
    i = 0
    while i < count:
        if not is_tone[i]:
            i += 1
            continue
        j = i
        while j + 1 < count and is_tone[j + 1] and li[j + 1] == li[i] and hi[j + 1] == hi[i]:
            j += 1
        if (j - i + 1) * n / rate >= min_seconds:
            runs.append(ToneRun(i * n / rate, (j + 1) * n / rate, _KEYS[int(li[i])][int(hi[i])]))
        i = j + 1
    return runs


def blank(data: np.ndarray[Any, np.dtype[np.float32]], rate: int, spans: list[tuple[float, float]],
          *, pad: float = 0.0) -> int:
    """Overwrite ``spans`` (seconds) with silence in every channel, in place; returns samples blanked."""
    total = 0
    for start, end in spans:
        a = max(0, int((start - pad) * rate))
        b = min(len(data), int(np.ceil((end + pad) * rate)))
        if b > a:
            data[a:b, :] = 0.0
            total += b - a
    return total

