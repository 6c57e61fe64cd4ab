"""recordings say where their consent evidence came from (issue 25 point 9)

No vendor SBC sends callvault's per-call consent extension data, so a policy may now declare standing
evidence per route (``consent.standing_evidence``). Each recording records the evidence's source in
``consent_source`` (``metadata``, ``control_api``, ``standing_rule``, ``none``) so the compliance report can
count by source without reading every row's evidence JSON. Existing rows: ``none`` where no evidence was
recorded, else ``metadata`` (evidence filed through the control API was not told apart before).

Revision ID: 0031_consent_source
Revises: 0030_account_lifecycle
Create Date: 2026-12-10 10:00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0031_consent_source'
down_revision: str | None = '0030_account_lifecycle'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('recordings') as batch:
        batch.add_column(sa.Column('consent_source', sa.String(length=16), nullable=False, server_default='none'))
    recordings = sa.table('recordings', sa.column('consent_state', sa.String()),
                          sa.column('consent_source', sa.String()))
    op.execute(recordings.update().where(recordings.c.consent_state != 'missing')
               .values(consent_source='metadata'))


def downgrade() -> None:
    with op.batch_alter_table('recordings') as batch:
        batch.drop_column('consent_source')
