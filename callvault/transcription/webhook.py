"""The CRM connector's webhook: signed notes by CRM reference (B5).

A CRM posts ``{"note_id", "crm_ref", "note", "author", "created_at"}`` to ``POST /api/v1/crm/notes``
with two headers:

* ``X-Callvault-Timestamp``: the sending time, whole seconds since 1970 (UTC);
* ``X-Callvault-Signature``: ``sha256=`` + hex HMAC-SHA-256, under the shared secret
  (``CALLVAULT_CRM_WEBHOOK_SECRET`` or ``_FILE``), of the timestamp, a ``.``, and the raw body bytes.

A delivery is refused (401) when a header is missing, the signature does not match, the timestamp is
more than 5 minutes from the server's clock, or the same signature was accepted before (a replay).
The note is stored against every recording with that ``crm_ref`` through ``service.add_crm_note``;
``note_id`` makes it idempotent: a CRM that re-sends the note (newly signed) gets the stored result.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from pydantic import BaseModel, Field, ValidationError, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from callvault.core.clock import Clock
from callvault.core.errors import FieldProblem, InvalidInput, NotFound
from callvault.integrations import signing
from callvault.recordings.models import DataKey, Recording, RecordingState
from callvault.storage.keys import Keyring
from callvault.transcription import service
from callvault.transcription.models import CrmNote

SECRET_ENV: Final = "CALLVAULT_CRM_WEBHOOK_SECRET"  # noqa: S105 (a variable name)
TIMESTAMP_HEADER: Final = signing.TIMESTAMP_HEADER
SIGNATURE_HEADER: Final = signing.SIGNATURE_HEADER
REPLAY_WINDOW: Final = signing.REPLAY_WINDOW
MIN_SECRET_CHARS: Final = signing.MIN_SECRET_CHARS
ACTOR: Final = "crm-webhook"
_NOTE_IDS: Final = uuid.UUID("5b0f7c1e-3a52-4d8e-9a51-6c1d0e7f2b90")


class WebhookNote(BaseModel):
    """The documented JSON body."""

    model_config = {"extra": "forbid"}

    note_id: str = Field(min_length=1, max_length=100, description="the CRM's id for the note (idempotency)")
    crm_ref: str = Field(min_length=1, max_length=100, description="the CRM reference the call was tagged with")
    note: str = Field(min_length=1, max_length=service.MAX_NOTE_CHARS)
    author: str = Field(min_length=1, max_length=200, description="who wrote the note in the CRM")
    created_at: datetime = Field(description="when it was written, ISO 8601 with a UTC offset")
    products: list[str] = Field(default_factory=list, max_length=50)

    @field_validator("created_at")
    @classmethod
    def _offset(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("must include a UTC offset")
        return value


@dataclass
class Delivery:
    note_id: str
    crm_ref: str
    created: bool
    """False when every recording already had this note (a re-send)."""
    notes: list[CrmNote] = field(default_factory=list)


def load_secret(env: Mapping[str, str]) -> bytes:
    return signing.load_shared_secret(env, SECRET_ENV, "the CRM webhook")


# The scheme is the shared one (callvault/integrations/signing.py); these names are this webhook's API.
sign = signing.sign
verify = signing.verify


def parse(body: bytes) -> WebhookNote:
    try:
        return WebhookNote.model_validate_json(body)
    except ValidationError as exc:
        problems = [FieldProblem(".".join(str(p) for p in e["loc"]) or "body", e["msg"]) for e in exc.errors()]
        raise InvalidInput("invalid CRM note:", problems) from None


def note_row_id(note_id: str, recording_id: str) -> str:
    """The stored note's id for one recording: the same re-send maps to the same row."""
    return str(uuid.uuid5(_NOTE_IDS, f"{note_id}|{recording_id}"))


def receive(session: Session, *, keyring: Keyring, note: WebhookNote, digest: str, env: Mapping[str, str],
            clock: Clock) -> Delivery:
    """Store ``note`` against every recording with its ``crm_ref``; never commits.

    Raises AuthenticationFailed for a replayed signature and NotFound when no recording has the ref.
    The caller commits; a concurrent replay then fails on the signature's primary key.
    """
    signing.remember(session, digest=digest, reference=note.note_id, clock=clock)
    rows = list(session.scalars(
        select(Recording).join(DataKey, DataKey.recording_id == Recording.id)
        .where(Recording.crm_ref == note.crm_ref, Recording.state == RecordingState.AVAILABLE)
        .order_by(Recording.started_at)))
    if not rows:
        raise NotFound(f"no recording has crm_ref {note.crm_ref!r}; the note was not stored "
                       "(check the reference, or send it again once the call is recorded)")
    delivery = Delivery(note_id=note.note_id, crm_ref=note.crm_ref, created=False)
    for rec in rows:
        existing = session.get(CrmNote, note_row_id(note.note_id, rec.id))
        if existing is not None:
            delivery.notes.append(existing)
            continue
        delivery.notes.append(service.add_crm_note(
            session, keyring=keyring, recording=rec, note=note.note, actor=ACTOR, source="webhook",
            products=note.products, env=env, clock=clock, note_id=note_row_id(note.note_id, rec.id),
            author=note.author, written_at=note.created_at.isoformat()))
        delivery.created = True
    session.flush()
    return delivery
