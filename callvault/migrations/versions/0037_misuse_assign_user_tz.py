"""misuse report assignment and closing note, each person's own time zone

Issue 26 (points 5 and 4):

* ``misuse_reports.assignee``: the recipient handling a report (one of the roles the policy routes reports
  to), and ``closing_note``: why it was closed, kept on the row as well as in the audit log so the page can
  show it. Existing rows: nobody assigned, no note.
* ``users.timezone``: the IANA zone a person chose on the Account page; times on every page are shown in it.
  Existing rows: none chosen (the policy's zone applies, as before).
* ``subject_requests.asks_for``: what a caller asks for, ``copy`` or ``erasure`` (where the policy's notice
  promises it, point 6). Existing rows: ``copy`` (the only request there was).

Revision ID: 0037_misuse_assign_user_tz
Revises: 0036_jurisdiction_deadlines
Create Date: 2026-12-07 03:45:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0037_misuse_assign_user_tz'
down_revision: str | None = '0036_jurisdiction_deadlines'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('misuse_reports') as batch:
        batch.add_column(sa.Column('assignee', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('closing_note', sa.Text(), nullable=True))
    with op.batch_alter_table('users') as batch:
        batch.add_column(sa.Column('timezone', sa.String(length=64), nullable=True))
    with op.batch_alter_table('subject_requests') as batch:
        batch.add_column(sa.Column('asks_for', sa.String(length=16), nullable=False, server_default='copy'))


def downgrade() -> None:
    with op.batch_alter_table('subject_requests') as batch:
        batch.drop_column('asks_for')
    with op.batch_alter_table('users') as batch:
        batch.drop_column('timezone')
    with op.batch_alter_table('misuse_reports') as batch:
        batch.drop_column('closing_note')
        batch.drop_column('assignee')
