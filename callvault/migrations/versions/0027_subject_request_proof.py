"""a caller's request must prove the phone number is theirs: codes sent to the number, or facts a reviewer checks

An outside tester showed that proving an email address was enough to receive anyone's recordings (issue 24
point 2). Requests now keep the facts the caller gives about a call (date, time, agent's first name,
reason) and which of them the releasing reviewer confirmed; ``subject_request_phone_proofs`` holds the
hashed codes sent to each number through the configured provider.

Revision ID: 0027_subject_request_proof
(a short id: alembic_version.version_num holds 32 characters)
Revises: 0026_holds_consent_region
Create Date: 2026-12-07 00:00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0027_subject_request_proof'
down_revision: str | None = '0026_holds_consent_region'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('subject_requests') as batch:
        batch.add_column(sa.Column('call_date', sa.Date(), nullable=True))
        batch.add_column(sa.Column('call_time', sa.Time(), nullable=True))
        batch.add_column(sa.Column('agent_first_name', sa.String(64), nullable=False, server_default=''))
        batch.add_column(sa.Column('call_reason', sa.Text(), nullable=False, server_default=''))
        batch.add_column(sa.Column('facts_confirmed', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('facts_confirmed_by', sa.String(64), nullable=True))
    op.create_table(
        'subject_request_phone_proofs',
        sa.Column('request_id', sa.String(length=36), nullable=False),
        sa.Column('phone_number', sa.String(length=32), nullable=False),
        sa.Column('code_sha256', sa.String(length=64), nullable=True),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('send_error', sa.String(length=300), nullable=False),
        sa.Column('verified_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['request_id'], ['subject_requests.id'], ondelete='CASCADE',
                                name=op.f('fk_subject_request_phone_proofs_request_id_subject_requests')),
        sa.PrimaryKeyConstraint('request_id', 'phone_number', name=op.f('pk_subject_request_phone_proofs')),
    )


def downgrade() -> None:
    op.drop_table('subject_request_phone_proofs')
    with op.batch_alter_table('subject_requests') as batch:
        for column in ('facts_confirmed_by', 'facts_confirmed', 'call_reason', 'agent_first_name', 'call_time',
                       'call_date'):
            batch.drop_column(column)
