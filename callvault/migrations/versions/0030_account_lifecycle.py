"""identity: administrator-issued one-time codes for MFA enrolment and password resets (issue 24 point 7)

Before this revision, after an MFA reset (or before the first enrolment) whoever signed in first with the
password enrolled their own authenticator. Enrolment now needs a one-time ``enrol`` code an administrator
issues (``callvault users enrolment-code``); an administrator's password reset issues a ``password`` code.
Only each code's SHA-256 is stored.

Revision ID: 0030_account_lifecycle
Revises: 0029_capture_media_states
Create Date: 2026-12-06 23:55:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0030_account_lifecycle'
down_revision: str | None = '0029_capture_media_states'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('account_codes',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('purpose', sa.String(length=16), nullable=False),
    sa.Column('code_sha256', sa.String(length=64), nullable=False),
    sa.Column('issued_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_account_codes_user_id_users'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_account_codes')),
    sa.UniqueConstraint('code_sha256', name=op.f('uq_account_codes_code_sha256'))
    )
    with op.batch_alter_table('account_codes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_account_codes_user_id'), ['user_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('account_codes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_account_codes_user_id'))
    op.drop_table('account_codes')
