"""The capture path's use of ingest's admission step (``capture.admission.admit``) at the end of a call.

A SIPREC call is admitted by the same rules as an uploaded recording, so the two paths cannot
drift apart: a call that ended during the announcement (consent evidence ``announcement_ended_at``
from the metadata's extension data) keeps no caller audio and nothing is stored (A14); otherwise
the announcement is cut off the head, exactly as ingest does (``control.audio_origin`` relies on
the first stored sample being the end of the announcement); recording control events filed for the
call id (pause/resume/stop/personal) are honoured: paused spans silenced, the tail after a stop cut.

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
"""Two channels of PCM16: the usual layout of the capture spool (a mono call's spool has 2-byte frames)."""


def admit_call(runtime: Runtime, *, policy: PolicyDocument, meta: CallMetadata, rate: int, frames: int,
               actor: str, channels: int = 2) -> Admission:
    """Run ingest's admission for a finished call (commits its audit entries). Blocking."""
    info = AudioInfo(audio_format="wav", sample_rate=rate, channels=channels, frames=frames)
    with runtime.db.unit_of_work() as session:
        return admit(session, policy=policy, meta=meta, info=info, actor=actor, actor_role="capture",
                     clock=runtime.clock)


def kept_range(edit: AudioEdit, *, rate: int, frames: int) -> tuple[int, int]:
    """The frames kept, [start, end): after the announcement, before a stop."""
    start = min(frames, max(0, round(edit.keep_from * rate)))
    end = frames if edit.keep_until is None else max(start, min(frames, round(edit.keep_until * rate)))
    return start, end


def kept_frames(edit: AudioEdit, *, rate: int, frames: int) -> int:
    start, end = kept_range(edit, rate=rate, frames=frames)
    return end - start


def edit_stream(chunks: Iterator[bytes], edit: AudioEdit, *, rate: int, frames: int,
                frame_bytes: int = FRAME_BYTES) -> Iterator[bytes]:
    """Yield the kept part of the spool's PCM (``frame_bytes`` a frame), with paused spans zeroed (call times)."""
    start, end = (f * frame_bytes for f in kept_range(edit, rate=rate, frames=frames))
    spans = [(round(a * rate) * frame_bytes, round(b * rate) * frame_bytes) for a, b in edit.silence if b > a]
    offset = 0  # position of ``chunk`` in the unedited spool
    for chunk in chunks:
        lo, hi = max(start - offset, 0), min(end - offset, len(chunk))
        here = offset
        offset += len(chunk)
        if hi <= lo:
            continue  # before the announcement's end or after a stop; the reader still authenticates it
        buf = bytearray(chunk[lo:hi])
        for a, b in spans:
            s_lo, s_hi = max(a - here - lo, 0), min(b - here - lo, len(buf))
            if s_hi > s_lo:
                buf[s_lo:s_hi] = bytes(s_hi - s_lo)
        yield bytes(buf)

