"""``retention.write_once``: recordings go to write-once storage (S3 Object Lock, COMPLIANCE mode).

Checked when a process starts (``build_runtime``) and when a policy is loaded, so a policy that promises
write-once storage never runs on a store that could delete or overwrite a blob before the minimum.
"""

from __future__ import annotations

import math

from callvault.core.clock import Clock, system_clock
from callvault.core.db import Database
from callvault.core.errors import ConfigurationError
from callvault.policy.schema import PolicyDocument
from callvault.storage.blobstore import BlobStore


def required_lock_days(policy: PolicyDocument) -> int:
    """The shortest Object Lock (days) that covers the minimum: 366/12 days per month, rounded up, at least 1."""
    return max(1, math.ceil(policy.retention.min_age_months * 366 / 12))


def check_store(policy: PolicyDocument, store: BlobStore) -> None:
    """ConfigurationError naming what to change when ``policy`` needs write-once storage ``store`` is not."""
    if not policy.retention.write_once:
        return
    from callvault.storage.s3 import S3BlobStore

    name = f"policy {policy.policy_id} {policy.version}"
    if not isinstance(store, S3BlobStore) or not store.lock_days:
        raise ConfigurationError(
            f"{name} sets retention.write_once: true, which needs the S3 Object Lock store: set "
            "CALLVAULT_STORAGE_URL to an s3:// bucket created with Object Lock and add lock_days=N "
            f"(at least {required_lock_days(policy)}); the store configured now is {store!r}")
    need = required_lock_days(policy)
    if store.lock_days < need:
        raise ConfigurationError(
            f"{name} keeps recordings at least {policy.retention.min_age_months} months "
            f"(retention.min_age_months) on write-once storage, but the store's lock_days={store.lock_days} "
            f"would let a blob be deleted sooner; set lock_days to at least {need}")


def check_at_start(db: Database, store: BlobStore, *, clock: Clock = system_clock) -> None:
    """Refuse to start (ConfigurationError) when the policy in force needs write-once storage ``store`` is not.
    A database without a policy yet has nothing to check."""
    from callvault.policy import service as policy_service

    with db.unit_of_work() as session:
        try:
            policy = policy_service.current_policy(session, clock=clock)
        except ConfigurationError:
            return
    check_store(policy, store)
