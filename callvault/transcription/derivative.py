"""Redacted audio: the recording with a tone over every span of personal data, built on demand.

The spans come from the transcript's word timings (``redaction.find``: card numbers, security codes,
phone numbers, e-mail addresses, account numbers, names) plus the spans already cut from the stored
audio (``removed``). Each span is replaced by a 1 kHz tone at -20 dBFS on the channel of the speaker
who said it (caller → channel 0, agent → channel 1; a mono call or keyed tones: every channel),
padded by 0.15 s because word timings are approximate.

For a purpose that serves only an anonymised copy (training), the caller's channel is silenced as
well: their voice identifies them. A mono recording cannot be anonymised that way and is refused.

The result is a 16-bit PCM WAV produced block by block from the decrypted original held in memory:
no plaintext is written anywhere and nothing is cached.
"""

from __future__ import annotations

import io
import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import soundfile

from callvault.core.errors import AccessDenied, InvalidInput
from callvault.transcription import audio as taudio
from callvault.transcription import redaction
from callvault.transcription.document import TranscriptDoc

TONE_HZ: Final = 1000.0
TONE_LEVEL: Final = 0.1
"""Peak amplitude of the tone (-20 dBFS): clearly audible, not painful."""
PAD_SECONDS: Final = 0.15
BLOCK_FRAMES: Final = 64 * 1024


@dataclass(frozen=True)
class ToneSpan:
    channels: tuple[int, ...]
    start: float
    end: float


@dataclass(frozen=True)
class RedactedAudio:
    """What the route streams: the WAV size, its chunks, and counts by kind (never content)."""

    size: int
    chunks: Iterator[bytes]
    counts: Counter[str]
    caller_masked: bool


def channels_of(speaker: str, channels: int) -> tuple[int, ...]:
    if channels >= 2 and speaker in taudio.SPEAKERS:
        return (taudio.SPEAKERS.index(speaker),)
    if speaker.startswith("channel") and speaker[7:].isdigit() and int(speaker[7:]) < channels:
        return (int(speaker[7:]),)
    return tuple(range(channels))


def tone_spans(doc: TranscriptDoc, channels: int, *, region: str = "CA") -> tuple[list[ToneSpan], Counter[str]]:
    """The spans to cover, per channel, and how many of each kind (for the audit; no content)."""
    spans: list[ToneSpan] = []
    counts: Counter[str] = Counter()
    for f in redaction.find(doc, region=region):
        spans.append(ToneSpan(channels_of(f.speaker, channels), f.start, f.end))
        counts[f.kind] += 1
    for r in doc.removed:  # already silent in the stored audio; the tone marks them like the rest
        spans.append(ToneSpan(channels_of(str(r.get("speaker", "")), channels), float(r["start"]), float(r["end"])))
        counts[str(r["kind"])] += 1
    return spans, counts


def _wav_header(frames: int, channels: int, rate: int) -> bytes:
    data_size = frames * channels * 2
    return (b"RIFF" + struct.pack("<I", 36 + data_size) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * channels * 2, channels * 2, 16)
            + b"data" + struct.pack("<I", data_size))


def _apply(block: np.ndarray[Any, np.dtype[np.float32]], first: int, rate: int, spans: list[ToneSpan],
           mask_caller: bool) -> None:
    """Tones (and the caller's silence) over the part of ``spans`` that falls in this block, in place."""
    if mask_caller:
        block[:, 0] = 0.0
    last = first + len(block)
    for s in spans:
        a = max(first, int((s.start - PAD_SECONDS) * rate))
        b = min(last, int(np.ceil((s.end + PAD_SECONDS) * rate)))
        if b <= a:
            continue
        t = np.arange(a, b) / rate
        tone = (TONE_LEVEL * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)
        for ch in s.channels:
            if mask_caller and ch == 0:
                continue
            block[a - first: b - first, ch] = tone


MONO_REFUSAL = ("this purpose is served only by an anonymised copy, and a mono recording cannot be anonymised: "
                "the caller's voice cannot be separated from the agent's")
"""Why a one-channel call gets no anonymised copy (redacted audio, training clips)."""


def build(raw: bytes, doc: TranscriptDoc, *, mask_caller: bool, region: str = "CA") -> RedactedAudio:
    """The redacted WAV for ``raw`` (the decrypted original), produced lazily block by block."""
    try:
        info = soundfile.info(io.BytesIO(raw))
    except (RuntimeError, soundfile.LibsndfileError) as exc:
        raise InvalidInput(f"the recording's audio cannot be decoded: {exc}") from exc
    channels, rate, frames = int(info.channels), int(info.samplerate), int(info.frames)
    if mask_caller and channels < 2:
        raise AccessDenied(MONO_REFUSAL)
    spans, counts = tone_spans(doc, channels, region=region)

    def chunks() -> Iterator[bytes]:
        yield _wav_header(frames, channels, rate)
        first = 0
        with soundfile.SoundFile(io.BytesIO(raw)) as f:
            for block in f.blocks(blocksize=BLOCK_FRAMES, dtype="float32", always_2d=True):
                block = np.array(block[: max(0, frames - first)], dtype=np.float32)
                if not len(block):
                    break  # never more than the header announced
                _apply(block, first, rate, spans, mask_caller)
                first += len(block)
                yield (np.clip(block, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()
        if first < frames:  # a decoder that delivers fewer frames than announced: pad, keep the length true
            yield bytes((frames - first) * channels * 2)

    return RedactedAudio(size=44 + frames * channels * 2, chunks=chunks(), counts=counts, caller_masked=mask_caller)
