"""Callers' and operators' requests for their own recordings (B7, B10, A4), what a reviewer chose to
release, and the expiring links that deliver it."""

from __future__ import annotations

from datetime import date, datetime, time
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, Index, Integer, String, Text, Time
from sqlalchemy.orm import Mapped, mapped_column

from callvault.core.db import Base, UTCDateTime


class RequestStatus(StrEnum):
    """Stored life of a request. ``overdue`` is not stored: it is any request not yet ``sent`` whose
    due time has passed (see ``service.display_status``)."""

    AWAITING_VERIFICATION = "awaiting_verification"
    """Submitted; the emailed code has not been confirmed. The clock has not started."""
    TO_REVIEW = "to_review"
    """Verified (or filed by an operator through their account); a reviewer must pick the recordings."""
    READY = "ready"
    """A reviewer confirmed which recordings belong to the requester; waiting for release."""
    SENT = "sent"
    """Released: the link (or a "nothing held" answer) has been mailed."""
    REFUSED = "refused"
    """A reviewer refused it with a written reason, mailed to the requester; nothing was released."""


class RequesterKind(StrEnum):
    CALLER = "caller"
    OPERATOR = "operator"


class SubjectRequest(Base):
    """One person's request for copies of their own recordings."""

    __tablename__ = "subject_requests"
    __table_args__ = (Index("ix_subject_requests_status_due", "status", "due_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    """``caller`` (public form) or ``operator`` (an employee through their account, B10)."""
    asks_for: Mapped[str] = mapped_column(String(16), default="copy", server_default="copy")
    """``copy`` (copies of their recordings) or ``erasure`` (their deletion), one of the policy's
    ``notice.caller_requests``; staff see it on the request page."""
    status: Mapped[str] = mapped_column(String(24))
    phone_numbers: Mapped[list[str]] = mapped_column(JSON, default=list)
    """The requester's numbers in E.164; recordings are matched on ``remote_number``."""
    email: Mapped[str] = mapped_column(String(320))
    """The nominated address: the code, the acknowledgement and the link go here and nowhere else."""
    requester_user_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    requester_username: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """For operator requests: whose recordings (by agent name or extension)."""
    date_from: Mapped[date | None] = mapped_column(Date(), nullable=True)
    date_to: Mapped[date | None] = mapped_column(Date(), nullable=True)
    description: Mapped[str] = mapped_column(Text, default="")
    region: Mapped[str] = mapped_column(String(32))
    """The policy region whose working days count (``subject_requests.regions``)."""
    region_basis: Mapped[str] = mapped_column(Text, default="", server_default="")
    """Why that region (B7): the regional number the caller rang, else their country, else the default."""
    timezone: Mapped[str] = mapped_column(String(64))
    source_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    """When the form was submitted."""
    code_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """Hash of the emailed verification code (salted with the request id); cleared once used."""
    code_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    code_attempts: Mapped[int] = mapped_column(Integer, default=0)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """When the clock started (code confirmed, or an operator's request filed)."""
    due_on: Mapped[date | None] = mapped_column(Date(), nullable=True)
    """The last working day to fulfil it, in the region's calendar."""
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """The end of ``due_on`` in the region's time zone: overdue from this instant."""
    reviewed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    erasure_outcome: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    """For an approved erasure request: ``{"destroyed": [ids], "kept": [{"recording_id", "reason"}]}``
    (``subject_requests.erasure``); None otherwise."""
    redaction_note: Mapped[str] = mapped_column(Text, default="")
    """What a reviewer noted needs redacting (e.g. a third party's personal data); internal only."""
    approved_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    approved_by_user_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    """Whose authority releases the content: each download is decided again as this user."""
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    reminders_sent: Mapped[list[int]] = mapped_column(JSON, default=list)
    """Reminder points (working days before due) already mailed to the team."""
    overdue_flagged_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Facts only the caller should know (``proof``): without a code sent to the phone number, the email
    # code proves only the mailbox, so a reviewer checks these against the recordings before releasing.
    call_date: Mapped[date | None] = mapped_column(Date(), nullable=True)
    """The date of one of the calls, as the caller remembers it (the request's time zone)."""
    call_time: Mapped[time | None] = mapped_column(Time(), nullable=True)
    """Its approximate local time, if given."""
    agent_first_name: Mapped[str] = mapped_column(String(64), default="")
    """The first name of the person the caller spoke to, if they remember it."""
    call_reason: Mapped[str] = mapped_column(Text, default="")
    """What the call was about, in the caller's words."""
    facts_confirmed: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    """The facts the releasing reviewer confirmed they checked (``call_time``, ``agent_name``, ``reason``)."""
    facts_confirmed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    refused_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    refused_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    refusal_reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    """Why the request was refused, in the reviewer's words: mailed to the requester as written (A4, B7)."""
    extended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """When the deadline was extended (once, by ``subject_requests.deadline``'s extension, with a written reason)."""
    extended_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    extension_reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    """Why the deadline was extended, mailed to the requester."""
    representative: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    """A personal representative acting for the caller: ``name``, ``relationship``, ``proof_kind`` (one of the
    policy's ``subject_requests.representatives.proof_kinds``), ``checked_by`` and ``checked_at``."""


class PhoneProof(Base):
    """A code sent to one of a caller's numbers (SMS or call-back through the configured provider): the
    number is proven to be the requester's only once they enter it. Only the code's hash is kept."""

    __tablename__ = "subject_request_phone_proofs"

    request_id: Mapped[str] = mapped_column(ForeignKey("subject_requests.id", ondelete="CASCADE"), primary_key=True)
    phone_number: Mapped[str] = mapped_column(String(32), primary_key=True)
    code_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """Salted with the request id and the number; cleared once used, expired or voided."""
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """When the provider accepted it; None while unsent or when sending failed (``send_error``)."""
    send_error: Mapped[str] = mapped_column(String(300), default="")
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class SubjectRequestRecording(Base):
    """A recording a reviewer confirmed belongs to the requester, and which party they were."""

    __tablename__ = "subject_request_recordings"

    request_id: Mapped[str] = mapped_column(ForeignKey("subject_requests.id", ondelete="CASCADE"),
                                            primary_key=True)
    recording_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    """Not a foreign key: the request's record outlives the recording's destruction."""
    party: Mapped[str] = mapped_column(String(16))
    """``caller`` (they called us), ``callee`` (we called them) or ``operator``."""
    added_by: Mapped[str] = mapped_column(String(64))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DeliveryLink(Base):
    """An expiring, download-limited, revocable link to a request's package. Only the token's hash is kept."""

    __tablename__ = "subject_request_links"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("subject_requests.id", ondelete="CASCADE"), index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    max_downloads: Mapped[int] = mapped_column(Integer)
    downloads: Mapped[int] = mapped_column(Integer, default=0)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
