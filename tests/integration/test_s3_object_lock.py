"""RELIABILITY scenario 12: WORM cannot be shortened. Recordings written through ``lock_days`` go to
the object store in Object Lock compliance mode (SeaweedFS here, a real S3 server that enforces it);
nobody holding the store's admin credentials can delete the locked version, shorten its retention,
or switch it to governance mode and bypass it. What callvault's own delete does on such a store:
S3 hides the object behind a delete marker and keeps the locked version (logged)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from callvault.storage.blobstore import open_blobstore
from callvault.storage.s3 import S3BlobStore
from tests.support.s3server import ACCESS_KEY, SECRET_KEY, S3Server, start_s3_server

CREDS = {"CALLVAULT_S3_ACCESS_KEY": ACCESS_KEY, "CALLVAULT_S3_SECRET_KEY": SECRET_KEY}
BUCKET = "callvault-worm"


@pytest.fixture(scope="module")
def worm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3BlobStore]:
    server: S3Server = start_s3_server(tmp_path_factory.mktemp("seaweed-worm"))
    try:
        built = open_blobstore(server.url(BUCKET, "recordings", part_mb="5", lock_days="1"), CREDS)
        assert isinstance(built, S3BlobStore) and built.lock_days == 1
        built.client.create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)
        yield built
    finally:
        server.stop()


def _refused(call: Callable[[], Any]) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    return str(caught.value.response["Error"]["Code"])


@pytest.mark.parametrize("size", [1000, 6 * 1024 * 1024], ids=["single-put", "multipart"])
def test_a_locked_recording_cannot_be_deleted_or_have_its_retention_shortened(
        worm: S3BlobStore, size: int, caplog: pytest.LogCaptureFixture) -> None:
    key = f"ab/cd/locked-{size}.cva"
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    with worm.writer(key) as sink:
        sink.write(body)
    s3, obj = worm.client, f"recordings/{key}"
    retention = s3.get_object_retention(Bucket=BUCKET, Key=obj)["Retention"]
    assert retention["Mode"] == "COMPLIANCE"
    until = retention["RetainUntilDate"].astimezone(UTC)
    assert timedelta(hours=23) < until - datetime.now(UTC) <= timedelta(days=1)
    version = s3.head_object(Bucket=BUCKET, Key=obj)["VersionId"]

    # What an administrator (or root credentials) would try, straight against the store:
    assert _refused(lambda: s3.delete_object(Bucket=BUCKET, Key=obj, VersionId=version)) == "AccessDenied"
    assert _refused(lambda: s3.delete_object(Bucket=BUCKET, Key=obj, VersionId=version,
                                             BypassGovernanceRetention=True)) == "AccessDenied"
    shorter = {"Mode": "COMPLIANCE", "RetainUntilDate": datetime.now(UTC) + timedelta(hours=1)}
    assert _refused(lambda: s3.put_object_retention(Bucket=BUCKET, Key=obj, VersionId=version,
                                                    Retention=shorter)) == "AccessDenied"
    governance = {"Mode": "GOVERNANCE", "RetainUntilDate": datetime.now(UTC) + timedelta(hours=1)}
    assert _refused(lambda: s3.put_object_retention(Bucket=BUCKET, Key=obj, VersionId=version,
                                                    BypassGovernanceRetention=True,
                                                    Retention=governance)) == "AccessDenied"
    assert s3.get_object_retention(Bucket=BUCKET, Key=obj)["Retention"]["RetainUntilDate"].astimezone(UTC) == until

    # callvault's own delete (retention sweep, erasure): hidden, but the locked version stays, and it says so.
    caplog.set_level(logging.INFO, logger="callvault.storage.s3")
    worm.delete(key)
    assert not worm.exists(key)
    assert any("Object Lock keeps its ciphertext" in r.getMessage() for r in caplog.records)
    kept = s3.get_object(Bucket=BUCKET, Key=obj, VersionId=version)["Body"].read()
    assert kept == body
    # Extending is allowed: a legal hold on top of the lock is always possible.
    longer = {"Mode": "COMPLIANCE", "RetainUntilDate": until + timedelta(days=30)}
    s3.put_object_retention(Bucket=BUCKET, Key=obj, VersionId=version, Retention=longer)
