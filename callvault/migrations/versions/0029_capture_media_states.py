"""recordings say what capture received: a ``failed`` state with its reason, and media gaps

A SIPREC call whose media never arrived was stored as an "available" recording of silence, and one
whose media stopped for a while as if it were whole (issue 25). Now a call without media, or one a
killed capture process could not finish, keeps a content-free ``failed`` row with ``failure_reason``;
a stored call records the spans where no media arrived (``media_gaps``, seconds from the INVITE) and
their total (``missing_seconds``). Existing rows: no reason, no gaps (nothing was measured then).

Revision ID: 0029_capture_media_states
Revises: 0028_audit_alarm
Create Date: 2026-12-08 10:00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0029_capture_media_states'
down_revision: str | None = '0028_audit_alarm'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('recordings') as batch:
        batch.add_column(sa.Column('failure_reason', sa.String(length=300), nullable=True))
        batch.add_column(sa.Column('media_gaps', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('missing_seconds', sa.Float(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('recordings') as batch:
        batch.drop_column('missing_seconds')
        batch.drop_column('media_gaps')
        batch.drop_column('failure_reason')
