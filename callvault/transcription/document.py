"""The transcript document: what is sealed in ``transcripts.sealed`` (JSON, version 1).

::

    {"version": 1, "engine": "faster_whisper", "speakers": ["caller", "agent"],
     "segments": [{"speaker": "caller", "start": 0.0, "end": 2.1, "text": "...",
                   "words": [{"text": "My", "start": 0.0, "end": 0.16}, ...]}, ...],
     "removed": [{"kind": "card_number", "speaker": "caller", "start": 1.1, "end": 9.0}]}

Segments of all speakers are merged in time order. ``removed`` lists spans whose words were cut
(card data), by kind and time only; the words themselves are gone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TWord:
    text: str
    start: float
    end: float


@dataclass
class TSegment:
    speaker: str
    start: float
    end: float
    words: list[TWord] = field(default_factory=list)
    text: str = ""

    def rebuild_text(self) -> None:
        self.text = " ".join(w.text for w in self.words)


@dataclass
class TranscriptDoc:
    engine: str
    speakers: list[str]
    segments: list[TSegment]
    removed: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> bytes:
        return json.dumps({
            "version": 1, "engine": self.engine, "speakers": self.speakers,
            "segments": [{"speaker": s.speaker, "start": round(s.start, 3), "end": round(s.end, 3), "text": s.text,
                          "words": [{"text": w.text, "start": round(w.start, 3), "end": round(w.end, 3)}
                                    for w in s.words]} for s in self.segments],
            "removed": self.removed,
        }, ensure_ascii=False).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> TranscriptDoc:
        data = json.loads(raw)
        return cls(
            engine=data["engine"], speakers=list(data["speakers"]), removed=list(data.get("removed", [])),
            segments=[TSegment(s["speaker"], s["start"], s["end"],
                               [TWord(w["text"], w["start"], w["end"]) for w in s["words"]], s["text"])
                      for s in data["segments"]],
        )

    def plain_text(self, *, speakers: bool = True) -> str:
        return "\n".join(f"{s.speaker}: {s.text}" if speakers else s.text for s in self.segments)

    def words_of(self, speaker: str | None = None) -> list[tuple[int, int, TWord]]:
        """(segment index, word index, word) in time order, optionally for one speaker."""
        return [(si, wi, w) for si, s in enumerate(self.segments) if speaker is None or s.speaker == speaker
                for wi, w in enumerate(s.words)]
