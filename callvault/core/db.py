"""Database engine, the declarative base and the unit of work.

Services take a ``Session`` and never commit; the request, job or CLI command commits once through
``Database.unit_of_work()``. On SQLite every transaction starts with ``BEGIN IMMEDIATE`` so writers
queue on the busy timeout instead of failing half-way (the audit hash chain needs one writer at a
time); on PostgreSQL the chain takes an advisory lock instead (see ``callvault.audit.service``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, MetaData, create_engine, event
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from callvault.core.errors import ConfigurationError

SQLITE_BUSY_SECONDS = 30
"""How long a writer waits for SQLite's write lock (``busy_timeout``) and for its turn in this process."""


NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Base of every ORM model; constraint names are stable so Alembic can alter them on SQLite."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetimes in, timezone-aware UTC datetimes out, on SQLite and PostgreSQL alike.

    SQLite has no time zone type; storing naive UTC and re-attaching UTC on the way out keeps
    comparisons and ordering right on both databases.
    """

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        return dialect.type_descriptor(DateTime(timezone=dialect.name == "postgresql"))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column; attach a time zone")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy, not the driver, decide when transactions begin (so BEGIN IMMEDIATE works).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # Writers take the write lock up front (no lock upgrade, no SQLITE_BUSY half-way); readers
            # (``Database.read_only``) begin deferred and, under WAL, never wait for a writer.
            conn.exec_driver_sql("BEGIN" if _READ_ONLY.get() else "BEGIN IMMEDIATE")

        return engine
    engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)

    @event.listens_for(engine, "begin")
    def _pg_begin(conn: Any) -> None:
        # Read-only units have their own engine (``_make_pg_read_engine``); a unit of work opened inside
        # one stays read-only too: psycopg then begins it with BEGIN READ ONLY itself.
        conn.connection.dbapi_connection.read_only = _READ_ONLY.get()

    return engine


def _make_pg_read_engine(url: str) -> Engine:
    """PostgreSQL connections for ``Database.read_only``: read-only sessions, one statement at a time.

    Why a pool of its own: a read-only unit in a transaction costs BEGIN and COMMIT, two round trips
    of the four or five a per-request check takes (869 against 558 µs for a two-query unit, measured
    on loopback). Each statement of an autocommit session is its own transaction, and in PostgreSQL's
    default READ COMMITTED each statement of a transaction takes its own snapshot anyway, so the
    reads see the same data. The session is read-only in the server (``default_transaction_read_only``,
    set once per connection), so a write slipped into a read-only unit still fails there.
    """
    engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10, isolation_level="AUTOCOMMIT")

    @event.listens_for(engine, "connect")
    def _read_only_session(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.autocommit = True
        dbapi_conn.execute("SET default_transaction_read_only = on")

    return engine


@contextmanager
def _acquired(lock: threading.RLock, timeout: float) -> Iterator[object]:
    if not lock.acquire(timeout=timeout):
        raise ConfigurationError(f"database unavailable: no write turn within {timeout:.0f} s (database is locked)")
    try:
        yield lock
    finally:
        lock.release()


_READ_ONLY: ContextVar[bool] = ContextVar("callvault_read_only_unit", default=False)


class Database:
    """One engine and session factory per process; no other state (two server nodes share nothing)."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.engine = _make_engine(url)
            read_engine = _make_pg_read_engine(url) if self.engine.dialect.name == "postgresql" else None
        except Exception as exc:
            raise ConfigurationError(f"cannot use database {url!r}: {exc}") from exc
        self.session_factory = sessionmaker(self.engine, expire_on_commit=False)
        self._read_engine = read_engine
        self._read_sessions = sessionmaker(read_engine, expire_on_commit=False) if read_engine is not None else None
        # SQLite has one writer at a time. Threads of this process queue here for it instead of in
        # SQLite's busy handler, which polls with sleeps of up to 100 ms: two concurrent ingests spent
        # most of their time asleep (35 instead of 84 recordings/s with one). Other processes still
        # meet the busy timeout. Re-entrant, so a nested unit in one thread behaves as before (it
        # waits on SQLite's lock and times out) instead of deadlocking here.
        self._writer = threading.RLock() if self.engine.dialect.name == "sqlite" else None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        """A session that commits once on success and rolls back on any exception."""
        with self._writer_turn(), self._unit(self.session_factory) as session:
            yield session

    @staticmethod
    @contextmanager
    def _unit(factory: sessionmaker[Session]) -> Iterator[Session]:
        session = factory()
        try:
            yield session
            session.commit()
        except OperationalError as exc:
            session.rollback()
            raise ConfigurationError(f"database unavailable: {exc.orig}") from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def _writer_turn(self) -> contextlib.AbstractContextManager[object]:
        """This thread's turn as SQLite's writer (see ``__init__``); nothing on PostgreSQL or for readers."""
        if self._writer is None or _READ_ONLY.get():
            return nullcontext()
        return _acquired(self._writer, SQLITE_BUSY_SECONDS)

    @contextmanager
    def read_only(self) -> Iterator[Session]:
        """A unit of work that only reads (the per-request checks, searches).

        Why: on SQLite every other unit of work begins IMMEDIATE, so it queues for the one write lock;
        a reader doing that makes busy requests wait on each other for nothing (SQLite's busy handler
        sleeps in steps up to 100 ms, which is where long tails come from). A deferred BEGIN reads a
        WAL snapshot beside any writer. On PostgreSQL the unit runs on a read-only session without
        BEGIN and COMMIT (``_make_pg_read_engine``), so a write slipped into one fails loudly instead
        of passing unnoticed.
        """
        token = _READ_ONLY.set(True)
        try:
            if self._read_sessions is None:
                with self.unit_of_work() as session:
                    yield session
            else:
                with self._unit(self._read_sessions) as session:
                    yield session
        finally:
            _READ_ONLY.reset(token)

    def dispose(self) -> None:
        self.engine.dispose()
        if self._read_engine is not None:
            self._read_engine.dispose()
