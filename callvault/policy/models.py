"""Stored policy versions: the document as loaded, its hash and when it takes effect (B13)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Boolean, Date, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from callvault.core.db import Base, UTCDateTime


class PolicyVersion(Base):
    """One loaded policy document. The newest active one whose ``effective_from`` has come is in force."""

    __tablename__ = "policy_versions"
    __table_args__ = (UniqueConstraint("policy_id", "version", name="uq_policy_versions_id_version"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    policy_id: Mapped[str] = mapped_column(String(100))
    version: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))
    """Hash of the canonical JSON form; audit entries cite it."""
    document_yaml: Mapped[str] = mapped_column(Text)
    """The file exactly as loaded, so the policy in force on any day can be shown later."""
    effective_from: Mapped[date] = mapped_column(Date)
    loaded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    loaded_by: Mapped[str] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
