"""an approved erasure request keeps what it destroyed and what it kept, and why

``subject_requests.erasure_outcome``: for a caller's erasure request (only where the policy's notice promises
deletion, ``notice.caller_requests``), approving it destroys the reviewed recordings that are not evidence and
records ``{"destroyed": [...], "kept": [{"recording_id", "reason"}]}`` here, shown to staff and mailed to the
caller. Existing rows: none (an erasure request was never carried out before).

Revision ID: 0040_subject_request_erasure
Revises: 0039_control_prompt_version
Create Date: 2026-12-07 11:30:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0040_subject_request_erasure'
down_revision: str | None = '0039_control_prompt_version'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('subject_requests') as batch:
        batch.add_column(sa.Column('erasure_outcome', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('subject_requests') as batch:
        batch.drop_column('erasure_outcome')
