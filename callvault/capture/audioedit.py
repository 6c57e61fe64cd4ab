"""Cutting audio that must never be kept: the announcement, paused spans, everything after a stop.

Decoded with soundfile and re-encoded in the same container and sample format (WAV/FLAC exactly:
PCM samples are copied, not resampled; Ogg is re-encoded as Vorbis), in memory only: the plaintext
never touches the disk. Times are seconds from the start of the audio as it is before the edit.

Paused spans are *silenced* rather than cut out, so every later instant keeps its place on the call
timeline (a supervisor's note at 3:12 still points at 3:12); the timeline records that the span
existed. The head (announcement) and the tail (after a stop) are cut.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile

from callvault.core.errors import FieldProblem, InvalidInput

_DTYPES = {"PCM_16": "int16", "PCM_24": "int32", "PCM_32": "int32", "PCM_S8": "int16", "PCM_U8": "int16"}


@dataclass(frozen=True)
class AudioEdit:
    """What to remove: everything before ``keep_from``, after ``keep_until``, and ``silence`` spans."""

    keep_from: float = 0.0
    keep_until: float | None = None
    silence: tuple[tuple[float, float], ...] = ()

    @property
    def is_noop(self) -> bool:
        return self.keep_from <= 0 and self.keep_until is None and not self.silence


@dataclass(frozen=True)
class EditedAudio:
    data: bytes
    frames: int
    seconds: float


def apply_edit(source: Path | BinaryIO | bytes, edit: AudioEdit) -> EditedAudio:
    """Return the edited file's bytes. InvalidInput if nothing would remain."""
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    elif not isinstance(source, Path):
        source.seek(0)
    with soundfile.SoundFile(str(source) if isinstance(source, Path) else source) as snd:
        fmt, subtype, rate = snd.format, snd.subtype, int(snd.samplerate)
        data = snd.read(dtype=_DTYPES.get(subtype, "float32"), always_2d=True)
    total = len(data)

    def frame(seconds: float) -> int:
        return total if seconds >= total / rate else max(0, round(seconds * rate))

    start = frame(edit.keep_from)
    end = total if edit.keep_until is None else frame(edit.keep_until)
    for span_start, span_end in edit.silence:
        a, b = frame(span_start), frame(span_end)
        if b > a:
            data[a:b] = 0
    kept = data[start:end] if end > start else data[0:0]
    if len(kept) == 0:
        raise InvalidInput("nothing of this recording may be kept",
                           [FieldProblem("audio", "the edit removes all of the audio")])
    out = io.BytesIO()
    soundfile.write(out, np.ascontiguousarray(kept), rate, format=fmt, subtype=subtype)
    return EditedAudio(out.getvalue(), len(kept), len(kept) / rate)


def pause_spans(events: Sequence[tuple[str, float]], *, end: float | None) -> list[tuple[float, float]]:
    """Pair ``pause``/``resume`` instants (seconds) into spans; an unclosed pause runs to ``end``."""
    spans: list[tuple[float, float]] = []
    opened: float | None = None
    for kind, at in sorted(events, key=lambda e: e[1]):
        if kind == "pause" and opened is None:
            opened = at
        elif kind == "resume" and opened is not None:
            spans.append((opened, at))
            opened = None
    if opened is not None:
        spans.append((opened, end if end is not None else float("inf")))
    return spans
