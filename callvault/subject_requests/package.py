"""The package a requester downloads: their audio files and a manifest, zipped while it streams.

Nothing is written to disk or held whole in memory: each recording is decrypted chunk by chunk
(``recordings.playback``) straight into a zip written to an unseekable sink, whose bytes are handed to
the response as they are produced. The audio's SHA-256 taken at ingest is checked as it streams; a
mismatch breaks the download rather than deliver altered audio.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from callvault.core.errors import IntegrityError
from callvault.recordings import playback
from callvault.storage.blobstore import BlobStore
from callvault.storage.crypto import EncryptedBlobReader
from callvault.storage.keys import Keyring
from callvault.subject_requests.service import Release

PARTY_TEXT = {"caller": "you called us", "callee": "we called you", "operator": "you were our operator"}


class _Sink:
    """A write-only, unseekable file: zipfile then writes data descriptors instead of seeking back."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        return data


def file_name(index: int, started_at: datetime, recording_id: str, audio_format: str) -> str:
    return f"{index:03d}_{started_at:%Y%m%d-%H%M%S}_{recording_id[:8]}.{audio_format}"


def manifest_rows(release: Release) -> list[dict[str, object]]:
    zone = ZoneInfo(release.request.timezone)
    rows: list[dict[str, object]] = []
    for i, item in enumerate(release.items, start=1):
        rec = item.recording
        rows.append({
            "file": file_name(i, rec.started_at, rec.id, rec.audio_format),
            "recording_id": rec.id,
            "started_at_utc": rec.started_at.isoformat(),
            "started_at_local": rec.started_at.astimezone(zone).isoformat(),
            "duration_seconds": round(rec.duration_seconds, 3),
            "direction": rec.direction,
            "your_party": item.party,
            "your_party_meaning": PARTY_TEXT.get(item.party, item.party),
            "your_number": rec.remote_number if item.party != "operator" else None,
            "our_number": rec.local_number,
            "sha256": rec.sha256,
        })
    return rows


def open_readers(session: Session, *, store: BlobStore, keyring: Keyring,
                 release: Release) -> list[EncryptedBlobReader]:
    """Unwrap each recording's key now (inside the transaction); decryption happens while streaming."""
    return [playback.open_reader(session, store=store, keyring=keyring, row=item.recording)
            for item in release.items]


def stream_zip(release: Release, readers: list[EncryptedBlobReader]) -> Iterator[bytes]:
    sink = _Sink()
    rows = manifest_rows(release)
    with zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for item, reader, row in zip(release.items, readers, rows, strict=True):
            digest = hashlib.sha256()
            info = zipfile.ZipInfo(str(row["file"]), date_time=item.recording.started_at.timetuple()[:6])
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, mode="w", force_zip64=True) as entry:
                for block in reader.iter_all():
                    digest.update(block)
                    entry.write(block)
                    chunk = sink.take()
                    if chunk:
                        yield chunk
            if item.recording.sha256 and digest.hexdigest() != item.recording.sha256:
                raise IntegrityError(f"recording {item.recording.id} does not match its SHA-256; download stopped")
        manifest = {
            "request": release.request.id,
            "generated_for": "the person who made this request",
            "time_zone": release.request.timezone,
            "recordings": rows,
            "no_longer_held": release.missing,
        }
        archive.writestr("manifest.json", json.dumps(manifest, indent=2, default=str))
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(rows[0]) if rows else ["file"])
        writer.writeheader()
        writer.writerows(rows)
        archive.writestr("manifest.csv", text.getvalue())
    yield sink.take()
