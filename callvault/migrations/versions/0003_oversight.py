"""oversight: signed audit checkpoints, mail outbox, misuse reports

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-24 10:00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain op (not batch): a batch rebuild of audit_entries on SQLite would drop its append-only triggers.
    op.create_index('ix_audit_entries_at', 'audit_entries', ['at'], unique=False)

    op.create_table('audit_checkpoints',
    sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('tree_size', sa.BigInteger(), nullable=False),
    sa.Column('root_hash', sa.String(length=64), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('key_id', sa.String(length=16), nullable=False),
    sa.Column('signature', sa.String(length=128), nullable=False),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_audit_checkpoints'))
    )

    op.create_table('mail_outbox',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('dedup_key', sa.String(length=200), nullable=True),
    sa.Column('recipient', sa.String(length=320), nullable=False),
    sa.Column('recipient_user', sa.String(length=64), nullable=True),
    sa.Column('subject', sa.String(length=300), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mail_outbox')),
    sa.UniqueConstraint('dedup_key', name=op.f('uq_mail_outbox_dedup_key'))
    )
    with op.batch_alter_table('mail_outbox', schema=None) as batch_op:
        batch_op.create_index('ix_mail_outbox_state_due', ['state', 'next_attempt_at'], unique=False)

    op.create_table('misuse_reports',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('reporter', sa.String(length=64), nullable=False),
    sa.Column('rule', sa.String(length=64), nullable=True),
    sa.Column('subject_user', sa.String(length=64), nullable=True),
    sa.Column('summary', sa.String(length=300), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('evidence', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('dedup_key', sa.String(length=200), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_misuse_reports')),
    sa.UniqueConstraint('dedup_key', name=op.f('uq_misuse_reports_dedup_key'))
    )
    with op.batch_alter_table('misuse_reports', schema=None) as batch_op:
        batch_op.create_index('ix_misuse_reports_status_created', ['status', 'created_at'], unique=False)

    _make_checkpoints_append_only()


# Checkpoints are append-only like the entries (see 0001): refused at the database level, and any
# change that slips past (a superuser dropping the trigger) breaks the checkpoint's signature.
_SQLITE_TRIGGERS = (
    "CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints "
    "BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END",
    "CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints "
    "BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END",
)
_PG_TRIGGER = (
    "CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_checkpoints "
    "FOR EACH STATEMENT EXECUTE FUNCTION callvault_audit_append_only()"
)


def _make_checkpoints_append_only() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_TRIGGER)  # the function was created by 0001
    else:
        for statement in _SQLITE_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_checkpoints_append_only ON audit_checkpoints")
    with op.batch_alter_table('misuse_reports', schema=None) as batch_op:
        batch_op.drop_index('ix_misuse_reports_status_created')
    op.drop_table('misuse_reports')
    with op.batch_alter_table('mail_outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_mail_outbox_state_due')
    op.drop_table('mail_outbox')
    op.drop_table('audit_checkpoints')
    op.drop_index('ix_audit_entries_at', table_name='audit_entries')
