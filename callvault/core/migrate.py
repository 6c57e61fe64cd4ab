"""Schema migrations with Alembic, run programmatically (``callvault init``/``callvault migrate``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(database_url: str) -> Config:
    """An Alembic config pointing at the packaged migrations and the given database."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    return cfg


def upgrade_to_head(database_url: str) -> None:
    """Bring the schema to the newest revision(s); safe to run again.

    "heads" rather than "head": domains add migrations on their own branches off the shared base
    while they are developed in parallel; a merge revision joins them later.
    """
    command.upgrade(alembic_config(database_url), "heads")  # one head since 0009; "heads" stays safe
