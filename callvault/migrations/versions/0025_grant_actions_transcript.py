"""access requests record the actions an approver approved; reading a transcript is its own grantable action

Until now a grant's ``play`` also allowed reading the call's transcript, and an approval always granted
everything asked (issue 23). ``transcript`` is now an action of its own, so every stored request and grant
that names ``play`` gets ``transcript`` added: what an existing approval allowed stays allowed, no more.
``access_requests.approved_actions`` is new (what the approver approved, which the grants carry); approved
requests get what they asked for, which is what their grants were given.

Revision ID: 0025_grant_actions_transcript
Revises: 0024
Create Date: 2026-12-06 23:40:00
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = '0025_grant_actions_transcript'
down_revision: str | None = '0024'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_requests = sa.table(
    'access_requests', sa.column('id', sa.String()), sa.column('actions', sa.JSON()),
    sa.column('approved_actions', sa.JSON()), sa.column('status', sa.String()))
_grants = sa.table('access_grants', sa.column('id', sa.String()), sa.column('actions', sa.JSON()))


def _list(value: Any) -> list[str]:
    """JSON comes back decoded on both databases; a text value (older drivers) is decoded here."""
    if isinstance(value, str):
        value = json.loads(value)
    return [str(v) for v in (value or [])]


def _with_transcript(actions: list[str]) -> list[str]:
    return sorted({*actions, 'transcript'}) if 'play' in actions else actions


def upgrade() -> None:
    with op.batch_alter_table('access_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('approved_actions', sa.JSON(), nullable=True))
    bind = op.get_bind()
    for req_id, actions, status in bind.execute(
            sa.select(_requests.c.id, _requests.c.actions, _requests.c.status)).all():
        mapped = _with_transcript(_list(actions))
        bind.execute(_requests.update().where(_requests.c.id == req_id).values(
            actions=mapped, approved_actions=mapped if status == 'approved' else None))
    for grant_id, actions in bind.execute(sa.select(_grants.c.id, _grants.c.actions)).all():
        bind.execute(_grants.update().where(_grants.c.id == grant_id).values(
            actions=_with_transcript(_list(actions))))


def downgrade() -> None:
    # The older code reads a transcript under ``play`` and knows no ``transcript`` action. A grant for the
    # transcript alone cannot be said in the old terms without also allowing the audio: it keeps no action.
    bind = op.get_bind()
    for table in (_requests, _grants):
        for row_id, actions in bind.execute(sa.select(table.c.id, table.c.actions)).all():
            kept = [a for a in _list(actions) if a != 'transcript']
            bind.execute(table.update().where(table.c.id == row_id).values(actions=kept))
    with op.batch_alter_table('access_requests', schema=None) as batch_op:
        batch_op.drop_column('approved_actions')
