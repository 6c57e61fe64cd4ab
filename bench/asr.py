"""Speech-to-text benchmark: word error rate and real-time factor per backend, clean and telephone.

Generates its own test set with espeak-ng (customer-support sentences with numbers, a date, a product
name and an e-mail-like phrase), then transcribes each sentence

* clean: 16 kHz as synthesised, and
* telephone: band-limited, resampled to 8 kHz and passed through G.711 µ-law (encode + decode),

with every backend that is installed. WER is computed on normalised words (lower case, no
punctuation, numbers written as single digits: "48152" = "four eight one five two", ordinal suffixes
dropped: "20th" = "20"), so formatting does not count as an error. Real-time factor = processing
seconds / audio seconds.

Run: ``python -m bench.asr [--engines faster_whisper,pocketsphinx] [--voices en-us,en-gb]``.

Natural speech: ``python -m bench.asr --corpus DIR`` takes every ``X.wav`` (any rate, mono or the
first channel) with its reference text in ``X.txt`` instead of the synthetic set, since synthetic
voices say little about real callers (docs/transcription.md); such files are measured as given.
``python -m bench.asr_corpus`` builds one from Festival voices in G.711 µ-law 8 kHz.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

from callvault.transcription import audio as taudio
from callvault.transcription.engines import get_engine

SENTENCES = [
    "My order number is 48152 and it has not arrived yet.",
    "I would like a refund of 125 dollars for the Acme Router Pro.",
    "The delivery was promised for November 20 but nobody came.",
    "You can reach me at jane dot doe at example dot com.",
    "Please cancel the subscription on account 7730 before Friday.",
    "The technician said the modem needs a firmware update.",
    "I have been waiting on hold for 45 minutes today.",
    "Can you confirm the replacement will ship on Monday morning?",
    "My phone number is 416 555 0142 if you need to call back.",
    "Thank you for your help, the issue is resolved now.",
]
_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def normalise(text: str) -> list[str]:
    text = text.lower().replace("@", " at ").replace("$", " ")
    text = re.sub(r"(\d)[,.](\d)", r"\1\2", text)
    text = re.sub(r"(\d)(?:st|nd|rd|th)\b", r"\1", text)  # "November 20th" = "November 20": a date's formatting
    words: list[str] = []
    for token in re.findall(r"[a-z']+|\d+", text):
        if token.isdigit():
            words.extend(token)  # digits one by one
        elif token in _ONES:
            words.append(str(_ONES.index(token)))
        elif token == "oh":
            words.append("0")
        elif token not in ("dollars", "dollar", "dot"):
            words.append(token.replace("'", ""))
    return words


def wer(reference: list[str], hypothesis: list[str]) -> tuple[int, int]:
    """(edit distance, reference length) — word-level Levenshtein."""
    d = list(range(len(hypothesis) + 1))
    for i, r in enumerate(reference, 1):
        prev, d[0] = d[0], i
        for j, h in enumerate(hypothesis, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (r != h))
    return d[len(hypothesis)], len(reference)


def mulaw_roundtrip(x: np.ndarray) -> np.ndarray:
    mu = 255.0
    y = np.sign(x) * np.log1p(mu * np.abs(np.clip(x, -1, 1))) / np.log1p(mu)
    q = np.round((y + 1) / 2 * 255) / 255 * 2 - 1  # 8-bit code words
    out: np.ndarray = (np.sign(q) * (np.power(1 + mu, np.abs(q)) - 1) / mu).astype(np.float32)
    return out


def telephone(x16k: np.ndarray) -> np.ndarray:
    spectrum = np.fft.rfft(x16k)
    freqs = np.fft.rfftfreq(len(x16k), 1 / 16000)
    spectrum[(freqs < 300) | (freqs > 3400)] = 0
    band = np.fft.irfft(spectrum, len(x16k)).astype(np.float32)
    return taudio.resample(mulaw_roundtrip(taudio.resample(band, 16000, 8000)), 8000, 16000)


def synthesise(text: str, voice: str, tmp: Path) -> np.ndarray:
    out = tmp / "s.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(out), text], check=True)
    data, rate = soundfile.read(out, dtype="float32")
    return taudio.resample(data, rate, 16000)


def load_corpus(folder: Path) -> list[tuple[str, np.ndarray]]:
    """(reference text, 16 kHz mono samples) for every ``X.wav`` in ``folder`` that has an ``X.txt``."""
    clips = []
    for wav in sorted(folder.glob("*.wav")):
        reference = wav.with_suffix(".txt")
        if not reference.is_file():
            continue
        data, rate = soundfile.read(wav, dtype="float32", always_2d=True)
        clips.append((reference.read_text(encoding="utf-8"), taudio.resample(data[:, 0], rate, 16000)))
    return clips


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engines", default="faster_whisper,pocketsphinx")
    parser.add_argument("--voices", default="en-us,en-gb")
    parser.add_argument("--data-dir", default=None, help="where the assembled model is cached (default: temp)")
    parser.add_argument("--corpus", default=None, help="a folder of X.wav + X.txt (reference) to measure instead")
    parser.add_argument("--conditions", default=None,
                        help="clean, g711 (a telephone pass: band, 8 kHz, µ-law) and/or as-given; default: "
                             "clean,g711, or as-given with --corpus (bench/asr_corpus.py's files are G.711 already)")
    args = parser.parse_args(argv)
    if args.corpus is None and shutil.which("espeak-ng") is None:
        print("espeak-ng is required (apt-get install espeak-ng)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data_dir = Path(args.data_dir) if args.data_dir else tmp
        if args.corpus is not None:
            clips = load_corpus(Path(args.corpus))
            if not clips:
                print(f"{args.corpus}: no X.wav with an X.txt beside it", file=sys.stderr)
                return 2
        else:
            clips = [(s, synthesise(s, v, tmp)) for v in args.voices.split(",") for s in SENTENCES]
        print(f"test set: {len(clips)} clips, {sum(len(normalise(s)) for s, _ in clips)} reference words "
              f"per condition, {sum(len(a) for _, a in clips) / 16000:.0f} s of audio")
        # RTF: wall-clock processing time / audio time. CPU RTF: this process's CPU time / audio time, which a
        # busy shared machine does not inflate (one thread: what a single stream costs an idle core).
        print(f"{'engine':16} {'condition':10} {'WER':>7} {'RTF':>6} {'CPU RTF':>8} {'load s':>7}")
        for name in args.engines.split(","):
            started = time.perf_counter()
            try:
                engine = get_engine(name, data_dir=data_dir, env={})
            except Exception as exc:
                print(f"{name:16} unavailable: {exc}")
                continue
            load = time.perf_counter() - started
            conditions = (args.conditions or ("as-given" if args.corpus else "clean,g711")).split(",")
            for condition in conditions:
                errors = total = 0
                busy = cpu = seconds = 0.0
                for text, samples in clips:
                    x = telephone(samples) if condition == "g711" else samples
                    t0, c0 = time.perf_counter(), time.process_time()
                    hyp = " ".join(seg.text for seg in engine.transcribe(x))
                    busy += time.perf_counter() - t0
                    cpu += time.process_time() - c0
                    seconds += len(x) / 16000
                    e, n = wer(normalise(text), normalise(hyp))
                    errors, total = errors + e, total + n
                print(f"{name:16} {condition:10} {errors / total:7.1%} {busy / seconds:6.3f} {cpu / seconds:8.3f} "
                      f"{load:7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
