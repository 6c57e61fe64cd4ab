"""The integrity checker: reports, never silently fixes (``callvault check``; later a worker job).

Finds what a crash, a bad disk or a hand edit can leave: partial ingests, catalog rows whose blob
is missing or the wrong size, keys that are missing, blobs no row names (orphans), and (with
``deep``) audio whose decrypted SHA-256 no longer matches the catalog.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from callvault.core.clock import Clock, system_clock
from callvault.core.db import Base, Database
from callvault.core.errors import CallvaultError, NotFound
from callvault.recordings.models import DataKey, Recording, RecordingState
from callvault.recordings.playback import open_reader
from callvault.storage.blobstore import BlobStore
from callvault.storage.keys import Keyring


def find_problems(
    *, db: Database, store: BlobStore, keyring: Keyring, stale_after: timedelta, deep: bool = False,
    clock: Clock = system_clock,
) -> list[str]:
    """Human-readable problems, one per line; empty when all is well."""
    problems: list[str] = []
    cutoff = clock.now() - stale_after
    with db.unit_of_work() as session:
        for row in session.scalars(select(Recording).order_by(Recording.created_at)):
            if row.state == RecordingState.PENDING:
                if row.created_at < cutoff:
                    problems.append(f"recording {row.id} (call {row.call_id}): ingest never finished; "
                                    "`callvault check --repair` removes it")
                continue
            if row.state == RecordingState.DESTROYED:
                continue  # key and blob destroyed on purpose; the destruction record says why
            key = session.get(DataKey, row.id)
            if key is None:
                problems.append(f"recording {row.id}: its data key is missing; the audio cannot be decrypted")
                continue
            if not store.exists(row.blob_key):
                problems.append(f"recording {row.id}: encrypted audio blob {row.blob_key} is missing")
                continue
            if store.size(row.blob_key) != key.ciphertext_size:
                problems.append(f"recording {row.id}: blob is {store.size(row.blob_key)} bytes, "
                                f"expected {key.ciphertext_size}")
                continue
            if deep:
                try:
                    reader = open_reader(session, store=store, keyring=keyring, row=row)
                    if row.sha256:
                        reader.verify_sha256(row.sha256)
                except CallvaultError as exc:
                    problems.append(f"recording {row.id}: {exc.message}")
        referenced = _referenced_blobs(session)
    problems.extend(_orphan_blobs(store, referenced, stale_after))
    problems.extend(temporaries(store, stale_after)[0])
    return problems


def _age(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def temporaries(store: BlobStore, stale_after: timedelta) -> tuple[list[str], list[str]]:
    """(problems, notes) for the blob store's half-written temporaries (``.tmp/*.part``).

    A writer killed mid-blob leaves its temporary behind: never a partial blob under a real key, but
    disk that nothing will free until ``--repair`` (or the worker's cleanup) removes it. One older than
    ``stale_after`` is a problem; a younger one is most likely a write in progress, shown as a note so
    the operator sees it but nobody deletes it. Stores without temporaries (S3, memory) have none."""
    listing = getattr(store, "temporaries", None)
    if listing is None:
        return [], []
    problems: list[str] = []
    notes: list[str] = []
    limit = stale_after.total_seconds()
    minutes = f"{limit / 60:g} min"
    for name, size, age in listing():
        line = f"temporary {name}: {size} bytes, {_age(age)} old"
        if age >= limit:
            problems.append(f"{line}, left by a write that never finished; `callvault check --repair` removes it")
        else:
            notes.append(f"{line}, still being written (younger than {minutes}): left alone")
    return problems, notes


def _referenced_blobs(session: Session) -> set[str]:
    """Every blob key any catalog row names: each table with a ``blob_key`` column (recordings,
    training clips, old keys awaiting destruction, and whatever is added later)."""
    import callvault.core.all_models  # noqa: F401  (every table registered, not only those imported so far)

    keys: set[str] = set()
    for table in Base.metadata.tables.values():
        if "blob_key" in table.c:
            keys.update(k for (k,) in session.execute(select(table.c.blob_key)) if k)
    return keys


def _orphan_blobs(store: BlobStore, referenced: set[str], stale_after: timedelta) -> list[str]:
    """Blobs no row names (RELIABILITY scenario 6: media without metadata is drift to report).

    A blob younger than ``stale_after`` is left alone: writers store the blob first and commit its row
    after (so a crash leaves ciphertext whose key never existed, never a row without its blob). Its age
    is on the store's own clock (``age``), which may differ from this host's.
    """
    age = getattr(store, "age", None)
    found = []
    for key in store.iter_keys():
        if key in referenced:
            continue
        try:
            if age is not None and age(key) < stale_after:
                continue  # its row may be about to commit
        except NotFound:
            continue  # deleted while we looked
        found.append(f"blob {key}: no catalog row names it (an orphan: its key is unknown, so it cannot be "
                     "decrypted; delete it once no restore or investigation needs it)")
    return found
