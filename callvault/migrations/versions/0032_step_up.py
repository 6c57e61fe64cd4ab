"""step-up before downloads: when a session or bearer token last re-confirmed its TOTP code

RELIABILITY 17 asks for a step-up before content leaves callvault: a download needs the person's
authenticator code within the last ``CALLVAULT_STEP_UP_SECONDS``. ``stepped_up_at`` records when the
web session or the bearer token last gave one (NULL: never since sign-in). Existing rows: NULL.

Revision ID: 0032_step_up
Revises: 0031_consent_source
Create Date: 2026-12-09 10:00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0032_step_up'
down_revision: str | None = '0031_consent_source'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ('web_sessions', 'api_tokens'):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column('stepped_up_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    for table in ('api_tokens', 'web_sessions'):
        with op.batch_alter_table(table) as batch:
            batch.drop_column('stepped_up_at')
