"""Build a telephone speech corpus for ``bench/asr.py --corpus``: Festival voices, G.711 µ-law 8 kHz.

Why: espeak-ng puts most fricative energy above 3.4 kHz, so on telephone audio it measures the voice,
not the recogniser (../shared/ASR.md: 37-40% WER on espeak vs 5.5% on a Festival voice). Voices built
from recorded speech (Debian's ``festival`` with the HTS voice ``cmu_us_slt_arctic_hts`` and the
diphone voice ``kal_diphone``) sound natural enough to say something about real callers.

Each sentence is synthesised with each voice, band-limited to 300-3400 Hz, resampled to 8 kHz and
written as G.711 µ-law WAV, the form the product's capture path stores and transcribes (a SIPREC
call's PCMU payload); its reference text goes beside it (``X.wav`` + ``X.txt``), one folder per voice.

Run (needs ``apt-get install festival festvox-us-slt-hts festvox-kallpc16k``; nothing in the test
suite does)::

    python -m bench.asr_corpus --out build/asr-corpus
    python -m bench.asr --engines faster_whisper --corpus build/asr-corpus/cmu_us_slt_arctic_hts
    python -m bench.asr --engines faster_whisper --corpus build/asr-corpus/kal_diphone
    python -m bench.asr --engines faster_whisper --corpus build/asr-corpus/cmu_us_slt_arctic_hts-call

``<voice>-call`` holds the same sentences as one file of about two minutes (one side of a call), on
which the real-time factor per stream is meaningful (a 5 s clip still costs a 30 s window).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile

from bench.asr import SENTENCES
from callvault.transcription import audio as taudio

VOICES = ("cmu_us_slt_arctic_hts", "kal_diphone")
"""Festival voices from Debian: ``festvox-us-slt-hts`` (HTS, a recorded US female speaker) and
``festvox-kallpc16k`` (diphone, a US male speaker)."""
PACKAGES = "festival festvox-us-slt-hts festvox-kallpc16k"

MORE_SENTENCES = [
    "I was charged twice for invoice 30917 on March 3.",
    "The Zentrix Smart Thermostat stopped connecting to the app last night.",
    "My account number is 55 21 904 and the postcode is M5V 2T6.",
    "Could you move my appointment to Thursday at 2 in the afternoon?",
    "The warranty on my Acme Router Pro ends in September 2027.",
    "I never received the confirmation email for order 61408.",
    "Your colleague promised a call back within 24 hours, but nobody called.",
    "Please send the replacement to 18 King Street West, Toronto.",
    "The error message says code 502 every time I try to log in.",
    "I would like to upgrade to the premium plan for 39 dollars a month.",
    "My daughter added a second line to the account on January 14.",
    "Can I pay the remaining balance of 210 dollars by credit card?",
    "The tablet screen cracked after 2 weeks of normal use.",
    "I spoke to someone called Priya on Tuesday about the same problem.",
]
"""More of what callers say (numbers, dates, product names, addresses), beside bench/asr.py's ten."""


def festival_wave(text: str, voice: str, tmp: Path) -> tuple[np.ndarray, int]:
    """One sentence in ``voice`` as float samples and their rate (Festival's ``text2wave``)."""
    source, out = tmp / "s.txt", tmp / "s.wav"
    source.write_text(text + "\n", encoding="utf-8")
    subprocess.run(["text2wave", "-eval", f"(voice_{voice})", str(source), "-o", str(out)],
                   check=True, capture_output=True, timeout=120)
    data, rate = soundfile.read(out, dtype="float32", always_2d=True)
    return data[:, 0], int(rate)


def telephone_8k(samples: np.ndarray, rate: int) -> np.ndarray:
    """300-3400 Hz, 8 kHz, peak-normalised to -3 dBFS: what a telephone network delivers."""
    x = taudio.resample(samples, rate, 8000)
    spectrum = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(len(x), 1 / 8000)
    spectrum[(freqs < 300) | (freqs > 3400)] = 0
    band = np.fft.irfft(spectrum, len(x))
    pad = np.zeros(int(0.3 * 8000))  # a little silence either side, as in a call
    peak = float(np.abs(band).max()) or 1.0
    out: np.ndarray = np.concatenate([pad, band / peak * 0.7, pad]).astype(np.float32)
    return out


def _one_long_call(folder: Path, out: Path) -> None:
    """All sentences of a voice in one file with pauses between them, as one side of a two-minute call:
    the real-time factor of a short clip is inflated (Whisper always processes a 30 s window), so
    RTF per stream is measured on this one (../shared/ASR.md measured it on a 60 s file)."""
    out.mkdir(parents=True, exist_ok=True)
    parts, texts = [], []
    for wav in sorted(folder.glob("*.wav")):
        samples, _rate = soundfile.read(wav, dtype="float32")
        parts += [samples, np.zeros(int(0.8 * 8000), dtype=np.float32)]
        texts.append(wav.with_suffix(".txt").read_text(encoding="utf-8").strip())
    soundfile.write(out / "call.wav", np.concatenate(parts), 8000, subtype="ULAW", format="WAV")
    (out / "call.txt").write_text(" ".join(texts) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="build/asr-corpus", help="folder to write (one sub-folder per voice)")
    parser.add_argument("--voices", default=",".join(VOICES))
    args = parser.parse_args(argv)
    if shutil.which("text2wave") is None:
        print(f"Festival is not installed: apt-get install {PACKAGES}", file=sys.stderr)
        return 2
    sentences = SENTENCES + MORE_SENTENCES
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for voice in args.voices.split(","):
            folder = Path(args.out) / voice
            folder.mkdir(parents=True, exist_ok=True)
            seconds = 0.0
            for i, text in enumerate(sentences, 1):
                try:
                    samples, rate = festival_wave(text, voice, tmp)
                except subprocess.CalledProcessError as exc:
                    print(f"voice {voice} failed ({exc.stderr.decode(errors='replace').strip()[-200:]}); "
                          f"is it installed? apt-get install {PACKAGES}", file=sys.stderr)
                    return 2
                phone = telephone_8k(samples, rate)
                soundfile.write(folder / f"{i:02d}.wav", phone, 8000, subtype="ULAW", format="WAV")
                (folder / f"{i:02d}.txt").write_text(text + "\n", encoding="utf-8")
                seconds += len(phone) / 8000
            _one_long_call(folder, Path(args.out) / f"{voice}-call")
            print(f"{folder}: {len(sentences)} sentences, {seconds:.0f} s of G.711 µ-law 8 kHz audio")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
