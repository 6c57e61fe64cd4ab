"""Finding personal data and card data in a transcript, and cutting or masking it.

Detectors (all offline): card numbers (13 to 19 digits passing the Luhn check, or — because speech
recognition garbles long digit strings — 12+ digits spoken right after a card prompt), card security
codes (3 or 4 digits after "security code", "CVV"...), phone numbers (``phonenumbers``), e-mail
addresses (written or spoken "name at example dot com"), long account-like digit runs, and personal
names by a conservative heuristic (see ``_names``: capitalised words right after "my name is",
"this is", "Mr"/"Ms"/"Mrs"/"Dr"..., or right before "speaking"; no offline name recogniser ships in a
package we can trust, so names said without such a cue are missed).

Digits are read from words written as numerals ("4539", "1,488") and spoken as words ("four").
Nothing found here is logged or audited: only kinds and counts leave this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

import phonenumbers

from callvault.transcription.document import TranscriptDoc, TSegment, TWord

CARD_KINDS: Final = frozenset({"card_number", "card_security_code"})
_NUMBER_WORDS: Final = {
    "zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "double": "", "triple": "",
}
_CARD_PROMPTS: Final = ("card", "visa", "mastercard", "amex", "credit", "debit")
_CVV_PROMPTS: Final = ("security", "cvv", "cvc", "cvv2", "verification", "back")
_PROMPT_WINDOW: Final = 8
_EMAIL_RE: Final = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_SPOKEN_EMAIL_RE: Final = re.compile(r"\b[\w.]+ at [\w-]+( dot [\w-]+)+\b", re.IGNORECASE)
_NAME_CUES: Final = (("my", "name", "is"), ("my", "names"), ("name", "is"), ("this", "is"), ("im", "called"),
                     ("mr",), ("mrs",), ("ms",), ("miss",), ("dr",), ("mister",))
_NAME_AFTER: Final = ("speaking",)
_MAX_NAME_WORDS: Final = 3
_NOT_NAMES_TEXT: Final = (
    "i im it its the a an and yes no hi hello hey thanks thank okay ok sir madam maam please sorry well so "
    "customer support service services team department desk billing sales help calling speaking your my our "
    "monday tuesday wednesday thursday friday saturday sunday january february march april may june july "
    "august september october november december")
_NOT_NAMES: Final = frozenset(_NOT_NAMES_TEXT.split())
_TEXT_WORD: Final = re.compile(r"\S+")


@dataclass(frozen=True)
class Finding:
    kind: str
    speaker: str
    start: float
    end: float
    words: tuple[tuple[int, int], ...]
    """(segment index, word index) of every word in the span."""


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def digits_of(word: str) -> str | None:
    """The digits a word stands for ("4,111" → "4111", "four" → "4"), or None for a non-number word."""
    bare = re.sub(r"[,.\-\u2013:;!?/()]", "", word.strip().lower())
    if bare.isdigit():
        return bare
    if bare in _NUMBER_WORDS:
        return _NUMBER_WORDS[bare]
    return None


def _is_phone(digits: str, region: str) -> bool:
    try:
        return phonenumbers.is_possible_number(phonenumbers.parse(digits, region))
    except phonenumbers.NumberParseException:
        return False


def _clean(word: str) -> str:
    return re.sub(r"[^\w]", "", word.lower())


def digit_runs(words: list[tuple[int, int, TWord]]) -> list[tuple[int, int, str]]:
    """(first, last, digits) for runs of number words; one short filler word ("I", "-") may sit inside
    a run, because recognisers insert them into long spoken digit strings."""
    runs = []
    i = 0
    while i < len(words):
        d = digits_of(words[i][2].text)
        if d is None:
            i += 1
            continue
        j, digits = i, d
        while True:
            nxt = digits_of(words[j + 1][2].text) if j + 1 < len(words) else None
            if nxt is not None:
                j, digits = j + 1, digits + nxt
                continue
            after = digits_of(words[j + 2][2].text) if j + 2 < len(words) else None
            if after is not None and len(_clean(words[j + 1][2].text)) <= 2:
                j, digits = j + 2, digits + after
                continue
            break
        runs.append((i, j, digits))
        i = j + 1
    return runs


def _prompted(words: list[tuple[int, int, TWord]], first: int, prompts: tuple[str, ...]) -> bool:
    window = [_clean(w.text) for _, _, w in words[max(0, first - _PROMPT_WINDOW): first]]
    return any(p in window for p in prompts)


def find(doc: TranscriptDoc, *, region: str = "CA") -> list[Finding]:
    """Every finding in the transcript, per speaker, in time order."""
    out: list[Finding] = []
    for speaker in doc.speakers:
        words = doc.words_of(speaker)
        if not words:
            continue

        def span(kind: str, a: int, b: int, words: list[tuple[int, int, TWord]] = words,
                 speaker: str = speaker) -> Finding:
            return Finding(kind, speaker, words[a][2].start, words[b][2].end,
                           tuple((si, wi) for si, wi, _ in words[a: b + 1]))

        taken: set[int] = set()
        for a, b, digits in digit_runs(words):
            kind = None
            luhn_card = 13 <= len(digits) <= 19 and luhn_ok(digits)
            if luhn_card or (len(digits) >= 12 and _prompted(words, a, _CARD_PROMPTS)):
                kind = "card_number"
            elif 3 <= len(digits) <= 4 and _prompted(words, a, _CVV_PROMPTS):
                kind = "card_security_code"
            elif len(digits) >= 8:
                kind = "phone_number" if _is_phone(digits, region) else "account_number"
            if kind:
                out.append(span(kind, a, b))
                taken.update(range(a, b + 1))
        # Phone numbers and e-mails: match on the text, then map characters back to words.
        text, starts = "", []
        for _, _, w in words:
            starts.append(len(text))
            text += w.text + " "

        def words_in(lo: int, hi: int, starts: list[int] = starts) -> list[int]:
            return [k for k, s in enumerate(starts) if lo <= s < hi or (s <= lo < s + 1)]

        for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.POSSIBLE):
            idx = [k for k in words_in(match.start, match.end) if k not in taken]
            if idx:
                out.append(span("phone_number", idx[0], idx[-1]))
                taken.update(idx)
        for regex in (_EMAIL_RE, _SPOKEN_EMAIL_RE):
            for m in regex.finditer(text):
                idx = [k for k in words_in(m.start(), m.end()) if k not in taken]
                if idx:
                    out.append(span("email", idx[0], idx[-1]))
                    taken.update(idx)
        for a, b in _names(words, taken):
            out.append(span("name", a, b))
            taken.update(range(a, b + 1))
    return sorted(out, key=lambda f: f.start)


def _name_word(word: TWord) -> bool:
    """A capitalised alphabetic word that is not a common capitalised non-name ("I", "Hello", "Monday")."""
    bare = re.sub(r"[^\w'-]", "", word.text).strip("'-")
    return (bool(bare) and bare[0].isupper() and bare.replace("'", "").replace("-", "").isalpha()
            and _clean(bare) not in _NOT_NAMES)


def _names(words: list[tuple[int, int, TWord]], taken: set[int]) -> list[tuple[int, int]]:
    """(first, last) word indexes of names said right after a cue or right before "speaking".

    Conservative on purpose: without a cue nothing is found, and a capitalised non-name after a cue
    ("this is Acme Support") is masked too. Recognisers capitalise names inconsistently, so a name
    they write in lower case is missed.
    """
    cleaned = [_clean(w.text) for _, _, w in words]
    found: list[tuple[int, int]] = []
    for i in range(len(words)):
        for cue in _NAME_CUES:
            if tuple(cleaned[i: i + len(cue)]) != cue:
                continue
            a = b = i + len(cue)
            while b < len(words) and b - a < _MAX_NAME_WORDS and b not in taken and _name_word(words[b][2]):
                b += 1
                if words[b - 1][2].text.rstrip()[-1:] in ",.;!?":
                    break  # "this is Sarah, how can I help": the name ends at the comma
            if b > a:
                found.append((a, b - 1))
            break
        if cleaned[i] in _NAME_AFTER and i > 0:
            b = a = i - 1
            while a >= 0 and b - a < _MAX_NAME_WORDS and a not in taken and _name_word(words[a][2]) \
                    and (a == b or words[a][2].text.rstrip()[-1:] not in ",.;!?"):
                a -= 1
            if a < b:
                found.append((a + 1, b))
    merged: list[tuple[int, int]] = []
    for a, b in sorted(set(found)):
        if merged and a <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


def label(kind: str) -> str:
    """What a masked span reads as: ``[phone number]``, ``[name]``..."""
    return f"[{kind.replace('_', ' ')}]"


def mask_text(text: str, *, region: str = "CA") -> str:
    """``text`` (a CRM note, a product name) with every span ``find`` detects replaced by ``[kind]``, as in a
    masked transcript; its own spacing and line breaks are kept.

    Why: a purpose served only a masked copy sees a CRM note beside that copy. The note often repeats what the
    caller said (their number, their name), and a note compared with the masked transcript must be masked the
    same way, or a guessed number in it would be checked against nothing and its flags would differ from a
    masked one's. The text is read as one speaker's words (a numeral word, "four"... counts as a digit)."""
    spans = [(m.start(), m.end()) for m in _TEXT_WORD.finditer(text)]
    if not spans:
        return text
    words = [TWord(text[a:b], float(i), i + 0.5) for i, (a, b) in enumerate(spans)]
    doc = TranscriptDoc(engine="text", speakers=["text"], segments=[TSegment("text", 0.0, float(len(words)), words)])
    out: list[str] = []
    last = 0
    for f in sorted(find(doc, region=region), key=lambda f: f.words[0]):
        first, end = spans[f.words[0][1]][0], spans[f.words[-1][1]][1]
        if first < last:
            continue  # detectors never overlap; kept safe if one ever does
        out += [text[last:first], label(f.kind)]
        last = end
    out.append(text[last:])
    return "".join(out)


def apply(doc: TranscriptDoc, findings: list[Finding], *, kinds: frozenset[str] | None = None,
          record_removal: bool = False) -> TranscriptDoc:
    """A copy of ``doc`` with the words of each finding (of ``kinds``) replaced by ``[kind]``.

    With ``record_removal`` the spans are also listed in ``removed`` (kind, speaker, times only).
    """
    chosen = [f for f in findings if kinds is None or f.kind in kinds]
    replace: dict[tuple[int, int], str] = {}
    drop: set[tuple[int, int]] = set()
    for f in chosen:
        replace[f.words[0]] = label(f.kind)
        drop.update(f.words[1:])
    copy = TranscriptDoc.from_json(doc.to_json())
    for si, seg in enumerate(copy.segments):
        kept = []
        for wi, w in enumerate(seg.words):
            if (si, wi) in drop:
                continue
            if (si, wi) in replace:
                kept.append(TWord(replace[(si, wi)], w.start, w.end))
            else:
                kept.append(w)
        seg.words = kept
        seg.rebuild_text()
    if record_removal:
        copy.removed.extend({"kind": f.kind, "speaker": f.speaker, "start": round(f.start, 3),
                             "end": round(f.end, 3)} for f in chosen)
    return copy
