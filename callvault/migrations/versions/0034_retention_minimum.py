"""retention minimum and break-the-glass access (issue 28, points 1 and 5)

``recordings.keep_until`` (+ ``keep_until_basis``): the earliest moment anything may destroy or alter a
recording, the longest ``retention.min_age_months`` that applied to it or an extension on request; it only
ever moves later. ``emergency_declarations``: declared emergency access with its review task.
Existing rows: no minimum (NULL), as no policy could name one before.

Revision ID: 0034_retention_minimum
Revises: 0033_capture_node
Create Date: 2026-12-10 10:00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0034_retention_minimum'
down_revision: str | None = '0033_capture_node'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('recordings') as batch:
        batch.add_column(sa.Column('keep_until', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('keep_until_basis', sa.String(length=300), nullable=True))
    op.create_table(
        'emergency_declarations',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('user_id', sa.String(length=36), nullable=False),
        sa.Column('username', sa.String(length=64), nullable=False),
        sa.Column('role', sa.String(length=64), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('declared_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('ended_early_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('review_due_on', sa.Date(), nullable=False),
        sa.Column('reviewed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('reviewed_by', sa.String(length=64), nullable=True),
        sa.Column('review_outcome', sa.String(length=16), nullable=True),
        sa.Column('review_notes', sa.Text(), nullable=True),
        sa.Column('overdue_reported_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_emergency_declarations')),
    )
    op.create_index('ix_emergency_declarations_user', 'emergency_declarations', ['user_id', 'ends_at'])
    op.create_index('ix_emergency_declarations_review', 'emergency_declarations', ['reviewed_at', 'review_due_on'])


def downgrade() -> None:
    op.drop_index('ix_emergency_declarations_review', table_name='emergency_declarations')
    op.drop_index('ix_emergency_declarations_user', table_name='emergency_declarations')
    op.drop_table('emergency_declarations')
    with op.batch_alter_table('recordings') as batch:
        batch.drop_column('keep_until_basis')
        batch.drop_column('keep_until')
