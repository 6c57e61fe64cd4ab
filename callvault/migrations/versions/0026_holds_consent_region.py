"""legal hold review bound, consent evidence reason, subject request region basis (issue 23 points 7, 10, 11)

* ``legal_holds.overdue_notified_at``: when the misuse recipients were told a hold's review was overdue.
  Existing active holds keep protecting but get a review date the new rules allow: one further than six
  months from the upgrade (the schema's default ``retention.legal_hold.max_review_months``) is brought in to
  that, and one already past is set to the upgrade day, so it is reported at the next sweep and lapses only
  after the policy's ``lapse_after_overdue_days``, never at once because of the upgrade.
* ``recordings.quarantine_reason``: why a recording is quarantined; existing quarantined rows were quarantined
  for missing evidence, the only reason before this revision.
* ``subject_requests.region_basis``: why the request's working-day region was chosen; existing rows say they
  predate the rule.

Revision ID: 0026_holds_consent_region
Revises: 0025_grant_actions_transcript
Create Date: 2026-11-26 10:00:00
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime

import sqlalchemy as sa
from alembic import op

revision: str = '0026_holds_consent_region'
down_revision: str | None = '0025_grant_actions_transcript'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MAX_REVIEW_MONTHS = 6
MISSING = "no consent evidence: neither an announcement (inbound) nor an agent notice (outbound) was reported"

_holds = sa.table('legal_holds', sa.column('id', sa.String()), sa.column('review_on', sa.Date()),
                  sa.column('released_at', sa.DateTime(timezone=True)))
_recordings = sa.table('recordings', sa.column('quarantined', sa.Boolean()),
                       sa.column('quarantine_reason', sa.Text()))


def _add_months(day: date, months: int) -> date:
    month = day.month - 1 + months
    year, month = day.year + month // 12, month % 12 + 1
    for last in (31, 30, 29, 28):
        try:
            return date(year, month, min(day.day, last))
        except ValueError:
            continue
    raise AssertionError("unreachable")


def upgrade() -> None:
    op.add_column('legal_holds', sa.Column('overdue_notified_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('recordings', sa.Column('quarantine_reason', sa.Text(), nullable=True))
    op.add_column('subject_requests', sa.Column('region_basis', sa.Text(), nullable=False, server_default=''))
    bind = op.get_bind()
    today = datetime.now(UTC).date()
    latest = _add_months(today, MAX_REVIEW_MONTHS)
    for hold_id, review_on in bind.execute(sa.select(_holds.c.id, _holds.c.review_on)
                                           .where(_holds.c.released_at.is_(None))).all():
        bounded = min(max(review_on, today), latest)
        if bounded != review_on:
            bind.execute(_holds.update().where(_holds.c.id == hold_id).values(review_on=bounded))
    bind.execute(_recordings.update().where(_recordings.c.quarantined.is_(True))
                 .values(quarantine_reason=MISSING))
    bind.execute(sa.text("UPDATE subject_requests SET region_basis = 'chosen before the region rule of "
                         "issue 23 (caller country, else default_region)'"))


def downgrade() -> None:
    op.drop_column('subject_requests', 'region_basis')
    op.drop_column('recordings', 'quarantine_reason')
    op.drop_column('legal_holds', 'overdue_notified_at')
