"""policy acknowledgements name the acknowledged document by its content hash, not its version string

Two policies may carry the same version string (the example policies A and B are both 2024.1), so an
acknowledgement matched by version alone counted for a policy nobody acknowledged (issue 23). Each
existing row gets the hash of the policy version it refers to: among the stored versions with its version
string, the one that was in force when it was given (loaded by then, effective by then, the newest such),
else the newest loaded one. A row whose version string matches no stored version acknowledges nothing that
exists and is dropped.

Revision ID: 0022
Revises: 0021
Create Date: 2026-11-25 10:00:00
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import NamedTuple

import sqlalchemy as sa
from alembic import op

revision: str = '0022'
down_revision: str | None = '0021'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_acks = sa.table(
    'policy_acknowledgements', sa.column('id', sa.String()), sa.column('user_id', sa.String()),
    sa.column('policy_version', sa.String()), sa.column('policy_sha256', sa.String()),
    sa.column('acknowledged_at', sa.DateTime(timezone=True)))
_versions = sa.table(
    'policy_versions', sa.column('version', sa.String()), sa.column('sha256', sa.String()),
    sa.column('effective_from', sa.Date()), sa.column('loaded_at', sa.DateTime(timezone=True)),
    sa.column('active', sa.Boolean()))


class _Stored(NamedTuple):
    effective_from: date
    loaded_at: datetime
    active: bool
    sha256: str


def _utc(value: datetime) -> datetime:
    """SQLite hands back the naive UTC the application stored; PostgreSQL an aware time."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _referenced(candidates: list[_Stored], acknowledged_at: datetime) -> _Stored | None:
    """The stored version an acknowledgement was given for: the one in force then, else the newest loaded."""
    in_force = [c for c in candidates
                if c.active and c.loaded_at <= acknowledged_at and c.effective_from <= acknowledged_at.date()]
    if in_force:
        return max(in_force, key=lambda c: (c.effective_from, c.loaded_at))
    return max(candidates, key=lambda c: c.loaded_at, default=None)


def upgrade() -> None:
    op.add_column('policy_acknowledgements', sa.Column('policy_sha256', sa.String(length=64), nullable=True))
    bind = op.get_bind()
    stored: dict[str, list[_Stored]] = {}
    for version, sha256, effective_from, loaded_at, active in bind.execute(sa.select(
            _versions.c.version, _versions.c.sha256, _versions.c.effective_from, _versions.c.loaded_at,
            _versions.c.active)):
        stored.setdefault(version, []).append(_Stored(effective_from, _utc(loaded_at), bool(active), sha256))
    for ack_id, version, acknowledged_at in bind.execute(sa.select(
            _acks.c.id, _acks.c.policy_version, _acks.c.acknowledged_at)).all():
        chosen = _referenced(stored.get(version, []), _utc(acknowledged_at))
        if chosen is None:
            bind.execute(_acks.delete().where(_acks.c.id == ack_id))
        else:
            bind.execute(_acks.update().where(_acks.c.id == ack_id).values(policy_sha256=chosen.sha256))
    with op.batch_alter_table('policy_acknowledgements', schema=None) as batch_op:
        batch_op.alter_column('policy_sha256', existing_type=sa.String(length=64), nullable=False)
        batch_op.drop_constraint('uq_policy_ack_user_version', type_='unique')
        batch_op.create_unique_constraint('uq_policy_ack_user_sha256', ['user_id', 'policy_sha256'])


def downgrade() -> None:
    # The old table allows one row per user and version string: keep each user's newest per version.
    bind = op.get_bind()
    seen: set[tuple[str, str]] = set()
    for ack_id, user_id, version in bind.execute(sa.select(_acks.c.id, _acks.c.user_id, _acks.c.policy_version)
                                                 .order_by(_acks.c.acknowledged_at.desc())).all():
        if (user_id, version) in seen:
            bind.execute(_acks.delete().where(_acks.c.id == ack_id))
        seen.add((user_id, version))
    with op.batch_alter_table('policy_acknowledgements', schema=None) as batch_op:
        batch_op.drop_constraint('uq_policy_ack_user_sha256', type_='unique')
        batch_op.create_unique_constraint('uq_policy_ack_user_version', ['user_id', 'policy_version'])
        batch_op.drop_column('policy_sha256')
