"""API shapes for transcripts, transcript search and CRM notes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class WordRead(BaseModel):
    text: str
    start: float
    end: float


class SegmentRead(BaseModel):
    speaker: str
    start: float
    end: float
    text: str
    words: list[WordRead]


class RemovalRead(BaseModel):
    """A span cut from audio and transcript: kind and time only, never what was said."""

    kind: str
    speaker: str
    start: float
    end: float


class TranscriptRead(BaseModel):
    recording_id: str
    engine: str
    redacted: bool
    """True when personal data is masked (asked for, or the purpose serves only an anonymised copy)."""
    speakers: list[str]
    segments: list[SegmentRead]
    removed: list[RemovalRead]
    completed_at: datetime | None


class TranscriptHit(BaseModel):
    recording_id: str
    started_at: datetime
    extension: str | None
    agent: str | None


class TranscriptSearchResult(BaseModel):
    items: list[TranscriptHit]


class CrmNoteIn(BaseModel):
    note: str = Field(min_length=1, max_length=20_000, description="the note as written in the CRM")
    products: list[str] = Field(default_factory=list, max_length=50,
                                description="product names to look for (default: capitalised phrases)")


class CrmNoteAccepted(BaseModel):
    id: str
    check_state: str
    flag_count: int
    redacted: bool = False
    """True when ``flag_count`` counts the masked note's flags against the masked transcript: the purpose serves
    only a masked copy, so the count must not tell whether a value the copy hides was said."""


class CrmWebhookStored(BaseModel):
    """Where a webhook note was stored. Nothing about the comparison: the CRM has no content access."""

    recording_id: str
    id: str


class CrmFlagRead(BaseModel):
    kind: str
    detail: str
    note_text: str
    note_start: int
    note_end: int
    call_text: str | None = None
    call_speaker: str | None = None
    call_start: float | None = None
    call_end: float | None = None


class CrmNoteRead(BaseModel):
    id: str
    crm_ref: str | None
    source: str
    received_at: datetime
    received_by: str
    note: str
    author: str | None = None
    """Who wrote it in the CRM (notes from the CRM connector)."""
    written_at: datetime | None = None
    check_state: str
    flag_count: int
    similarity: float | None
    similarity_method: str | None
    flags: list[CrmFlagRead]
    redacted: bool = False
    """True when the purpose serves only a masked copy: the note is masked and its check (flags, count,
    similarity) was made from the masked note and the masked transcript, so it shows nothing that copy hides."""


class CrmWebhookNoteResult(BaseModel):
    """The answer to a CRM connector: where the note went (never how it compared with the call)."""

    note_id: str
    crm_ref: str
    created: bool
    """False when the note was already stored (a re-send of the same note_id)."""
    notes: list[CrmWebhookStored]
