"""capture incidents: calls in mandatory recording scope that were refused, failed, have gaps or never arrived

Issue 28 (point 1): under ``recording_scope.mandatory`` such a call is an incident, not a silent drop. Raised by
capture when it refuses or fails a call in scope, and by ``callvault capture reconcile`` from the PBX/SBC's call
records. One row per call and kind. Existing data: none (nothing was raised before).

Revision ID: 0038_capture_incidents
Revises: 0037_misuse_assign_user_tz
Create Date: 2026-12-13 10:00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0038_capture_incidents'
down_revision: str | None = '0037_misuse_assign_user_tz'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'capture_incidents',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('call_id', sa.String(length=200), nullable=False),
        sa.Column('source', sa.String(length=16), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('duration_seconds', sa.Float(), nullable=True),
        sa.Column('direction', sa.String(length=8), nullable=False),
        sa.Column('extension', sa.String(length=32), nullable=True),
        sa.Column('team', sa.String(length=64), nullable=True),
        sa.Column('agent', sa.String(length=64), nullable=True),
        sa.Column('remote_number', sa.String(length=32), nullable=True),
        sa.Column('local_number', sa.String(length=32), nullable=True),
        sa.Column('recording_id', sa.String(length=36), nullable=True),
        sa.Column('detail', sa.Text(), nullable=False),
        sa.Column('clause', sa.String(length=300), nullable=False),
        sa.Column('policy', sa.String(length=200), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('resolved_by', sa.String(length=64), nullable=True),
        sa.Column('resolution_note', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_capture_incidents')),
        sa.UniqueConstraint('call_id', 'kind', name='uq_capture_incidents_call_kind'),
    )
    op.create_index('ix_capture_incidents_status_started', 'capture_incidents', ['status', 'started_at'])


def downgrade() -> None:
    op.drop_index('ix_capture_incidents_status_started', table_name='capture_incidents')
    op.drop_table('capture_incidents')
