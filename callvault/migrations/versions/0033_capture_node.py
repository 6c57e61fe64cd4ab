"""pending SIPREC recordings name the capture process writing them, and capture processes are registered

A capture process killed mid-call (or stopped before it could store every call) left ``pending``
rows that nothing finished: their spool's key lived only in the dead process (issue 25). Now each
pending SIPREC row carries ``capture_node`` (``host:pid:start-ms``) and each running capture process
has a ``capture_nodes`` row with a heartbeat, so a capture start can mark the rows of dead processes
``failed`` without touching those of a live one (two capture processes on one database).
Existing rows: no node (left to the ingest reaper, as before).

Revision ID: 0033_capture_node
Revises: 0032_step_up
Create Date: 2026-12-09 10:00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0033_capture_node'
down_revision: str | None = '0032_step_up'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'capture_nodes',
        sa.Column('id', sa.String(length=200), nullable=False),
        sa.Column('host', sa.String(length=200), nullable=False),
        sa.Column('pid', sa.Integer(), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_capture_nodes')),
    )
    with op.batch_alter_table('recordings') as batch:
        batch.add_column(sa.Column('capture_node', sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('recordings') as batch:
        batch.drop_column('capture_node')
    op.drop_table('capture_nodes')
