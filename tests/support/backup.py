"""Taking a database backup in a test and restoring it in place, on SQLite or PostgreSQL, the way
docs/reliability.md tells operators to (SQLite: an online backup, never a plain file copy;
PostgreSQL: a copy of the whole database, here ``CREATE DATABASE … TEMPLATE``, as a dump/restore would)."""

from __future__ import annotations

import shutil
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import psycopg

from tests.conftest import PG_ADMIN_URL
from tests.support.env import CallvaultEnv


@contextmanager
def backed_up(env: CallvaultEnv) -> Iterator[Callable[[], None]]:
    """Take a backup of the database now; the yielded callable restores it in place."""
    url = env.settings.database_url
    env.runtime.db.dispose()
    if url.startswith("sqlite"):
        db_file = Path(url.removeprefix("sqlite:///"))
        copy = db_file.with_name("backup.db")
        with closing(sqlite3.connect(db_file)) as src, closing(sqlite3.connect(copy)) as dst:
            src.backup(dst)  # an online backup, as docs/reliability.md says (never a plain file copy)

        def restore_sqlite() -> None:
            env.runtime.db.dispose()
            for suffix in ("", "-wal", "-shm"):
                db_file.with_name(db_file.name + suffix).unlink(missing_ok=True)
            shutil.copyfile(copy, db_file)

        yield restore_sqlite
        return
    name = url.rsplit("/", 1)[1]
    copy_name = f"{name}_bk_{uuid.uuid4().hex[:6]}"

    def run(sql: str) -> None:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
            conn.execute(sql)

    run(f'CREATE DATABASE "{copy_name}" TEMPLATE "{name}"')

    def restore_postgres() -> None:
        env.runtime.db.dispose()
        run(f'DROP DATABASE "{name}" WITH (FORCE)')
        run(f'CREATE DATABASE "{name}" TEMPLATE "{copy_name}"')

    try:
        yield restore_postgres
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{copy_name}" WITH (FORCE)')
