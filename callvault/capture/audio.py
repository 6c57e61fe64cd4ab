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
                # Uncompressed: libsndfile already checked the header against the file size.
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
            return AudioInfo(fmt, int(snd.samplerate), int(snd.channels), int(frames))
    except InvalidInput:
        raise
    except (soundfile.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
        raise _bad(f"not a readable WAV, FLAC or Ogg file ({exc})") from exc
