"""Speech-like demo audio, generated on the spot (nothing is downloaded).

With ``espeak-ng`` installed, each party's lines are spoken by a different voice; without it, a
buzz shaped by moving vowel formants stands in, so the demo still has something audible. Output is
stereo 8 kHz 16-bit WAV: channel 0 the caller, channel 1 the agent, as telephony recorders store it.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile

RATE = 8000


def _espeak(text: str, voice: str) -> np.ndarray | None:
    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if exe is None:
        return None
    try:
        proc = subprocess.run([exe, "-v", voice, "-s", "160", "--stdout", text],  # noqa: S603
                              capture_output=True, check=True, timeout=30)
        data, rate = soundfile.read(io.BytesIO(proc.stdout), dtype="float32")
    except (subprocess.SubprocessError, OSError, soundfile.LibsndfileError):
        return None
    if data.ndim > 1:
        data = data.mean(axis=1)
    # Resample to telephone rate by linear interpolation: good enough for a demo voice.
    n_out = int(len(data) * RATE / rate)
    resampled: np.ndarray = np.interp(np.linspace(0, len(data) - 1, n_out), np.arange(len(data)), data)
    return resampled.astype(np.float32)


def _vowel_buzz(text: str, pitch: float, rng: np.random.Generator) -> np.ndarray:
    """Formant-filtered pulse train, one syllable per vowel-ish character: speech-like, not speech."""
    syllables = max(3, sum(ch in "aeiou" for ch in text.lower()))
    out = []
    for _ in range(syllables):
        dur = rng.uniform(0.12, 0.22)
        t = np.arange(int(dur * RATE)) / RATE
        f0 = pitch * (1 + 0.08 * np.sin(2 * np.pi * 3 * t))
        phase = 2 * np.pi * np.cumsum(f0) / RATE
        source = np.sign(np.sin(phase)) * 0.3
        f1, f2 = rng.uniform(300, 800), rng.uniform(900, 2200)
        formants = np.sin(2 * np.pi * f1 * t) * 0.6 + np.sin(2 * np.pi * f2 * t) * 0.3
        envelope = np.sin(np.pi * t / dur) ** 2
        out.append(source * formants * envelope)
        out.append(np.zeros(int(rng.uniform(0.03, 0.09) * RATE)))
    return np.concatenate(out).astype(np.float32)


def render_dialogue(turns: list[tuple[str, str]], path: Path, *, seed: int = 0) -> float:
    """Write a two-channel dialogue to ``path`` (WAV). ``turns`` are (``caller``|``agent``, text).

    Returns the duration in seconds.
    """
    rng = np.random.default_rng(seed)
    caller_parts: list[np.ndarray] = []
    agent_parts: list[np.ndarray] = []
    for speaker, text in turns:
        voice, pitch = ("en-us+f3", 210.0) if speaker == "caller" else ("en+m3", 120.0)
        speech = _espeak(text, voice)
        if speech is None:
            speech = _vowel_buzz(text, pitch, rng)
        gap = np.zeros(int(rng.uniform(0.3, 0.7) * RATE), dtype=np.float32)
        silence = np.zeros(len(speech), dtype=np.float32)
        if speaker == "caller":
            caller_parts += [speech, gap]
            agent_parts += [silence, gap]
        else:
            agent_parts += [speech, gap]
            caller_parts += [silence, gap]
    caller = np.concatenate(caller_parts)
    agent = np.concatenate(agent_parts)
    stereo = np.stack([caller, agent], axis=1)
    peak = float(np.abs(stereo).max()) or 1.0
    stereo = (stereo / peak * 0.8 * 32767).astype(np.int16)
    soundfile.write(str(path), stereo, RATE, subtype="PCM_16", format="WAV")
    return len(stereo) / RATE
