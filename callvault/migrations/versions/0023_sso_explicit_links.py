"""identity: SSO links are made on purpose (issue 24, finding 1): how each link was made, and a sign-in
flow that links the signed-in owner's account

Before this revision the first SSO sign-in linked an (issuer, subject) to whichever local account its
``preferred_username`` named. Links made that way are kept (people use them) but marked
``username-match`` so an administrator can review them (``callvault users sso-links``) and remove any
they did not expect (``callvault users sso-unlink``); new links are ``owner`` (the account's owner
signed in locally and linked it), ``admin`` or ``jit``.

Revision ID: 0023_sso_explicit_links
Revises: 0022
Create Date: 2026-12-02 10:00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0023_sso_explicit_links'
down_revision: str | None = '0022'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('oidc_identities', schema=None) as batch_op:
        batch_op.add_column(sa.Column('linked_via', sa.String(length=16), server_default='username-match',
                                      nullable=False))
        batch_op.add_column(sa.Column('linked_by', sa.String(length=64), nullable=True))
    with op.batch_alter_table('oidc_login_states', schema=None) as batch_op:
        batch_op.add_column(sa.Column('link_user_id', sa.String(length=36), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_oidc_login_states_link_user_id_users'), 'users',
                                    ['link_user_id'], ['id'], ondelete='CASCADE')


def downgrade() -> None:
    with op.batch_alter_table('oidc_login_states', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_oidc_login_states_link_user_id_users'), type_='foreignkey')
        batch_op.drop_column('link_user_id')
    with op.batch_alter_table('oidc_identities', schema=None) as batch_op:
        batch_op.drop_column('linked_by')
        batch_op.drop_column('linked_via')
