"""audit checkpoints: the tree's frontier and head entry, so the next one reads only newer entries

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-24 07:50:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0021'
down_revision: str | None = '0020'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ops (not batch): a batch rebuild on SQLite would drop the table's append-only triggers (0003).
    op.add_column('audit_checkpoints', sa.Column('frontier', sa.Text(), nullable=True))
    op.add_column('audit_checkpoints', sa.Column('head_hash', sa.String(length=64), nullable=True))
    op.add_column('audit_checkpoints', sa.Column('rewrite_checked', sa.Boolean(), nullable=False,
                                                 server_default=sa.false()))


def downgrade() -> None:
    op.drop_column('audit_checkpoints', 'rewrite_checked')
    op.drop_column('audit_checkpoints', 'head_hash')
    op.drop_column('audit_checkpoints', 'frontier')
