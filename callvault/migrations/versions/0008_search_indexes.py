"""Number + start-time indexes for catalog search.

"Calls with this remote number, newest first" used the (state, started_at) index and scanned; with
(remote_number, started_at) it reads one index range (bench/search.py: ~300 ms -> ~1 ms on 200k rows).

Revision ID: 0008
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("recordings") as batch:
        batch.drop_index("ix_recordings_remote_number")
        batch.drop_index("ix_recordings_local_number")
        batch.create_index("ix_recordings_remote_number_started", ["remote_number", "started_at"])
        batch.create_index("ix_recordings_local_number_started", ["local_number", "started_at"])


def downgrade() -> None:
    with op.batch_alter_table("recordings") as batch:
        batch.drop_index("ix_recordings_remote_number_started")
        batch.drop_index("ix_recordings_local_number_started")
        batch.create_index("ix_recordings_remote_number", ["remote_number"])
        batch.create_index("ix_recordings_local_number", ["local_number"])
