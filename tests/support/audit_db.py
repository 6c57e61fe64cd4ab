"""A migrated database with an audit signing key, and what a database superuser can do to its log."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.orm import Session

from callvault.audit.signing import Signer, create_signing_key, load_signer
from callvault.core.db import Database
from callvault.core.migrate import upgrade_to_head
from tests.conftest import fresh_database


@contextmanager
def signed_database(backend: str, tmp_path: Path) -> Iterator[tuple[Database, Signer, Path]]:
    """A fresh, migrated database (``--db`` backend), a new signing key and the key's path."""
    with fresh_database(backend, tmp_path) as url:
        url = url.replace("postgresql://", "postgresql+psycopg://")
        upgrade_to_head(url)
        db = Database(url)
        key_path = tmp_path / "keys" / "audit.pem"
        create_signing_key(key_path)
        try:
            yield db, load_signer(key_path), key_path
        finally:
            db.dispose()


def unguard(session: Session) -> None:
    """What a database superuser can do: switch the append-only triggers off."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("ALTER TABLE audit_entries DISABLE TRIGGER USER"))
        session.execute(text("ALTER TABLE audit_checkpoints DISABLE TRIGGER USER"))
    else:
        for name in ("audit_entries_no_update", "audit_entries_no_delete", "audit_checkpoints_no_update",
                     "audit_checkpoints_no_delete"):
            session.execute(text(f"DROP TRIGGER IF EXISTS {name}"))
