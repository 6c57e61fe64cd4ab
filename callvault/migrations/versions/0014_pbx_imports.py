"""capture: PBX import ledger and Twilio recording queue

Revision ID: 0014
Revises: 0010
Create Date: 2026-11-23 22:40:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0014'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('pbx_imports',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('path_key', sa.String(length=64), nullable=False),
    sa.Column('flavour', sa.String(length=16), nullable=False),
    sa.Column('root', sa.Text(), nullable=False),
    sa.Column('cdr_file', sa.Text(), nullable=True),
    sa.Column('rel_path', sa.Text(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('mtime_ns', sa.BigInteger(), nullable=False),
    sa.Column('completed_by_hook', sa.Boolean(), nullable=False),
    sa.Column('uniqueid', sa.String(length=100), nullable=True),
    sa.Column('call_id', sa.String(length=200), nullable=True),
    sa.Column('recording_id', sa.String(length=36), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('source_deleted', sa.Boolean(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pbx_imports')),
    sa.UniqueConstraint('path_key', name=op.f('uq_pbx_imports_path_key'))
    )
    with op.batch_alter_table('pbx_imports', schema=None) as batch_op:
        batch_op.create_index('ix_pbx_imports_state', ['state', 'next_attempt_at'], unique=False)

    op.create_table('twilio_recordings',
    sa.Column('recording_sid', sa.String(length=64), nullable=False),
    sa.Column('account_sid', sa.String(length=64), nullable=False),
    sa.Column('call_sid', sa.String(length=64), nullable=False),
    sa.Column('media_url', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('channels', sa.Integer(), nullable=False),
    sa.Column('duration_seconds', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('params', sa.Text(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('recording_id', sa.String(length=36), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('recording_sid', name=op.f('pk_twilio_recordings'))
    )
    with op.batch_alter_table('twilio_recordings', schema=None) as batch_op:
        batch_op.create_index('ix_twilio_recordings_state', ['state', 'next_attempt_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('twilio_recordings', schema=None) as batch_op:
        batch_op.drop_index('ix_twilio_recordings_state')
    op.drop_table('twilio_recordings')
    with op.batch_alter_table('pbx_imports', schema=None) as batch_op:
        batch_op.drop_index('ix_pbx_imports_state')
    op.drop_table('pbx_imports')
