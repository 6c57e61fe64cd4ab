"""The capture path's use of ingest's admission step (``capture.admission.admit``) at the end of a call.

A SIPREC call is admitted by the same rules as an uploaded recording, so the two paths cannot
drift apart: a call that ended during the announcement (consent evidence ``announcement_ended_at``
from the metadata's extension data) keeps no caller audio and nothing is stored (A14); recording
control events filed for the call id (pause/resume/stop/personal) are honoured.

One difference, and why: ingest *cuts* the announcement off the head of the file; here the
announcement span is *silenced* instead (both channels), so every instant of the capture timeline
(pause/resume/metadata marks in the audit entry, measured from the INVITE) still points at the
same place in the audio. A stop still cuts the tail; paused spans are silenced, as in ingest.

The edit is applied while the encrypted spool is re-read into the WAV (``edit_stream``): no
plaintext copy, fixed memory.
"""

from __future__ import annotations

from collections.abc import Iterator

from callvault.capture.admission import Admission, admit
from callvault.capture.audio import AudioInfo
from callvault.capture.audioedit import AudioEdit
from callvault.capture.metadata import CallMetadata
from callvault.policy.schema import PolicyDocument
from callvault.runtime import Runtime

FRAME_BYTES = 4
"""Two channels of PCM16: the layout of the capture spool."""


def admit_call(runtime: Runtime, *, policy: PolicyDocument, meta: CallMetadata, rate: int, frames: int,
               actor: str) -> Admission:
    """Run ingest's admission for a finished call (commits its audit entries). Blocking."""
    info = AudioInfo(audio_format="wav", sample_rate=rate, channels=2, frames=frames)
    with runtime.db.unit_of_work() as session:
        return admit(session, policy=policy, meta=meta, info=info, actor=actor, actor_role="capture",
                     clock=runtime.clock)


def kept_frames(edit: AudioEdit, *, rate: int, frames: int) -> int:
    """Frames left once a stop's tail is cut (the announcement and pauses are silenced, not cut)."""
    if edit.keep_until is None:
        return frames
    return max(0, min(frames, round(edit.keep_until * rate)))


def silenced_spans(edit: AudioEdit, *, rate: int) -> list[tuple[int, int]]:
    """Frame ranges to zero: the announcement head and every paused span."""
    spans = [(0, round(edit.keep_from * rate))] if edit.keep_from > 0 else []
    spans += [(round(a * rate), round(b * rate)) for a, b in edit.silence]
    return [(a, b) for a, b in spans if b > a]


def edit_stream(chunks: Iterator[bytes], edit: AudioEdit, *, rate: int, frames: int) -> Iterator[bytes]:
    """Yield the spool's PCM with silenced spans zeroed and the tail after a stop dropped."""
    limit = kept_frames(edit, rate=rate, frames=frames) * FRAME_BYTES
    spans = [(a * FRAME_BYTES, b * FRAME_BYTES) for a, b in silenced_spans(edit, rate=rate)]
    offset = 0
    for chunk in chunks:
        if offset >= limit:
            continue  # drain the reader (it authenticates every chunk) without emitting more
        data = chunk[: limit - offset]
        if spans:
            buf = bytearray(data)
            for a, b in spans:
                lo, hi = max(a - offset, 0), min(b - offset, len(buf))
                if hi > lo:
                    buf[lo:hi] = bytes(hi - lo)
            data = bytes(buf)
        offset += len(data)
        yield data

