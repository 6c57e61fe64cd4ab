"""Helpers for the import tests: PBX-like WAV files with a distinct tone per leg, and reading back what was stored."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import soundfile
from sqlalchemy import select

from callvault.capture.imports.models import PbxImport
from callvault.capture.imports.settings import PbxSettings
from callvault.core.clock import FixedClock, filesystem_now
from callvault.recordings.models import Recording
from callvault.recordings.playback import open_reader
from callvault.runtime import Runtime


def tone_wav(path: Path, *, freqs: tuple[float, ...], seconds: float = 2.0, rate: int = 8000,
             age: float | None = None) -> Path:
    """A PCM16 WAV with one sine per channel (``freqs[0]`` on the left), as a PBX would leave it; ``age``
    seconds ago on the disk's clock when given (the clock the importer measures quiet time on)."""
    t = np.arange(int(seconds * rate)) / rate
    audio = np.stack([0.4 * np.sin(2 * np.pi * f * t) for f in freqs], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, audio, rate, subtype="PCM_16")
    if age is not None:
        mtime = filesystem_now(path.parent) - age
        os.utime(path, (mtime, mtime))
    return path


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


@dataclass
class Stored:
    row: Recording
    audio: np.ndarray
    rate: int


def stored(runtime: Runtime, call_id: str) -> list[Stored]:
    """The recordings stored under ``call_id``, decrypted and checked against their SHA-256."""
    out = []
    with runtime.db.unit_of_work() as session:
        for row in session.scalars(select(Recording).where(Recording.call_id == call_id)):
            reader = open_reader(session, store=runtime.store, keyring=runtime.keyring, row=row)
            assert row.sha256 is not None
            reader.verify_sha256(row.sha256)
            audio, rate = soundfile.read(io.BytesIO(b"".join(reader.iter_all())), dtype="int16", always_2d=True)
            session.expunge(row)
            out.append(Stored(row, audio, rate))
    return out


def ledger(runtime: Runtime, root: Path) -> list[PbxImport]:
    with runtime.db.unit_of_work() as session:
        rows = list(session.scalars(select(PbxImport).where(PbxImport.root == str(root.absolute()))
                                    .order_by(PbxImport.rel_path)))
        for row in rows:
            session.expunge(row)
        return rows


def at(runtime: Runtime, when: datetime) -> Runtime:
    """The same runtime, with the clock fixed at ``when``."""
    return replace(runtime, clock=FixedClock(when))


def settings(**overrides: object) -> PbxSettings:
    base = PbxSettings(quiet_seconds=30, cdr_wait_seconds=600, retry_seconds=10)
    return replace(base, **overrides)  # type: ignore[arg-type]


def recent(tz: ZoneInfo, hour: int, minute: int = 0, second: int = 0, *, days_ago: int = 2) -> datetime:
    """A PBX-local moment ``days_ago`` days before today by the system clock (the product's, in these tests).

    Why not a fixed day: a call whose retention has already ended is refused on arrival (A3), so a test that
    imports a call must date it within every policy's cap, whatever day the suite runs on."""
    day = datetime.now(tz).date() - timedelta(days=days_ago)
    return datetime.combine(day, time(hour, minute, second), tzinfo=tz)


def cdr_time(moment: datetime) -> str:
    """As a CDR CSV writes it (PBX local time, no offset)."""
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def name_time(moment: datetime) -> str:
    """As a FreePBX recording's file name carries it."""
    return moment.strftime("%Y%m%d-%H%M%S")


def uniqueid(moment: datetime, seq: int | str) -> str:
    """An Asterisk UNIQUEID for a channel created at ``moment``: its epoch, a dot, a sequence number."""
    return f"{int(moment.timestamp())}.{seq}"
