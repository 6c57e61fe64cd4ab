"""Loading policy versions into the database and finding the one in force.

The policy in force is read from the database on each unit of work (never cached in process
memory), so every node of a multi-node deployment enforces the same version at the same time.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import BindParameter, Select, bindparam, select
from sqlalchemy.orm import Session

from callvault.audit import service as audit
from callvault.core.clock import Clock, system_clock
from callvault.core.errors import ConfigurationError, Conflict
from callvault.core.ids import new_id
from callvault.policy.loader import parse_policy_text, policy_sha256
from callvault.policy.models import PolicyVersion
from callvault.policy.schema import PolicyDocument


def load_policy(
    session: Session, *, text: str, source: str, actor: str, clock: Clock = system_clock
) -> tuple[PolicyVersion, bool]:
    """Validate and store a policy version. Returns (row, created).

    Loading the same version with the same content again is a no-op; the same version number with
    different content is refused: a changed policy needs a new version (B13 re-acknowledgement).
    """
    doc = parse_policy_text(text, source=source)
    digest = policy_sha256(doc)
    existing = session.scalar(select(PolicyVersion).where(
        PolicyVersion.policy_id == doc.policy_id, PolicyVersion.version == doc.version))
    if existing is not None:
        if existing.sha256 != digest:
            raise Conflict(
                f"policy {doc.policy_id} version {doc.version} is already loaded with different content; "
                "give the changed policy a new version"
            )
        return existing, False
    row = PolicyVersion(
        id=new_id(), policy_id=doc.policy_id, version=doc.version, sha256=digest, document_yaml=text,
        effective_from=doc.effective_from, loaded_at=clock.now(), loaded_by=actor, active=True,
    )
    session.add(row)
    session.flush()
    audit.append(session, audit.AuditEvent(
        actor=actor, action="policy.loaded", object_type="policy", object_id=f"{doc.policy_id}@{doc.version}",
        details={"sha256": digest, "effective_from": doc.effective_from.isoformat(), "source": source},
        clauses=("B13",),
    ), clock=clock)
    return row, True


def _in_force(*columns: Any, day: date | BindParameter[date]) -> Select[Any]:
    """The newest loaded version whose effective date has come (the columns asked for)."""
    return (select(*columns)
            .where(PolicyVersion.active.is_(True), PolicyVersion.effective_from <= day)
            .order_by(PolicyVersion.effective_from.desc(), PolicyVersion.loaded_at.desc())
            .limit(1))


_IN_FORCE_HASH = _in_force(PolicyVersion.sha256, PolicyVersion.id, day=bindparam("day"))
"""Built once (with its cache key): every request looks the policy in force up."""

_NO_POLICY = "no policy is in force: load one with `callvault policy load FILE`"


def current_version(session: Session, *, today: date | None = None, clock: Clock = system_clock) -> PolicyVersion:
    """The newest loaded version whose effective date has come."""
    row: PolicyVersion | None = session.scalar(_in_force(PolicyVersion, day=today or clock.now().date()))
    if row is None:
        raise ConfigurationError(_NO_POLICY)
    return row


_parsed: dict[str, PolicyDocument] = {}
"""Parsed documents by content hash. Safe across nodes: which version is in force is still read from
the database every time; only the parse of an identical document is reused."""


def current_policy(session: Session, *, clock: Clock = system_clock) -> PolicyDocument:
    """The policy document in force now.

    Looked up on every call, but only the version's hash is read: the stored document (about 10 KB of
    YAML) is loaded and parsed only the first time a version is seen (loading it on every look-up cost
    about 1 ms)."""
    found = session.execute(_IN_FORCE_HASH, {"day": clock.now().date()}).first()
    if found is None:
        raise ConfigurationError(_NO_POLICY)
    doc = _parsed.get(found.sha256)
    if doc is None:
        row = session.get(PolicyVersion, found.id)
        if row is None:  # removed between the two reads
            raise ConfigurationError(_NO_POLICY)
        doc = parse_policy_text(row.document_yaml, source=f"stored policy {row.policy_id}@{row.version}")
        _parsed[row.sha256] = doc.stored_as(row.sha256)
    return doc
