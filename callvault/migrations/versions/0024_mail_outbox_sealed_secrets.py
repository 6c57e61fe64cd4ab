"""the mail outbox keeps the secrets a mail carries sealed, and not at all once it is sent

An outside tester found every verification code and every caller's download link ever sent readable in
``mail_outbox`` (issue 24). New mails keep them sealed (``secrets_*``) and drop them once sent. Mails already
sent or failed had them in clear: their codes and link tokens are replaced by a placeholder here (the
request pages and the audit log keep what was sent; the code's and the link's hashes live elsewhere).

Revision ID: 0024
Revises: 0023_sso_explicit_links
Create Date: 2026-12-06 23:40:00
"""
from __future__ import annotations

import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0024'
down_revision: str | None = '0023_sso_explicit_links'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_outbox = sa.table('mail_outbox', sa.column('id', sa.String()), sa.column('state', sa.String()),
                   sa.column('subject', sa.String()), sa.column('body', sa.Text()))
_CODE = re.compile(r"(verification code(?: is|:) )\d{4,10}")
_LINK = re.compile(r"(/s/)[A-Za-z0-9_-]{16,}")
WITHHELD = "[withheld]"


def _scrub(text: str) -> str:
    return _LINK.sub(lambda m: m.group(1) + WITHHELD, _CODE.sub(lambda m: m.group(1) + WITHHELD, text))


def upgrade() -> None:
    with op.batch_alter_table('mail_outbox') as batch:
        batch.add_column(sa.Column('secrets_sealed', sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column('secrets_kek_id', sa.String(64), nullable=True))
        batch.add_column(sa.Column('secrets_wrapped_key', sa.LargeBinary(), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(sa.select(_outbox.c.id, _outbox.c.subject, _outbox.c.body)
                        .where(_outbox.c.state.in_(('sent', 'failed')))).all()
    for row_id, subject, body in rows:
        clean_subject, clean_body = _scrub(subject), _scrub(body)
        if (clean_subject, clean_body) != (subject, body):
            bind.execute(sa.update(_outbox).where(_outbox.c.id == row_id)
                         .values(subject=clean_subject, body=clean_body))


def downgrade() -> None:
    with op.batch_alter_table('mail_outbox') as batch:
        batch.drop_column('secrets_wrapped_key')
        batch.drop_column('secrets_kek_id')
        batch.drop_column('secrets_sealed')
