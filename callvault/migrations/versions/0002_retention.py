"""retention: cases, legal holds, destruction register, key-destruction log, recording controls

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 19:30:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('recordings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('destroy_after', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('retention_rule', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('retention_basis', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('on_hold', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('destroyed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_recordings_retention_due', ['state', 'on_hold', 'destroy_after'], unique=False)
        batch_op.create_index('ix_recordings_case_ref', ['case_ref'], unique=False)

    op.create_table('retention_cases',
    sa.Column('ref', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('opened_by', sa.String(length=64), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolved_by', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('ref', name=op.f('pk_retention_cases'))
    )
    op.create_table('legal_holds',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('recording_id', sa.String(length=36), nullable=True),
    sa.Column('case_ref', sa.String(length=100), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('owner', sa.String(length=64), nullable=False),
    sa.Column('review_on', sa.Date(), nullable=False),
    sa.Column('placed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('placed_by', sa.String(length=64), nullable=False),
    sa.Column('released_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('released_by', sa.String(length=64), nullable=True),
    sa.Column('release_reason', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_legal_holds'))
    )
    with op.batch_alter_table('legal_holds', schema=None) as batch_op:
        batch_op.create_index('ix_legal_holds_recording', ['recording_id'], unique=False)
        batch_op.create_index('ix_legal_holds_case', ['case_ref'], unique=False)

    op.create_table('destruction_records',
    sa.Column('recording_id', sa.String(length=36), nullable=False),
    sa.Column('call_id', sa.String(length=200), nullable=False),
    sa.Column('content_sha256', sa.String(length=64), nullable=True),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('rule', sa.String(length=32), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('kek_id', sa.String(length=64), nullable=True),
    sa.Column('key_fingerprint', sa.String(length=64), nullable=True),
    sa.Column('destroyed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('destroyed_by', sa.String(length=64), nullable=False),
    sa.Column('recorded_started_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('recording_id', name=op.f('pk_destruction_records'))
    )
    with op.batch_alter_table('destruction_records', schema=None) as batch_op:
        batch_op.create_index('ix_destruction_records_at', ['destroyed_at'], unique=False)

    op.create_table('key_destructions',
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('recording_id', sa.String(length=36), nullable=False),
    sa.Column('kek_id', sa.String(length=64), nullable=False),
    sa.Column('blob_key', sa.String(length=200), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('destroyed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('fingerprint', name=op.f('pk_key_destructions'))
    )
    with op.batch_alter_table('key_destructions', schema=None) as batch_op:
        batch_op.create_index('ix_key_destructions_pending', ['completed_at'], unique=False)

    op.create_table('recording_controls',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('call_id', sa.String(length=200), nullable=False),
    sa.Column('recording_id', sa.String(length=36), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('requested_by', sa.String(length=64), nullable=False),
    sa.Column('requested_role', sa.String(length=64), nullable=False),
    sa.Column('requester_extension', sa.String(length=32), nullable=True),
    sa.Column('administrative', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('applied_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('outcome', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recording_controls'))
    )
    with op.batch_alter_table('recording_controls', schema=None) as batch_op:
        batch_op.create_index('ix_recording_controls_call', ['call_id', 'at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('recording_controls', schema=None) as batch_op:
        batch_op.drop_index('ix_recording_controls_call')
    op.drop_table('recording_controls')
    with op.batch_alter_table('key_destructions', schema=None) as batch_op:
        batch_op.drop_index('ix_key_destructions_pending')
    op.drop_table('key_destructions')
    with op.batch_alter_table('destruction_records', schema=None) as batch_op:
        batch_op.drop_index('ix_destruction_records_at')
    op.drop_table('destruction_records')
    with op.batch_alter_table('legal_holds', schema=None) as batch_op:
        batch_op.drop_index('ix_legal_holds_case')
        batch_op.drop_index('ix_legal_holds_recording')
    op.drop_table('legal_holds')
    op.drop_table('retention_cases')
    with op.batch_alter_table('recordings', schema=None) as batch_op:
        batch_op.drop_index('ix_recordings_case_ref')
        batch_op.drop_index('ix_recordings_retention_due')
        batch_op.drop_column('destroyed_at')
        batch_op.drop_column('on_hold')
        batch_op.drop_column('retention_basis')
        batch_op.drop_column('retention_rule')
        batch_op.drop_column('destroy_after')
