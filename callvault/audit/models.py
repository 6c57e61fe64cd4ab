"""The audit log: append-only, hash-chained. No audio or transcript content ever goes in here."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Index, Integer, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from callvault.core.db import Base, UTCDateTime


class AuditEntry(Base):
    """One decision or event. ``entry_hash`` commits to every field and to ``prev_hash``."""

    __tablename__ = "audit_entries"
    __table_args__ = (
        Index("ix_audit_entries_object", "object_type", "object_id"),
        Index("ix_audit_entries_actor", "actor", "at"),
        Index("ix_audit_entries_at", "at"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    """1, 2, 3...; gaps are tampering."""
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(64))
    """Username, or ``system``/``cli`` for unattended work."""
    actor_role: Mapped[str] = mapped_column(String(64), default="")
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(32), default="")
    object_id: Mapped[str] = mapped_column(String(200), default="")
    purpose: Mapped[str | None] = mapped_column(String(64), nullable=True)
    decision: Mapped[str] = mapped_column(String(8))
    """``allow`` | ``deny`` | ``info``."""
    reason: Mapped[str] = mapped_column(Text, default="")
    clauses: Mapped[list[str]] = mapped_column(JSON, default=list)
    source_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditCheckpoint(Base):
    """A signed tree head: the Merkle root of entries ``1..tree_size`` at a moment, signed with Ed25519.

    Append-only like the entries. Copies kept elsewhere (an export bundle, a mail, a printout) let
    anyone prove later that the log still extends what was signed (``callvault.audit.checkpoints``).
    """

    __tablename__ = "audit_checkpoints"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    """1, 2, 3...; part of the signed text, so checkpoints cannot be reordered or dropped unseen."""
    tree_size: Mapped[int] = mapped_column(BigInteger)
    """How many entries (seq 1..tree_size) the root covers."""
    root_hash: Mapped[str] = mapped_column(String(64))
    """RFC 9162 Merkle tree head, hex."""
    published_at: Mapped[datetime] = mapped_column(UTCDateTime())
    key_id: Mapped[str] = mapped_column(String(16))
    """First 16 hex digits of SHA-256 of the raw Ed25519 public key that signed."""
    signature: Mapped[str] = mapped_column(String(128))
    """Ed25519 signature (hex) over ``checkpoint_message``."""
    frontier: Mapped[str | None] = mapped_column(Text, nullable=True)
    """The tree's perfect-subtree roots at ``tree_size`` (``merkle.Frontier.to_text``): the next
    checkpoint appends only the entries added since. Not signed: it must fold to ``root_hash``."""
    head_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """``entry_hash`` of entry ``tree_size``, which the next entries chain from; kept in the anchor too."""
    rewrite_checked: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """Published after recomputing the root from every entry (not from the previous frontier)."""


class AuditAlarm(Base):
    """A tamper alarm: the log failed verification when a checkpoint was about to be signed.

    In the database (not in one node's memory) so every node reports it (``/readyz``, ``/metrics``)
    and no node signs while it is raised. Not append-only: an administrator acknowledges it (the
    acknowledgement is an audit entry too). ``callvault.audit.alarm`` owns the rules.
    """

    __tablename__ = "audit_alarms"
    __table_args__ = (Index("ix_audit_alarms_open", "acknowledged_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True,
                                    autoincrement=True)
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime())
    raised_by: Mapped[str] = mapped_column(String(64))
    """``worker``, ``cli``: who was signing when the mismatch was found."""
    problem: Mapped[str] = mapped_column(Text)
    """What verification said (no content: entry numbers and what is wrong with them)."""
    first_bad_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """None while raised."""
    acknowledged_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    ack_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    rebase_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    """Set when the administrator re-based: entries up to this seq are taken as they stand, and signing
    verifies the chain from the entry after it."""
