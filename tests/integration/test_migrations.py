"""The Alembic migrations and the ORM models describe the same schema, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

import callvault.core.all_models  # noqa: F401
from callvault.core.db import Base
from callvault.core.migrate import alembic_config
from tests.support.env import CallvaultEnv


def test_migrations_have_a_single_head() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert len(script.get_heads()) == 1, script.get_heads()


def test_migrated_schema_matches_the_models(env: CallvaultEnv) -> None:
    with env.runtime.db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        diff = compare_metadata(context, Base.metadata)
    assert diff == [], "\n".join(str(d) for d in diff)
