"""PBX recording folders → recordings, through an idempotent ledger (``pbx_imports``).

Two passes, both safe on any number of nodes at once and after a crash at any point:

* **scan** walks a folder without following links, checks every name (``names``), and records each
  ``.wav`` in the ledger under a stable identity (hash of flavour, root and path bytes). A file is
  *complete* when the PBX's post-recording hook said so (``mark_done``: ``callvault capture pbx-done``)
  or when its size and mtime have not changed for ``quiet_seconds`` (quiescence).
* **import** claims one complete row at a time (``FOR UPDATE SKIP LOCKED`` / conditional UPDATE; a claim
  older than the lease is taken over), reads the file once (``O_NOFOLLOW``, regular files only),
  correlates it with its CDR (``cdr``; a CDR that has not arrived yet is retried until
  ``cdr_wait_seconds``, then ``cdr_missing``), builds the metadata (``orient``) and runs the normal
  ingest pipeline (admission, encryption, audit). ``call_id`` is ``asterisk:<UNIQUEID>`` /
  ``freeswitch:<uuid>``, which ingest treats idempotently: a crash after the recording was stored
  but before the ledger said so re-runs into "already stored, same audio" and is marked imported.
* The plaintext source is deleted only after the ledger row says ``imported`` (committed); a crash
  between the two is finished by the next scan.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import io
import logging
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import soundfile
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from callvault.audit import service as audit
from callvault.capture.admission import NotRecordable
from callvault.capture.audio import probe_audio
from callvault.capture.imports.cdr import CdrIndex, read_cdr
from callvault.capture.imports.models import ImportState, PbxImport
from callvault.capture.imports.names import (
    AUDIO_SUFFIXES,
    name_problem,
    parse_name,
    printable,
    relative_problem,
    within_root,
)
from callvault.capture.imports.orient import Internal, build_metadata
from callvault.capture.imports.settings import FLAVOURS, PbxSettings
from callvault.capture.ingest import ingest_recording
from callvault.core.clock import Clock, filesystem_now
from callvault.core.errors import Conflict, InvalidInput, NotFound
from callvault.core.ids import new_id
from callvault.identity import service as identity
from callvault.identity.models import User
from callvault.recordings.models import Recording, RecordingState

if TYPE_CHECKING:
    from callvault.runtime import Runtime

log = logging.getLogger("callvault.capture.imports")

CLAIM_LEASE = timedelta(minutes=15)
MAX_DEPTH = 8
MAX_ATTEMPTS = 10
TERMINAL = (ImportState.IMPORTED, ImportState.REFUSED, ImportState.REJECTED, ImportState.CDR_MISSING,
            ImportState.FAILED)


@dataclass
class ImportSummary:
    """What one pass did, by outcome (for the CLI and the job's count)."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, outcome: str) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1

    @property
    def handled(self) -> int:
        return sum(self.counts.values())


def path_key(flavour: str, root: bytes, rel: bytes) -> str:
    return hashlib.sha256(flavour.encode() + b"\0" + root + b"\0" + rel).hexdigest()


def _root_bytes(root: Path) -> bytes:
    return os.path.abspath(os.fsencode(root)).rstrip(b"/") or b"/"


def _walk(
    root: bytes, rel: bytes, depth: int, max_name: int,
) -> Iterator[tuple[bytes, str | None, os.stat_result | None]]:
    """(relative path, problem or None, lstat) for each candidate; never enters a link or a refused folder."""
    try:
        entries = list(os.scandir(os.path.join(root, rel) if rel else root))
    except OSError as exc:
        log.warning("cannot list %s: %s", printable(os.path.join(root, rel)), exc.strerror)
        return
    for entry in entries:
        name = entry.name
        child = os.path.join(rel, name) if rel else name
        problem = name_problem(name, max_name_bytes=max_name)
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        is_audio = name.endswith(AUDIO_SUFFIXES)
        if stat.S_ISLNK(info.st_mode):
            yield child, "symbolic link (never followed)", info
        elif stat.S_ISDIR(info.st_mode):
            if problem is not None:
                yield child, f"folder refused: {problem}", info
            elif depth < MAX_DEPTH:
                yield from _walk(root, child, depth + 1, max_name)
        elif is_audio or (problem is not None and b".wav" in name.lower()):
            if problem is None and not stat.S_ISREG(info.st_mode):
                problem = "not a regular file"
            yield child, problem, info


def scan_folder(
    runtime: Runtime, *, flavour: str, root: Path, cdr_file: Path | None, settings: PbxSettings,
) -> ImportSummary:
    """Record every recording file under ``root`` in the ledger; mark complete ones ``ready``."""
    if flavour not in FLAVOURS:
        raise InvalidInput(f"--flavour must be one of {', '.join(FLAVOURS)}")
    root_b = _root_bytes(root)
    if not os.path.isdir(root_b) or os.path.islink(root_b):
        raise NotFound(f"{root} is not a folder (or is a symbolic link)")
    summary, seen = ImportSummary(), set()
    now = runtime.clock.now()
    disk_now = filesystem_now(root_b)  # a file's quiet time is on the share's clock (it may be the PBX's)
    for rel, problem, info in _walk(root_b, b"", 0, settings.max_name_bytes):
        key = path_key(flavour, root_b, rel)
        seen.add(key)
        size = info.st_size if info else 0
        mtime_ns = info.st_mtime_ns if info else 0
        if problem is None and size > settings.max_file_bytes:
            problem = f"file is {size} bytes (limit {settings.max_file_bytes})"
        try:
            _observe(runtime, key=key, flavour=flavour, root_b=root_b, rel=rel, problem=problem, size=size,
                     mtime_ns=mtime_ns, cdr_file=cdr_file, settings=settings, summary=summary, now=now,
                     disk_now=disk_now)
        except SAIntegrityError:  # another node recorded the same new file a moment ago: it is in the ledger
            continue
    with runtime.db.unit_of_work() as session:  # a crash between unlink and its flag: the file is gone, say so
        for row in session.scalars(select(PbxImport).where(
                PbxImport.root == os.fsdecode(root_b), PbxImport.flavour == flavour,
                PbxImport.state.in_((ImportState.IMPORTED, ImportState.REFUSED)),
                PbxImport.source_deleted.is_(False))):
            if row.path_key not in seen and settings.delete_source:
                row.source_deleted, row.updated_at = True, now
    return summary


def _observe(runtime: Runtime, *, key: str, flavour: str, root_b: bytes, rel: bytes, problem: str | None,
             size: int, mtime_ns: int, cdr_file: Path | None, settings: PbxSettings, summary: ImportSummary,
             now: datetime, disk_now: float) -> None:
    """One file's ledger row: insert it, or move it along (waiting → ready; imported → source deleted)."""
    clock = runtime.clock
    with runtime.db.unit_of_work() as session:
        row = session.scalar(select(PbxImport).where(PbxImport.path_key == key))
        if row is None:
            quiet = disk_now - mtime_ns / 1e9 >= settings.quiet_seconds
            state = ImportState.REJECTED if problem else (ImportState.READY if quiet else ImportState.WAITING)
            parsed = None if problem else parse_name(flavour, printable(rel).rsplit("/", 1)[-1], settings.timezone)
            session.add(PbxImport(
                id=new_id(), path_key=key, flavour=flavour, root=os.fsdecode(root_b), rel_path=printable(rel),
                uniqueid=parsed.uniqueid if parsed else None,
                cdr_file=str(cdr_file) if cdr_file else None, state=state, reason=problem or "", size=size,
                mtime_ns=mtime_ns, first_seen_at=now, changed_at=now, next_attempt_at=now, updated_at=now))
            summary.add("rejected" if problem else "seen")
            if problem:
                _audit_rejected(session, rel=printable(rel), root=os.fsdecode(root_b), reason=problem,
                                clock=clock)
            return
        if cdr_file is not None and row.cdr_file != str(cdr_file):
            row.cdr_file = str(cdr_file)
        if row.state == ImportState.WAITING:
            if (row.size, row.mtime_ns) != (size, mtime_ns):
                row.size, row.mtime_ns, row.changed_at, row.updated_at = size, mtime_ns, now, now
            elif (now - row.changed_at).total_seconds() >= settings.quiet_seconds:
                row.state, row.updated_at, row.next_attempt_at = ImportState.READY, now, now
        elif row.state == ImportState.CDR_MISSING and cdr_file is not None:
            row.state, row.next_attempt_at, row.changed_at, row.updated_at = ImportState.READY, now, now, now
        elif row.state == ImportState.IMPORTED and (row.size, row.mtime_ns) != (size, mtime_ns) \
                and not row.reason:
            row.reason = ("a file appeared again at this path after it was imported; it was not imported "
                          "again (check the PBX's naming)")
            row.updated_at = now
        elif row.state in (ImportState.IMPORTED, ImportState.REFUSED) and settings.delete_source \
                and (row.size, row.mtime_ns) == (size, mtime_ns):  # imported, then a crash before the unlink
            row.source_deleted = _delete_source(root_b, rel, settings)
            row.updated_at = now


def _audit_rejected(session: Any, *, rel: str, root: str, reason: str, clock: Clock) -> None:
    audit.append(session, audit.AuditEvent(
        actor="pbx-import", action="capture.import_quarantined", decision="deny", object_type="file",
        object_id=rel[:200], reason=reason, details={"root": root[:300]}), clock=clock)


def _delete_source(root_b: bytes, rel: bytes, settings: PbxSettings) -> bool:
    if relative_problem(root_b, rel, max_name_bytes=settings.max_name_bytes) is not None:
        return False
    try:
        os.unlink(os.path.join(root_b, rel))
    except FileNotFoundError:
        return True
    except OSError as exc:
        log.warning("could not delete imported source %s: %s", printable(rel), exc.strerror)
        return False
    return True


def mark_done(runtime: Runtime, *, path: bytes, settings: PbxSettings, flavour: str | None = None,
              root: Path | None = None, cdr_file: Path | None = None) -> str:
    """The PBX's post-recording hook: ``path`` is complete. Returns the ledger row id (then import it)."""
    folders = [(flavour, root, cdr_file)] if root is not None else [
        (f.flavour, f.root, f.cdr_file) for f in settings.folders]
    for fl, folder_root, cdr in folders:
        assert folder_root is not None
        rel = within_root(folder_root, path)
        if rel is None:
            continue
        root_b = _root_bytes(folder_root)
        problem = relative_problem(root_b, rel, max_name_bytes=settings.max_name_bytes)
        if problem is None and not rel.endswith(AUDIO_SUFFIXES):
            problem = "not a .wav file"
        now = runtime.clock.now()
        info = None if problem else os.lstat(os.path.join(root_b, rel))
        if info is not None and not stat.S_ISREG(info.st_mode):
            problem = "not a regular file"
        key = path_key(fl or "asterisk", root_b, rel)
        try:
            with runtime.db.unit_of_work() as session:
                row = session.scalar(select(PbxImport).where(PbxImport.path_key == key))
                if row is None:
                    row = PbxImport(id=new_id(), path_key=key, flavour=fl or "asterisk", root=os.fsdecode(root_b),
                                    rel_path=printable(rel), cdr_file=str(cdr) if cdr else None,
                                    state=ImportState.REJECTED if problem else ImportState.READY,
                                    reason=problem or "", size=info.st_size if info else 0,
                                    mtime_ns=info.st_mtime_ns if info else 0, completed_by_hook=True,
                                    first_seen_at=now, changed_at=now, next_attempt_at=now, updated_at=now)
                    session.add(row)
                    if problem:
                        _audit_rejected(session, rel=printable(rel), root=row.root, reason=problem,
                                        clock=runtime.clock)
                elif row.state == ImportState.WAITING and info is not None:
                    row.state, row.completed_by_hook, row.updated_at = ImportState.READY, True, now
                    row.next_attempt_at = now
                    row.size, row.mtime_ns = info.st_size, info.st_mtime_ns
                return row.id
        except SAIntegrityError:  # a concurrent scan inserted it first: mark that row
            with runtime.db.unit_of_work() as session:
                row = session.scalar(select(PbxImport).where(PbxImport.path_key == key))
                assert row is not None
                if row.state == ImportState.WAITING:
                    row.state, row.completed_by_hook, row.updated_at = ImportState.READY, True, now
                    row.next_attempt_at = now
                return row.id
    raise InvalidInput(f"{printable(path)} is not inside a configured PBX folder (CALLVAULT_PBX_FOLDERS)")


def mark_done_by_id(runtime: Runtime, *, uniqueid: str, settings: PbxSettings) -> list[str]:
    """The hook without a file name (safer: MixMonitor's command runs in a shell, and FreePBX names carry
    caller ids): scan the configured folders, then mark the files of this UNIQUEID/uuid complete."""
    if not uniqueid or len(uniqueid) > 100 or not all(c.isalnum() or c in ".-" for c in uniqueid):
        raise InvalidInput(f"{uniqueid!r} is not an Asterisk UNIQUEID or FreeSWITCH uuid")
    if not settings.folders:
        raise InvalidInput("no PBX folders are configured (CALLVAULT_PBX_FOLDERS)")
    for folder in settings.folders:
        scan_folder(runtime, flavour=folder.flavour, root=folder.root, cdr_file=folder.cdr_file, settings=settings)
    now = runtime.clock.now()
    with runtime.db.unit_of_work() as session:
        wanted = uniqueid.lower() if "-" in uniqueid else uniqueid  # FreeSWITCH uuids are stored lower-case
        rows = list(session.scalars(select(PbxImport).where(PbxImport.uniqueid == wanted)))
        for row in rows:
            row.completed_by_hook = True
            if row.state == ImportState.WAITING:
                row.state, row.updated_at, row.next_attempt_at = ImportState.READY, now, now
        if not rows:
            raise NotFound(f"no recording file for {uniqueid} in the configured PBX folders")
        return [row.id for row in rows]


def _claimable(now: datetime) -> Any:
    return or_(PbxImport.state.in_((ImportState.READY, ImportState.WAITING_CDR)) & (PbxImport.next_attempt_at <= now),
               (PbxImport.state == ImportState.IMPORTING) & (PbxImport.claimed_at < now - CLAIM_LEASE))


def claim_next(runtime: Runtime, *, root: str | None = None, row_id: str | None = None) -> str | None:
    now = runtime.clock.now()
    with runtime.db.unit_of_work() as session:
        query = select(PbxImport.id).where(_claimable(now))
        if root is not None:
            query = query.where(PbxImport.root == root)
        if row_id is not None:
            query = query.where(PbxImport.id == row_id)
        found = session.scalar(query.order_by(PbxImport.first_seen_at).limit(1).with_for_update(skip_locked=True))
        if found is None:
            return None
        result = session.execute(update(PbxImport).where(PbxImport.id == found, _claimable(now)).values(
            state=ImportState.IMPORTING, claimed_at=now, attempts=PbxImport.attempts + 1, updated_at=now))
        return found if result.rowcount == 1 else None  # type: ignore[attr-defined]


def _finish(runtime: Runtime, row_id: str, state: str, reason: str = "", **values: Any) -> str:
    now = runtime.clock.now()
    with runtime.db.unit_of_work() as session:
        row = session.get(PbxImport, row_id)
        if row is not None and row.state == ImportState.IMPORTING:
            row.state, row.reason, row.updated_at, row.claimed_at = state, reason[:2000], now, None
            for name, value in values.items():
                setattr(row, name, value)
    return state


def _read_source(root_b: bytes, rel: bytes, settings: PbxSettings) -> tuple[bytes, os.stat_result]:
    """Read the file by walking down from the root with directory descriptors, ``O_NOFOLLOW`` at every step:
    a folder swapped for a link between the name check and the read cannot redirect us."""
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    parts = rel.split(b"/")
    fd = os.open(root_b, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        for part in parts[:-1]:
            child = os.open(part, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | nofollow, dir_fd=fd)
            os.close(fd)
            fd = child
        child = os.open(parts[-1], os.O_RDONLY | nofollow | getattr(os, "O_NONBLOCK", 0), dir_fd=fd)
        os.close(fd)
        fd = child
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InvalidInput("not a regular file")
        if info.st_size > settings.max_file_bytes:
            raise InvalidInput(f"file is {info.st_size} bytes (limit {settings.max_file_bytes})")
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = fh.read(settings.max_file_bytes + 1)
        return data, info
    finally:
        os.close(fd)


def channel_swap_needed(flavour: str, direction: str, channels: int, settings: PbxSettings) -> bool:
    """FreeSWITCH RECORD_STEREO puts the recorded (A) leg on the left. Ours is left = remote party:
    an inbound A leg is the caller (as is); an outbound A leg is the agent (swap). RECORD_STEREO_SWAP flips it."""
    if flavour != "freeswitch" or channels != 2:
        return False
    return (direction == "outbound") != settings.freeswitch_stereo_swap


def _swapped(data: bytes) -> io.BytesIO:
    audio, rate = soundfile.read(io.BytesIO(data), dtype="int16", always_2d=True)
    out = io.BytesIO()
    soundfile.write(out, np.ascontiguousarray(audio[:, ::-1]), rate, format="WAV", subtype="PCM_16")
    out.seek(0)
    return out


def import_row(runtime: Runtime, row_id: str, *, settings: PbxSettings, cdr_cache: dict[str, CdrIndex],
               user_for: Callable[[str | None], User | None]) -> str:
    """Import one claimed row; returns its new state. Never raises for a bad file (the ledger says why)."""
    with runtime.db.unit_of_work() as session:
        row = session.get(PbxImport, row_id)
        if row is None:
            return "gone"
        flavour, root, rel_text, cdr_file = row.flavour, row.root, row.rel_path, row.cdr_file
        known = (row.size, row.mtime_ns)
        changed_at = row.changed_at
    root_b, rel = os.fsencode(root), rel_text.encode("utf-8")
    problem = relative_problem(root_b, rel, max_name_bytes=settings.max_name_bytes)
    if problem is not None:
        if problem.startswith("cannot be examined"):
            return _finish(runtime, row_id, ImportState.FAILED, f"the file disappeared before it was imported "
                                                                f"({problem})")
        return _finish(runtime, row_id, ImportState.REJECTED, problem)
    try:
        data, info = _read_source(root_b, rel, settings)
    except InvalidInput as exc:
        return _finish(runtime, row_id, ImportState.REJECTED, exc.message)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # replaced by a link after it was checked
            return _finish(runtime, row_id, ImportState.REJECTED, "symbolic link (never followed)")
        return _finish(runtime, row_id, ImportState.FAILED, f"cannot read the file: {exc.strerror}")
    now = runtime.clock.now()
    if (info.st_size, info.st_mtime_ns) != known and known != (0, 0) and not _was_hook(runtime, row_id):
        return _finish(runtime, row_id, ImportState.WAITING, "still being written",
                       size=info.st_size, mtime_ns=info.st_mtime_ns, changed_at=now)
    name = parse_name(flavour, rel_text.rsplit("/", 1)[-1], settings.timezone)
    if name is None:
        what = "FreeSWITCH uuid" if flavour == "freeswitch" else "Asterisk UNIQUEID"
        return _finish(runtime, row_id, ImportState.REJECTED, f"the file name carries no {what}, so the call "
                                                               "cannot be identified")
    try:
        info_audio = probe_audio(io.BytesIO(data))
    except InvalidInput as exc:
        return _finish(runtime, row_id, ImportState.REJECTED, exc.message)
    rows = []
    if cdr_file:
        if cdr_file not in cdr_cache:
            cdr_cache[cdr_file] = read_cdr(Path(cdr_file), flavour=flavour, tz=settings.timezone)
        rows = cdr_cache[cdr_file].find(name.uniqueid, rel_text.rsplit("/", 1)[-1])
        if not rows:
            waited = (now - changed_at).total_seconds()
            if waited >= settings.cdr_wait_seconds:
                return _finish(runtime, row_id, ImportState.CDR_MISSING,
                               f"no CDR row for {name.uniqueid} in {cdr_file} after {int(waited)} s; the file was "
                               "left in place (run `callvault capture pbx scan ... --cdr FILE` to retry)")
            return _finish(runtime, row_id, ImportState.WAITING_CDR, f"waiting for the CDR row of {name.uniqueid}",
                           next_attempt_at=now + timedelta(seconds=settings.retry_seconds))
    elif flavour == "freeswitch":
        return _finish(runtime, row_id, ImportState.FAILED, "FreeSWITCH files need a CDR CSV (mod_cdr_csv) for "
                                                             "their call details: configure one for this folder")
    try:
        meta = build_metadata(flavour=flavour, name=name, rows=rows, duration_seconds=info_audio.duration_seconds,
                              max_digits=settings.extension_max_digits, default_region=runtime.settings.default_region,
                              user_for=user_for)
    except InvalidInput as exc:
        return _finish(runtime, row_id, ImportState.REJECTED, f"{exc.message} {'; '.join(map(str, exc.problems))}")
    if isinstance(meta, Internal):
        with runtime.db.unit_of_work() as session:
            audit.append(session, audit.AuditEvent(
                actor=f"pbx-import:{flavour}", action="recording.not_stored", decision="deny", object_type="call",
                object_id=f"{flavour}:{name.uniqueid}", reason=meta.reason, clauses=("A1", "B1")),
                clock=runtime.clock)
        return _refused(runtime, row_id, meta.reason, root_b, rel, settings)
    audio = io.BytesIO(data)
    if channel_swap_needed(flavour, meta.direction, info_audio.channels, settings):
        audio = _swapped(data)
    sha = hashlib.sha256(data).hexdigest()
    try:
        result = ingest_recording(db=runtime.db, store=runtime.store, keyring=runtime.keyring, audio=audio,
                                  metadata=meta, actor=f"pbx-import:{flavour}", default_region=
                                  runtime.settings.default_region, clock=runtime.clock)
    except NotRecordable as exc:  # admission audited it; nothing stored
        return _refused(runtime, row_id, exc.message, root_b, rel, settings, call_id=meta.call_id)
    except InvalidInput as exc:
        return _finish(runtime, row_id, ImportState.REJECTED, exc.message, call_id=meta.call_id)
    except Conflict as exc:
        if _pending_ingest(runtime, meta.call_id):  # a crashed import of this call: the reaper clears it first
            return _finish(runtime, row_id, ImportState.READY, f"{exc.message} (an earlier attempt stopped half-way; "
                           "retried once the stale-ingest reaper has removed it)", call_id=meta.call_id,
                           next_attempt_at=now + timedelta(seconds=settings.retry_seconds))
        return _finish(runtime, row_id, ImportState.FAILED, exc.message, call_id=meta.call_id)
    except Exception as exc:  # storage or database trouble: retry later, the ledger keeps the file
        log.exception("import of %s failed; will retry", rel_text)
        attempts = _attempts(runtime, row_id)
        if attempts >= MAX_ATTEMPTS:
            return _finish(runtime, row_id, ImportState.FAILED, f"gave up after {attempts} attempts: {exc}")
        return _finish(runtime, row_id, ImportState.READY, f"attempt {attempts} failed: {exc}"[:500],
                       next_attempt_at=now + timedelta(seconds=settings.retry_seconds * attempts))
    _finish(runtime, row_id, ImportState.IMPORTED, "", recording_id=result.recording_id, call_id=meta.call_id,
            sha256=sha)
    if settings.delete_source and _delete_source(root_b, rel, settings):
        with runtime.db.unit_of_work() as session:
            done = session.get(PbxImport, row_id)
            if done is not None:
                done.source_deleted = True
    return ImportState.IMPORTED


def _refused(runtime: Runtime, row_id: str, reason: str, root_b: bytes, rel: bytes, settings: PbxSettings,
             call_id: str | None = None) -> str:
    """Not recordable: the ledger says so, and the PBX's plaintext copy goes too (it must not be kept either)."""
    _finish(runtime, row_id, ImportState.REFUSED, reason, call_id=call_id)
    if settings.delete_source and _delete_source(root_b, rel, settings):
        with runtime.db.unit_of_work() as session:
            row = session.get(PbxImport, row_id)
            if row is not None:
                row.source_deleted = True
    return ImportState.REFUSED


def _pending_ingest(runtime: Runtime, call_id: str) -> bool:
    with runtime.db.unit_of_work() as session:
        return session.scalar(select(Recording.id).where(Recording.call_id == call_id,
                                                         Recording.state == RecordingState.PENDING)) is not None


def _was_hook(runtime: Runtime, row_id: str) -> bool:
    with runtime.db.unit_of_work() as session:
        row = session.get(PbxImport, row_id)
        return bool(row and row.completed_by_hook)


def _attempts(runtime: Runtime, row_id: str) -> int:
    with runtime.db.unit_of_work() as session:
        row = session.get(PbxImport, row_id)
        return row.attempts if row else 0


def import_ready(runtime: Runtime, *, settings: PbxSettings, root: Path | None = None, row_id: str | None = None,
                 limit: int = 500) -> ImportSummary:
    """Import every complete row (of ``root``, or one row) that is due; returns the outcomes."""
    summary, user_for = ImportSummary(), functools.partial(identity.user_with_extension, runtime.db)
    cache: dict[str, CdrIndex] = {}
    root_text = os.fsdecode(_root_bytes(root)) if root is not None else None
    for _ in range(limit):
        claimed = claim_next(runtime, root=root_text, row_id=row_id)
        if claimed is None:
            break
        summary.add(import_row(runtime, claimed, settings=settings, cdr_cache=cache, user_for=user_for))
    return summary


def ledger_counts(runtime: Runtime, *, root: Path | None = None) -> dict[str, int]:
    from sqlalchemy import func

    with runtime.db.unit_of_work() as session:
        query = select(PbxImport.state, func.count()).group_by(PbxImport.state)
        if root is not None:
            query = query.where(PbxImport.root == os.fsdecode(_root_bytes(root)))
        return {state: int(n) for state, n in session.execute(query)}
