"""``Database.read_only``: readers never queue behind a writer (SQLite WAL), and a write slipped into a
read-only unit fails on PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from callvault.core.db import Database
from tests.conftest import fresh_database


@pytest.fixture()
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with fresh_database(request.config.getoption("--db"), tmp_path) as url:
        database = Database(url)
        with database.unit_of_work() as session:
            session.execute(text("CREATE TABLE probe (x INTEGER)"))
            session.execute(text("INSERT INTO probe VALUES (1)"))
        yield database
        database.dispose()


def test_a_reader_runs_while_a_writer_holds_the_write_lock(db: Database) -> None:
    holding, release = threading.Event(), threading.Event()

    def writer() -> None:
        with db.unit_of_work() as session:
            session.execute(text("INSERT INTO probe VALUES (2)"))  # holds the write lock (SQLite) / row (PG)
            holding.set()
            release.wait(30)

    thread = threading.Thread(target=writer)
    thread.start()
    assert holding.wait(10)
    result: list[int] = []
    reader = threading.Thread(target=lambda: result.append(_count(db)))
    reader.start()
    reader.join(10)  # a reader that queued for the lock would still be waiting: the writer never lets go
    finished = not reader.is_alive()
    release.set()
    thread.join(10)
    reader.join(10)
    assert finished, "a read-only unit of work waited for the writer"
    assert result == [1], "the reader saw the writer's uncommitted row"
    assert _count(db) == 2


def _count(db: Database) -> int:
    with db.read_only() as session:
        return int(session.execute(text("SELECT count(*) FROM probe")).scalar_one())


def test_a_write_inside_a_read_only_unit_fails_on_postgresql(db: Database) -> None:
    if db.dialect != "postgresql":
        pytest.skip("SQLite has no read-only transactions; the unit is deferred there")
    with pytest.raises(Exception, match="read-only"), db.read_only() as session:
        session.execute(text("INSERT INTO probe VALUES (3)"))
    assert _count(db) == 1
