"""audit_alarms: a tamper alarm every node sees, raised when the log fails verification before signing

Issue 24, point 8: the worker signed checkpoints over a log with a deleted or edited row. It now verifies
what it signs; on a mismatch it stops signing and keeps an alarm row here until an administrator
acknowledges it (``callvault audit acknowledge-alarm``).

Revision ID: 0028_audit_alarm
Revises: 0027_subject_request_proof
Create Date: 2026-12-07 00:10:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0028_audit_alarm'
down_revision: str | None = '0027_subject_request_proof'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'audit_alarms',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('raised_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('raised_by', sa.String(length=64), nullable=False),
        sa.Column('problem', sa.Text(), nullable=False),
        sa.Column('first_bad_seq', sa.BigInteger(), nullable=True),
        sa.Column('acknowledged_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('acknowledged_by', sa.String(length=64), nullable=True),
        sa.Column('ack_reason', sa.Text(), nullable=True),
        sa.Column('rebase_seq', sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_alarms')),
    )
    with op.batch_alter_table('audit_alarms', schema=None) as batch_op:
        batch_op.create_index('ix_audit_alarms_open', ['acknowledged_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('audit_alarms', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_alarms_open')
    op.drop_table('audit_alarms')
