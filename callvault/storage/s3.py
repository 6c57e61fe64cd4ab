"""S3-compatible blob store (AWS S3, SeaweedFS, MinIO, Ceph RGW...), via boto3.

Only ciphertext ever reaches the object store (the chunked AEAD format of ``storage.crypto``).
Writes are atomic the S3 way: a multipart upload becomes visible only when completed, and an
exception aborts it, so a reader never sees half an object. Ranged GETs serve playback seeks.

Optional Object Lock (compliance mode) for record classes a regulator requires to be unalterable:
objects are written with a retain-until date, and the store refuses to delete them before it.
Erasure still works where the law allows it: destroying the wrapped data key makes the locked
ciphertext unreadable at once; ``delete`` only places a delete marker (the bucket is versioned), and
the locked version is removed by a bucket lifecycle rule for noncurrent versions once the lock
expires (configure one; callvault does not sweep them itself).

URL: ``s3://BUCKET[/PREFIX]?endpoint=URL&region=R&lock_days=N&part_mb=M``; credentials from
``CALLVAULT_S3_ACCESS_KEY``/``CALLVAULT_S3_SECRET_KEY`` (or ``*_FILE``), else boto3's own chain.
"""

from __future__ import annotations

import functools
import io
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, BinaryIO, cast
from urllib.parse import parse_qs, urlsplit

from callvault.core.errors import ConfigurationError, IntegrityError, NotFound
from callvault.core.settings import env_or_file
from callvault.storage.blobstore import validate_key

log = logging.getLogger(__name__)

MIN_PART = 5 * 1024 * 1024
DEFAULT_PART = 8 * 1024 * 1024


class _MultipartSink(io.RawIOBase):
    """A write-only file that streams into an S3 multipart upload, one part per ``part_size`` bytes."""

    def __init__(self, store: S3BlobStore, key: str) -> None:
        super().__init__()
        self._store = store
        self._key = key
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self.total = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._buffer += view
        self.total += len(view)
        while len(self._buffer) >= self._store.part_size:
            self._flush_part(bytes(self._buffer[: self._store.part_size]))
            del self._buffer[: self._store.part_size]
        return len(view)

    def _flush_part(self, body: bytes) -> None:
        if self._upload_id is None:
            created = self._store.client.create_multipart_upload(
                Bucket=self._store.bucket, Key=self._key, **self._store.lock_args())
            self._upload_id = created["UploadId"]
        number = len(self._parts) + 1
        part = self._store.client.upload_part(Bucket=self._store.bucket, Key=self._key,
                                              UploadId=self._upload_id, PartNumber=number, Body=body)
        self._parts.append({"ETag": part["ETag"], "PartNumber": number})

    def commit(self) -> None:
        """Make the object visible: one PUT for small blobs, else complete the multipart upload."""
        if self._upload_id is None:
            self._store.client.put_object(Bucket=self._store.bucket, Key=self._key, Body=bytes(self._buffer),
                                          **self._store.lock_args())
            return
        if self._buffer:
            self._flush_part(bytes(self._buffer))
            self._buffer.clear()
        self._store.client.complete_multipart_upload(
            Bucket=self._store.bucket, Key=self._key, UploadId=self._upload_id,
            MultipartUpload={"Parts": self._parts})

    def abort(self) -> None:
        if self._upload_id is not None:
            self._store.client.abort_multipart_upload(Bucket=self._store.bucket, Key=self._key,
                                                      UploadId=self._upload_id)


