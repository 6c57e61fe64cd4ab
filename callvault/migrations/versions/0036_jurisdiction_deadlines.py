"""consent by jurisdiction flags, caller-request extensions and representatives, misuse report deadlines

Issue 28 (points 2 and 4):

* ``recordings.consent_flag``: why a call was stored without the evidence its jurisdiction rule asks for, when
  the rule says ``without_evidence: store_flagged``. Existing rows: none (no such rule existed).
* ``subject_requests``: a written extension (``extended_at``, ``extended_by``, ``extension_reason``), (a written
  denial is 0035's refusal) and the personal representative
  acting for the caller with the proof staff checked (``representative``, JSON). Existing rows: none of them.
* ``misuse_reports.due_at``: when a report must be closed (``misuse.report_deadline_days``). Existing rows:
  no deadline (the policies in force named none).

Revision ID: 0036_jurisdiction_deadlines
Revises: 0035_subject_refusal
Create Date: 2026-12-12 10:00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0036_jurisdiction_deadlines'
down_revision: str | None = '0035_subject_refusal'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('recordings') as batch:
        batch.add_column(sa.Column('consent_flag', sa.Text(), nullable=True))
    with op.batch_alter_table('subject_requests') as batch:
        batch.add_column(sa.Column('extended_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('extended_by', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('extension_reason', sa.Text(), nullable=False, server_default=''))
        batch.add_column(sa.Column('representative', sa.JSON(), nullable=True))
    with op.batch_alter_table('misuse_reports') as batch:
        batch.add_column(sa.Column('due_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('misuse_reports') as batch:
        batch.drop_column('due_at')
    with op.batch_alter_table('subject_requests') as batch:
        for column in ('representative', 'extension_reason',
                       'extended_by', 'extended_at'):
            batch.drop_column(column)
    with op.batch_alter_table('recordings') as batch:
        batch.drop_column('consent_flag')
