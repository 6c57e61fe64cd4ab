"""Comparing a CRM note with what was said on the call (B5).

Checks, each producing flags with evidence (the note's words and the nearest thing said, with
speaker and time):

* numbers and amounts: every number in the note must appear in the call, digit for digit; one
  digit's difference in a long number is reported as ``number_near_match`` (speech recognition
  slips on long digit strings), anything else as ``number_not_in_call``;
* dates: the note's day and month must be said ("November 20", "20th of November", "2026-11-20");
* product names (capitalised phrases of the note, or ``products`` given by the caller): fuzzy match
  against the call's word sequences (ratio ≥ 0.8), else ``product_not_in_call``;
* overall meaning: cosine similarity of all-MiniLM-L6-v2 sentence embeddings (when installed, see
  ``embedding``), else a lexical (content-word) cosine; below the threshold → ``low_similarity``.

Flags quote the transcript they are given (digits, dates, the words nearest a product name), and whether a
number raises one tells whether it was said. So a purpose served only a masked copy is shown a check of the
masked note against the masked transcript (``service.read_crm_notes(masked=True)``), never the stored one.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from difflib import SequenceMatcher
from typing import Any

from callvault.transcription import embedding
from callvault.transcription.document import TranscriptDoc, TWord
from callvault.transcription.redaction import digit_runs, digits_of

SEMANTIC_THRESHOLD = 0.35
LEXICAL_THRESHOLD = 0.15
PRODUCT_RATIO = 0.8
_MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september",
           "october", "november", "december"]
_MONTH_RE = "|".join(m[:3] + f"(?:{m[3:]})?" for m in _MONTHS)
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b")
_DAY_MONTH = re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?(?: of)? ({_MONTH_RE})\b", re.IGNORECASE)
_MONTH_DAY = re.compile(rf"\b({_MONTH_RE})\.? (\d{{1,2}})(?:st|nd|rd|th)?\b", re.IGNORECASE)
_NUMBER = re.compile(r"[$€£]?\d[\d,]*(?:\.\d+)?")
_PRODUCT = re.compile(r"\b[A-Z][\w-]*(?: [A-Z0-9][\w-]*)+\b")
_STOP_WORDS = (
    "a an and are as at be but by for from has have he her his i in is it its of on or our she that the their "
    "them they this to was we were will with you your customer caller agent call called said asked told about "
    "would could can please thank thanks")
_STOP = frozenset(_STOP_WORDS.split())


@dataclass(frozen=True)
class Flag:
    kind: str
    detail: str
    note_text: str
    note_start: int
    note_end: int
    call_text: str | None = None
    call_speaker: str | None = None
    call_start: float | None = None
    call_end: float | None = None


@dataclass(frozen=True)
class CheckResult:
    flags: list[Flag]
    similarity: float
    method: str

    def to_dict(self) -> dict[str, Any]:
        return {"flags": [asdict(f) for f in self.flags], "similarity": round(self.similarity, 4),
                "method": self.method}


def _month(name: str) -> int:
    return next(i + 1 for i, m in enumerate(_MONTHS) if m.startswith(name.lower()[:3]))


def _dates(text: str) -> list[tuple[int, int, int, int]]:
    """(month, day, char start, char end) for each date in ``text``."""
    out = []
    for m in _ISO_DATE.finditer(text):
        out.append((int(m.group(2)), int(m.group(3)), m.start(), m.end()))
    for m in _DAY_MONTH.finditer(text):
        out.append((_month(m.group(2)), int(m.group(1)), m.start(), m.end()))
    for m in _MONTH_DAY.finditer(text):
        out.append((_month(m.group(1)), int(m.group(2)), m.start(), m.end()))
    return [d for d in out if 1 <= d[1] <= 31]


def _edits_at_most_one(a: str, b: str) -> bool:
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) <= 1
    short, long = sorted((a, b), key=len)
    return any(long[:i] + long[i + 1:] == short for i in range(len(long)))


@dataclass(frozen=True)
class _CallNumber:
    digits: str
    words: list[tuple[str, TWord]]


def _call_numbers(doc: TranscriptDoc) -> list[_CallNumber]:
    found = []
    for speaker in doc.speakers:
        words = doc.words_of(speaker)
        for a, b, digits in digit_runs(words):
            span = [(speaker, w) for _, _, w in words[a: b + 1]]
            found.append(_CallNumber(digits, span))
            for sp, w in span:  # each numeral alone too: "2 units for 125 dollars"
                d = digits_of(w.text)
                if d:
                    found.append(_CallNumber(d, [(sp, w)]))
    return found


def _evidence(kind: str, detail: str, note: str, start: int, end: int,
              words: Sequence[tuple[str, TWord]] | None) -> Flag:
    if not words:
        return Flag(kind, detail, note[start:end], start, end)
    return Flag(kind, detail, note[start:end], start, end, " ".join(w.text for _, w in words), words[0][0],
                words[0][1].start, words[-1][1].end)


def _lexical(a: str, b: str) -> float:
    def bag(text: str) -> Counter[str]:
        return Counter(t for t in re.findall(r"[a-z0-9]+", text.lower()) if t not in _STOP)

    x, y = bag(a), bag(b)
    dot = sum(x[t] * y[t] for t in x)
    norm = math.sqrt(sum(v * v for v in x.values())) * math.sqrt(sum(v * v for v in y.values()))
    return dot / norm if norm else 0.0


def compare(note: str, doc: TranscriptDoc, *, products: Sequence[str] = (),
            env: Mapping[str, str] | None = None) -> CheckResult:
    """Flags for everything in ``note`` that the call does not bear out."""
    flags: list[Flag] = []
    call_text = doc.plain_text(speakers=False)
    # Dates first, so their digits are not checked again as plain numbers.
    call_dates = {(m, d) for m, d, _, _ in _dates(call_text)}
    date_spans = []
    for month, day, s, e in _dates(note):
        date_spans.append((s, e))
        if (month, day) not in call_dates:
            said = sorted(f"{_MONTHS[m - 1].title()} {d}" for m, d in call_dates)
            flags.append(Flag("date_not_in_call",
                              f"the note's date {date(2000, month, day):%B} {day} was not said on the call"
                              + (f" (dates said: {', '.join(said)})" if said else ""), note[s:e], s, e))
    numbers = _call_numbers(doc)
    for m in _NUMBER.finditer(note):
        if any(s <= m.start() < e for s, e in date_spans):
            continue
        text = m.group(0).rstrip(",.")
        digits = re.sub(r"\D", "", text)
        if not digits:
            continue
        whole = re.sub(r"\D", "", text.split(".")[0])
        exact = next((n for n in numbers if n.digits in (digits, whole)), None)
        if exact is not None:
            continue
        near = next((n for n in numbers if len(digits) >= 4 and _edits_at_most_one(n.digits, digits)), None)
        end = m.start() + len(text)
        if near is not None:
            flags.append(_evidence("number_near_match",
                                   "a number in the note differs from what was said by one digit",
                                   note, m.start(), end, near.words))
        else:
            flags.append(_evidence("number_not_in_call", "a number in the note was not said on the call",
                                   note, m.start(), end, None))
    names = list(products) or [p.group(0) for p in _PRODUCT.finditer(note) if p.start() > 0
                               and note[p.start() - 2: p.start()] not in (". ", "\n")]
    words = [(sp, w) for sp in doc.speakers for _, _, w in doc.words_of(sp)]
    cleaned = [re.sub(r"[^\w]", "", w.text.lower()) for _, w in words]
    for name in names:
        target = name.lower()
        n = max(1, len(name.split()))
        best, best_i, best_n = 0.0, -1, n
        for size in {n - 1, n, n + 1} - {0}:
            for i in range(0, max(0, len(cleaned) - size + 1)):
                ratio = SequenceMatcher(None, target, " ".join(cleaned[i: i + size])).ratio()
                if ratio > best:
                    best, best_i, best_n = ratio, i, size
        if best < PRODUCT_RATIO:
            start = note.find(name)
            flags.append(_evidence(
                "product_not_in_call", f"product {name!r} was not mentioned (closest match {best:.0%})",
                note, max(start, 0), max(start, 0) + len(name),
                words[best_i: best_i + best_n] if best_i >= 0 else None))
    model = embedding.load(env or {})
    if model is not None:
        similarity, method, threshold = model.similarity(note, call_text), "minilm", SEMANTIC_THRESHOLD
    else:
        similarity, method, threshold = _lexical(note, call_text), "lexical", LEXICAL_THRESHOLD
    if similarity < threshold:
        flags.append(Flag("low_similarity",
                          f"the note and the call say different things ({method} similarity {similarity:.2f})",
                          note, 0, len(note)))
    return CheckResult(flags, similarity, method)
