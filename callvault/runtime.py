"""Wiring: builds the database, blob store, keyring and rate-limit counters from settings, for the edges
(API, CLI, worker).

Domains receive these pieces explicitly; nothing here is global, so two server nodes built from
the same settings behave identically.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from callvault.core.clock import Clock, system_clock
from callvault.core.db import Database
from callvault.core.settings import Settings
from callvault.identity.counters import Counters, open_counters
from callvault.storage.blobstore import BlobStore, open_blobstore
from callvault.storage.keys import Keyring, load_keyring


@dataclass
class Runtime:
    """What a running callvault process needs."""

    settings: Settings
    db: Database
    store: BlobStore
    keyring: Keyring
    counters: Counters
    """Guessing limits and request-form limits: the database, or Redis when ``CALLVAULT_REDIS_URL`` is set."""
    clock: Clock = field(default=system_clock)

    def close(self) -> None:
        self.counters.close()
        self.db.dispose()


def build_runtime(settings: Settings, *, clock: Clock = system_clock) -> Runtime:
    return Runtime(
        settings=settings,
        db=Database(settings.database_url),
        store=open_blobstore(settings.storage_url, settings.env),
        keyring=load_keyring(settings.key_dir, settings.env),
        clock=clock,
        counters=open_counters(settings),
    )
