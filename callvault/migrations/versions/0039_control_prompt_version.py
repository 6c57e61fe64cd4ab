"""recording controls carry the announcement prompt's version (issue 23 point 10)

An ``announced`` event filed through the recording-control API (``POST /calls/{id}/control``, ``callvault
control announced``) names the version of the policy's announcement prompt that was played (``version``);
admission carries it into the call's consent evidence (``consent.announcement_version``), where an
announcement naming no version, or one the policy does not list, quarantines the call (A5, B2). Existing
rows: none (no version was recorded before); such an event already applied keeps the evidence it gave.

Revision ID: 0039_control_prompt_version
Revises: 0038_capture_incidents
Create Date: 2026-12-14 10:00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0039_control_prompt_version'
down_revision: str | None = '0038_capture_incidents'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('recording_controls') as batch:
        batch.add_column(sa.Column('version', sa.String(length=50), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('recording_controls') as batch:
        batch.drop_column('version')
