"""Checking that an uploaded file is audio we can keep and play back.

Only containers browsers and telephony tools both handle are accepted (WAV, FLAC, Ogg). The file
is decoded end to end before it is accepted, so a truncated or corrupt upload is refused at the
door instead of being discovered when someone needs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import soundfile

from callvault.core.errors import FieldProblem, InvalidInput

FORMATS = {"WAV": "wav", "WAVEX": "wav", "FLAC": "flac", "OGG": "ogg"}
CONTENT_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "ogg": "audio/ogg"}
MIN_RATE, MAX_RATE = 8000, 48000
MAX_CHANNELS = 8
_BLOCK_FRAMES = 1 << 16
_HEAD_BYTES = 64 * 1024
"""How much of a WAV is read to find its ``data`` chunk (a ``LIST``/``bext`` chunk before it is small)."""


@dataclass(frozen=True)
class AudioInfo:
    """What we learned about the audio; stored with the recording."""

    audio_format: str
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration_seconds(self) -> float:
        return self.frames / self.sample_rate


def _bad(message: str) -> InvalidInput:
    return InvalidInput(f"audio: {message}", [FieldProblem("audio", message)])


def probe_audio(source: Path | BinaryIO) -> AudioInfo:
    """Identify and fully decode ``source`` (a path or a seekable file); InvalidInput explains what is wrong."""
    if not isinstance(source, Path):
        source.seek(0)
    try:
        with soundfile.SoundFile(str(source) if isinstance(source, Path) else source) as snd:
            fmt = FORMATS.get(snd.format)
            if fmt is None:
                raise _bad(f"{snd.format} files are not accepted; send WAV, FLAC or Ogg")
            if not (MIN_RATE <= snd.samplerate <= MAX_RATE):
                raise _bad(f"sample rate {snd.samplerate} Hz is outside {MIN_RATE}-{MAX_RATE} Hz")
            if not (1 <= snd.channels <= MAX_CHANNELS):
                raise _bad(f"{snd.channels} channels; 1 to {MAX_CHANNELS} are accepted")
            if fmt == "wav" and snd.subtype in ("PCM_16", "PCM_U8", "PCM_24", "PCM_32", "ULAW", "ALAW", "FLOAT"):
                # Uncompressed: the length follows from the file size (``_check_wav_length`` then
                # compares it with what the header declares).
                frames = snd.frames
            else:
                frames = 0
                while True:
                    block = snd.read(_BLOCK_FRAMES, dtype="int16", always_2d=True)
                    if not len(block):
                        break
                    frames += len(block)
            if frames <= 0:
                raise _bad("the file contains no audio samples")
            info = AudioInfo(fmt, int(snd.samplerate), int(snd.channels), int(frames))
    except InvalidInput:
        raise
    except (soundfile.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
        raise _bad(f"not a readable WAV, FLAC or Ogg file ({exc})") from exc
    if info.audio_format == "wav":
        _check_wav_length(source, info)
    return info


def _riff_data_chunk(head: bytes, total: int) -> tuple[int, int, int] | None:
    """(declared data bytes, bytes the file holds after the data header, average bytes per second) of a
    RIFF/WAVE file, from its first chunks (``head``) and its length; None when the chunks cannot be walked."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    at, rate = 12, 0
    while at + 8 <= len(head):
        chunk, size = head[at:at + 4], int.from_bytes(head[at + 4:at + 8], "little")
        if chunk == b"fmt " and at + 20 <= len(head):
            rate = int.from_bytes(head[at + 16:at + 20], "little")  # nAvgBytesPerSec
        if chunk == b"data":
            return size, total - (at + 8), rate
        at += 8 + size + (size & 1)  # chunks are padded to an even length
    return None


def _check_wav_length(source: Path | BinaryIO, info: AudioInfo) -> None:
    """Refuse a WAV whose ``data`` chunk declares more audio than the file holds.

    Why: libsndfile reads a truncated WAV up to where it ends and reports that length, so half a 1 s
    upload was stored as a complete 0.5 s call, and a ``data`` length of 0xFFFFFFF0 (a writer that never
    went back to fill it in, or a forged header) passed too (issue 24). A recording is evidence: one that
    lost its end must not be kept as if whole. The uploader (or the PBX, whose import marks the file
    rejected with this reason) still has the file and can send it whole.
    """
    if isinstance(source, Path):
        with source.open("rb") as fh:
            head, total = fh.read(_HEAD_BYTES), source.stat().st_size
    else:
        source.seek(0)
        head = source.read(_HEAD_BYTES)
        total = source.seek(0, 2)
        source.seek(0)
    found = _riff_data_chunk(head, total)
    if found is None:
        return
    declared, held, per_second = found
    if declared <= held:
        return
    said = (f"{declared / per_second:.1f} s of audio" if per_second else f"{declared} bytes of audio")
    raise _bad(f"the WAV header declares {said} but the file holds {info.duration_seconds:.1f} s: the file is "
               "cut short (or its header is wrong); nothing was stored, send the whole file")
