"""transcription: CRM-connector webhook deliveries (replay protection)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-25 10:00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('crm_webhook_deliveries',
    sa.Column('signature', sa.String(length=64), nullable=False),
    sa.Column('note_id', sa.String(length=100), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('signature', name=op.f('pk_crm_webhook_deliveries'))
    )
    with op.batch_alter_table('crm_webhook_deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_crm_webhook_deliveries_received', ['received_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('crm_webhook_deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_crm_webhook_deliveries_received')
    op.drop_table('crm_webhook_deliveries')