class S3BlobStore:
    """A ``BlobStore`` on an S3 bucket (see the module docstring)."""

    def __init__(self, *, client: Any, bucket: str, prefix: str = "", part_size: int = DEFAULT_PART,
                 lock_days: int | None = None) -> None:
        if part_size < MIN_PART:
            raise ConfigurationError(f"S3 part size must be at least {MIN_PART // (1024 * 1024)} MiB")
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.part_size = part_size
        self.lock_days = lock_days

    def __repr__(self) -> str:
        return f"S3BlobStore(bucket={self.bucket!r}, prefix={self.prefix!r})"

    def _object_key(self, key: str) -> str:
        key = validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def lock_args(self) -> dict[str, Any]:
        if not self.lock_days:
            return {}
        return {"ObjectLockMode": "COMPLIANCE",
                "ObjectLockRetainUntilDate": datetime.now(UTC) + timedelta(days=self.lock_days)}

    def writer(self, key: str) -> AbstractContextManager[BinaryIO]:
        return self._writer(self._object_key(key))

    @contextmanager
    def _writer(self, object_key: str) -> Iterator[BinaryIO]:
        sink = _MultipartSink(self, object_key)
        try:
            yield cast(BinaryIO, sink)
        except BaseException:
            sink.abort()
            raise
        sink.commit()

    def _error_code(self, exc: Exception) -> str:
        response = getattr(exc, "response", None) or {}
        return str(response.get("Error", {}).get("Code", ""))

    def ranged_reader(self, key: str) -> Callable[[int, int], bytes]:
        """One ranged GET per read (an object store holds nothing open); NotFound at the first read."""
        return functools.partial(self.read_at, key)

    def read_at(self, key: str, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise IntegrityError("negative read range")
        if length == 0:
            return b""
        from botocore.exceptions import ClientError

        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=self._object_key(key),
                                          Range=f"bytes={offset}-{offset + length - 1}")
        except ClientError as exc:
            code = self._error_code(exc)
            if code in ("NoSuchKey", "404", "NotFound"):
                raise NotFound(f"blob {key} does not exist") from exc
            if code == "InvalidRange":
                return b""
            raise ConfigurationError(f"object store refused a read of {key}: {code or exc}") from exc
        body: bytes = resp["Body"].read()
        return body

    def size(self, key: str) -> int:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._object_key(key))
        except ClientError as exc:
            if self._error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                raise NotFound(f"blob {key} does not exist") from exc
            raise ConfigurationError(f"object store refused to describe {key}: {self._error_code(exc)}") from exc
        return int(head["ContentLength"])

    def age(self, key: str) -> timedelta:
        """How long ago the object was last written, on the object store's own clock: its ``Date`` answer
        header less the object's ``LastModified`` (see ``LocalBlobStore.age``; this host's clock may differ)."""
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._object_key(key))
        except ClientError as exc:
            if self._error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                raise NotFound(f"blob {key} does not exist") from exc
            raise ConfigurationError(f"object store refused to describe {key}: {self._error_code(exc)}") from exc
        written: datetime = head["LastModified"]
        said = head.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        try:
            now = parsedate_to_datetime(said) if said else datetime.now(UTC)
        except (TypeError, ValueError):
            now = datetime.now(UTC)
        return max(timedelta(0), now - written)

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except NotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        answer = self.client.delete_object(Bucket=self.bucket, Key=self._object_key(key))
        if self.lock_days and answer.get("DeleteMarker"):
            # A locked bucket is versioned: the object is hidden, its locked version stays (by design).
            log.info("blob %s hidden by a delete marker; Object Lock keeps its ciphertext until its "
                     "retain-until date (a lifecycle rule for noncurrent versions removes it then)", key)

    def iter_keys(self) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        start = f"{self.prefix}/" if self.prefix else ""
        for page in paginator.paginate(Bucket=self.bucket, Prefix=start):
            for item in page.get("Contents", []):
                yield str(item["Key"])[len(start):]


def open_s3_blobstore(url: str, env: Mapping[str, str]) -> S3BlobStore:
    """Build an S3 store from an ``s3://`` URL (see the module docstring)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:  # pragma: no cover - boto3 is a dependency
        raise ConfigurationError("the S3 backend needs boto3: pip install boto3") from exc
    parts = urlsplit(url)
    bucket = parts.netloc
    if not bucket:
        raise ConfigurationError(f"S3 URL {url!r} names no bucket: use s3://BUCKET[/PREFIX]?endpoint=...")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = set(query) - {"endpoint", "region", "lock_days", "part_mb"}
    if unknown:
        raise ConfigurationError(f"S3 URL {url!r} has unknown option(s): {', '.join(sorted(unknown))}")
    try:
        lock_days = int(query["lock_days"]) if "lock_days" in query else None
        part_size = int(query.get("part_mb", DEFAULT_PART // (1024 * 1024))) * 1024 * 1024
    except ValueError as exc:
        raise ConfigurationError(f"S3 URL {url!r}: lock_days and part_mb must be whole numbers") from exc
    client = boto3.client(
        "s3",
        endpoint_url=query.get("endpoint"),
        region_name=query.get("region", "us-east-1"),
        aws_access_key_id=env_or_file(env, "CALLVAULT_S3_ACCESS_KEY"),
        aws_secret_access_key=env_or_file(env, "CALLVAULT_S3_SECRET_KEY"),
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3, "mode": "standard"}),
    )
    return S3BlobStore(client=client, bucket=bucket, prefix=parts.path, part_size=part_size, lock_days=lock_days)
