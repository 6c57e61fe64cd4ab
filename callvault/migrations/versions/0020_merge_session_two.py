"""Join the branches developed in parallel off 0010 (quality review, CRM tickets and outgoing
webhooks, single sign-on, PBX imports, live monitoring) into one head.

Revision ID: 0020
Revises: 0011, 0012, 0013, 0014, 0015
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0020"
down_revision: str | Sequence[str] | None = ("0011", "0012", "0013", "0014", "0015")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
