"""a callers' request can be refused with a written reason

Staff could only release a request (issue 26 point 1): one that cannot be proven the requester's, or
that asks for someone else's calls, stayed in the queue until it went overdue. A refusal now ends it
with the reviewer's reason, mailed to the requester. New status value ``refused`` (the column is a
plain string) and three nullable/defaulted columns; existing rows are unchanged.

Revision ID: 0035_subject_refusal
Revises: 0034_retention_minimum
Create Date: 2026-12-10 10:00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0035_subject_refusal'
down_revision: str | None = '0034_retention_minimum'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('subject_requests') as batch:
        batch.add_column(sa.Column('refused_by', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('refused_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('refusal_reason', sa.Text(), server_default='', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('subject_requests') as batch:
        batch.drop_column('refusal_reason')
        batch.drop_column('refused_at')
        batch.drop_column('refused_by')
