"""live: calls being recorded now (active_calls) and live monitoring sessions

Revision ID: 0015
Revises: 0010
Create Date: 2026-11-23 22:15:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0015'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('active_calls',
    sa.Column('call_id', sa.String(length=200), nullable=False),
    sa.Column('recording_id', sa.String(length=36), nullable=True),
    sa.Column('node', sa.String(length=200), nullable=False),
    sa.Column('tap_url', sa.String(length=300), nullable=True),
    sa.Column('direction', sa.String(length=16), nullable=False),
    sa.Column('extension', sa.String(length=32), nullable=True),
    sa.Column('agent', sa.String(length=64), nullable=True),
    sa.Column('team', sa.String(length=64), nullable=True),
    sa.Column('consent_state', sa.String(length=32), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('call_id', name=op.f('pk_active_calls'))
    )
    with op.batch_alter_table('active_calls', schema=None) as batch_op:
        batch_op.create_index('ix_active_calls_extension', ['extension'], unique=False)
        batch_op.create_index('ix_active_calls_heartbeat', ['heartbeat_at'], unique=False)
    op.create_table('live_monitoring_sessions',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('call_id', sa.String(length=200), nullable=False),
    sa.Column('extension', sa.String(length=32), nullable=True),
    sa.Column('listener', sa.String(length=64), nullable=False),
    sa.Column('listener_role', sa.String(length=64), nullable=False),
    sa.Column('purpose', sa.String(length=64), nullable=False),
    sa.Column('parties', sa.String(length=16), nullable=False),
    sa.Column('ticket_hash', sa.String(length=64), nullable=True),
    sa.Column('ticket_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('source_ip', sa.String(length=64), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('end_reason', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_live_monitoring_sessions'))
    )
    with op.batch_alter_table('live_monitoring_sessions', schema=None) as batch_op:
        batch_op.create_index('ix_live_monitoring_call', ['call_id', 'ended_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('live_monitoring_sessions', schema=None) as batch_op:
        batch_op.drop_index('ix_live_monitoring_call')
    op.drop_table('live_monitoring_sessions')
    with op.batch_alter_table('active_calls', schema=None) as batch_op:
        batch_op.drop_index('ix_active_calls_heartbeat')
        batch_op.drop_index('ix_active_calls_extension')
    op.drop_table('active_calls')
