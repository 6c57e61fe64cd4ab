"""subject requests: callers' and operators' requests for their own recordings, releases, delivery links

Revision ID: 0007
Revises: 0001
Create Date: 2026-11-24 12:00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('subject_requests',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('phone_numbers', sa.JSON(), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('requester_user_id', sa.String(length=36), nullable=True),
    sa.Column('requester_username', sa.String(length=64), nullable=True),
    sa.Column('date_from', sa.Date(), nullable=True),
    sa.Column('date_to', sa.Date(), nullable=True),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('region', sa.String(length=32), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('source_ip', sa.String(length=64), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('code_sha256', sa.String(length=64), nullable=True),
    sa.Column('code_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('code_attempts', sa.Integer(), nullable=False),
    sa.Column('verified_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('due_on', sa.Date(), nullable=True),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reviewed_by', sa.String(length=64), nullable=True),
    sa.Column('reviewed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('redaction_note', sa.Text(), nullable=False),
    sa.Column('approved_by', sa.String(length=64), nullable=True),
    sa.Column('approved_by_user_id', sa.String(length=36), nullable=True),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reminders_sent', sa.JSON(), nullable=False),
    sa.Column('overdue_flagged_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_subject_requests'))
    )
    with op.batch_alter_table('subject_requests', schema=None) as batch_op:
        batch_op.create_index('ix_subject_requests_status_due', ['status', 'due_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_subject_requests_requester_user_id'), ['requester_user_id'],
                              unique=False)

    op.create_table('subject_request_recordings',
    sa.Column('request_id', sa.String(length=36), nullable=False),
    sa.Column('recording_id', sa.String(length=36), nullable=False),
    sa.Column('party', sa.String(length=16), nullable=False),
    sa.Column('added_by', sa.String(length=64), nullable=False),
    sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['request_id'], ['subject_requests.id'],
                            name=op.f('fk_subject_request_recordings_request_id_subject_requests'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('request_id', 'recording_id', name=op.f('pk_subject_request_recordings'))
    )

    op.create_table('subject_request_links',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('request_id', sa.String(length=36), nullable=False),
    sa.Column('token_sha256', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('max_downloads', sa.Integer(), nullable=False),
    sa.Column('downloads', sa.Integer(), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_by', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['request_id'], ['subject_requests.id'],
                            name=op.f('fk_subject_request_links_request_id_subject_requests'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_subject_request_links')),
    sa.UniqueConstraint('token_sha256', name=op.f('uq_subject_request_links_token_sha256'))
    )
    with op.batch_alter_table('subject_request_links', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_subject_request_links_request_id'), ['request_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('subject_request_links', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_subject_request_links_request_id'))
    op.drop_table('subject_request_links')
    op.drop_table('subject_request_recordings')
    with op.batch_alter_table('subject_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_subject_requests_requester_user_id'))
        batch_op.drop_index('ix_subject_requests_status_due')
    op.drop_table('subject_requests')
