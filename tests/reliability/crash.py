"""The crash scenarios (ingest, retention sweep, mail sender, a sweep after a restore), parametrised by trial
count; the HTTP server's is in crash_upload.py."""

from __future__ import annotations

import json
import re
import shutil
import uuid
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from callvault.core.clock import FixedClock, system_clock
from callvault.notify import service as notify
from callvault.notify.models import OutboxMail, OutboxState
from callvault.recordings.models import Recording, RecordingState
from callvault.retention import shred
from callvault.storage.blobstore import LocalBlobStore
from callvault.transcription import engines, search
from callvault.transcription import service as transcription
from callvault.transcription.models import TranscriptTerm
from tests.reliability.harness import Killer, Tally, assert_chain_intact
from tests.support.audio import metadata, wav_bytes
from tests.support.backup import backed_up
from tests.support.retention import T, World
from tests.support.smtp import MailSink

RECORDINGS_PER_CHILD = 4


def _write_jobs(world: World, folder: Path, trial: int, sources: dict[str, bytes]) -> Path:
    """A jobs file of RECORDINGS_PER_CHILD calls of varied length (0.5 s to 8 s of stereo 8 kHz)."""
    lines = []
    for i in range(RECORDINGS_PER_CHILD):
        call_id = f"crash-{trial}-{i}-{uuid.uuid4().hex[:6]}"
        audio = wav_bytes(0.5 + (trial * 7 + i * 3) % 16 / 2, seed=trial * 10 + i)
        path = folder / f"{call_id}.wav"
        path.write_bytes(audio)
        sources[call_id] = audio
        lines.append(json.dumps({"call_id": call_id, "audio": str(path), "meta": metadata(call_id=call_id)}))
    jobs = folder / f"jobs-{trial}.jsonl"
    jobs.write_text("\n".join(lines) + "\n")
    return jobs


def repair_and_check_ingest(world: World, sources: dict[str, bytes], acked: dict[str, str]) -> Counter[str]:
    """The repair pass (``callvault check --repair --older-than-minutes 0``), then every invariant."""
    db, store = world.runtime.db, world.runtime.store
    code, output = world.cli("check", "--repair", "--older-than-minutes", "0")
    assert code == 0, output
    match = re.search(r"removed (\d+) incomplete ingest\(s\) and (\d+) half-written", output)
    assert match, output
    found: Counter[str] = Counter(reaped=int(match[1]), temp_files_removed=int(match[2]))
    with db.unit_of_work() as session:
        rows = list(session.scalars(select(Recording)))
    assert not [r.id for r in rows if r.state == RecordingState.PENDING], "pending rows survived the repair pass"
    by_call = {r.call_id: r for r in rows}
    available = {r.blob_key for r in rows if r.state == RecordingState.AVAILABLE}
    blobs = set(store.iter_keys())
    assert blobs == available, f"orphan blobs {blobs - available}, missing blobs {available - blobs}"
    if isinstance(store, LocalBlobStore):
        assert not list((store.root / ".tmp").iterdir()), "temporary files survived the repair pass"
    for call_id, rec_id in acked.items():
        row = by_call.get(call_id)
        assert row is not None and row.id == rec_id, f"acknowledged recording {rec_id} ({call_id}) is gone"
    for row in rows:  # acknowledged or not: whatever is available must be complete and bit-exact
        assert world.audio(row.id) == sources[row.call_id], f"{row.id} does not play back bit-exact"
    found["available"] = len(rows)
    found["unacknowledged_but_complete"] = len([r for r in rows if r.call_id not in acked])
    return found


def crash_ingest(world: World, work: Path, *, trials: int, seed: int, mode: str = "ingest") -> Tally:
    """``mode``: ``ingest`` (one ``ingest_recording`` per job) or ``ingest_many`` (all jobs in one batch)."""
    tally = Tally(f"kill -9 during {mode}")
    killer = Killer(world.settings.data_dir, world.settings.database_url, seed=seed)
    sources: dict[str, bytes] = {}
    acked: dict[str, str] = {}
    try:
        jobs = [_write_jobs(world, work, t, sources) for t in range(trials)]
        for trial in range(trials):
            if trial + 1 < trials:
                killer.prepare(mode, str(jobs[trial + 1]))
            lines, killed = killer.run(mode, str(jobs[trial]))
            for line in lines:
                if line.startswith("ACK "):
                    _, call_id, rec_id = line.split()
                    acked[call_id] = rec_id
            tally.trials += 1
            tally.killed += killed
            tally.finished += not killed
            found = repair_and_check_ingest(world, sources, acked)
            tally.counts["reaped"] += found["reaped"]
            tally.counts["temp_files_removed"] += found["temp_files_removed"]
        tally.counts["acknowledged"] = len(acked)
        tally.counts["available"] = found["available"]
        tally.counts["audit_entries"] = assert_chain_intact(world.runtime.db)
    finally:
        killer.close()
    return tally


def crash_sweep(world: World, *, trials: int, seed: int) -> Tally:
    """Each trial: 3 calls due (7 months old at the sweep's NOW) and 1 not yet due; kill the sweep, rerun it."""
    tally = Tally("kill -9 during the retention sweep")
    killer = Killer(world.settings.data_dir, world.settings.database_url, seed=seed)
    ids: dict[str, datetime] = {}
    try:
        for trial in range(trials):
            start = T + timedelta(days=250 * trial)
            for i in range(3):
                ids[world.ingest(started=start + timedelta(minutes=i), seed=i)] = start
            young = start + timedelta(days=120)
            ids[world.ingest(started=young, seed=9)] = young
            now = (start + timedelta(days=215)).isoformat()
            _lines, killed = killer.run("sweep", now)
            tally.trials += 1
            tally.killed += killed
            tally.finished += not killed
            after_kill = Counter(_state(world, rec_id) for rec_id, when in ids.items() if when >= start)
            tally.counts.update({f"after_kill_{k}": v for k, v in after_kill.items()})
            killer.run("sweep", now, kill=False)  # the rerun (the next worker pass)
            for rec_id, started in ids.items():
                state = world.intact_or_fully_destroyed(rec_id)
                due = started + timedelta(days=190) <= start + timedelta(days=215)  # 6 months < 190 days
                assert state == ("destroyed" if due else "intact"), f"{rec_id}: {state}, due={due}"
                if state == "destroyed":
                    assert not world.playable(rec_id)
        tally.counts["recordings"] = len(ids)
        tally.counts["destroyed"] = sum(world.row(r).state == RecordingState.DESTROYED for r in ids)
        tally.counts["audit_entries"] = assert_chain_intact(world.runtime.db)
    finally:
        killer.close()
    return tally


def _state(world: World, rec_id: str) -> str:
    """After a kill: intact, destroyed, or in between (key listed or destroyed, not yet finished)."""
    row = world.row(rec_id)
    if row.state == RecordingState.DESTROYED:
        return "destroyed"
    return "intact" if world.playable(rec_id) else "half_done_until_rerun"


def crash_mail(world: World, sink: MailSink, *, trials: int, seed: int, per_trial: int = 5) -> Tally:
    """Each trial queues mails, kills the sender mid-send, then a later pass (after STALE_SENDING) sends the rest."""
    tally = Tally("kill -9 during mail sending")
    killer = Killer(world.settings.data_dir, world.settings.database_url, seed=seed)
    try:
        for trial in range(trials):
            with world.runtime.db.unit_of_work() as session:
                for i in range(per_trial):
                    notify.enqueue(session, to=f"user{i}@example.test", subject=f"trial {trial} mail {i}",
                                   body="something happened", clock=system_clock)
            _lines, killed = killer.run("mail", str(sink.port))
            tally.trials += 1
            tally.killed += killed
            tally.finished += not killed
            later = FixedClock(system_clock.now() + notify.STALE_SENDING + timedelta(minutes=1))
            while notify.send_due(world.runtime.db, sink.settings, clock=later):
                pass
        with world.runtime.db.unit_of_work() as session:
            mails = list(session.scalars(select(OutboxMail)))
        received = Counter(r.message["X-Callvault-Outbox-Id"] for r in sink.received)
        for mail in mails:
            assert mail.state == OutboxState.SENT, f"mail {mail.id} left {mail.state}"
            assert received[mail.id] >= 1, f"mail {mail.id} was never delivered"
            if received[mail.id] > 1:
                assert mail.attempts > 1, f"mail {mail.id} delivered {received[mail.id]}x, outbox says 1 attempt"
                tally.counts["duplicates_recorded_in_outbox"] += 1
        tally.counts["mails"] = len(mails)
        tally.counts["deliveries"] = sum(received.values())
        tally.counts["retried_after_kill"] = sum(m.attempts > 1 for m in mails)
    finally:
        killer.close()
    return tally



class _Heard:
    """A transcription engine that hears the same words in every call (gives each call search terms)."""

    name = "scripted"

    def transcribe(self, samples: Any) -> list[engines.Segment]:
        words = ["please", "refund", "my", "blueberry", "order"]
        timed = tuple(engines.Word(w, i * 0.2, (i + 1) * 0.2) for i, w in enumerate(words))
        return [engines.Segment(0.0, len(words) * 0.2, " ".join(words), timed)]


def _transcribe(world: World, rec_id: str) -> None:
    """Through the worker's real path (queue, claim, process: sealed segments, search index)."""
    rt = world.runtime
    transcription.enqueue_safely(rt.db, engine="scripted")
    assert transcription.claim(rt.db, worker_id="w", recording_id=rec_id) == rec_id
    key = search.load_search_key(world.settings.key_dir, world.settings.env)
    assert transcription.process(db=rt.db, store=rt.store, keyring=rt.keyring, engine=_Heard(), recording_id=rec_id,
                                 worker_id="w", redact_card_data=True, search_key=key, clock=rt.clock) is not None


def _erase(world: World, rec_id: str) -> None:
    """Erase one call now (as a caller's erasure or "personal" does: not because retention ran out)."""
    rt = world.runtime
    with rt.db.unit_of_work() as session:
        row = session.get(Recording, rec_id)
        assert row is not None
        pending = shred.destroy_now(session, keyring=rt.keyring, doomed=[shred.Doomed.of(row, "erasure")],
                                    actor="crash-harness", clock=rt.clock)
    shred.finish(rt.db, rt.store, rt.keyring, pending, clock=rt.clock)


def _erased(world: World, rec_id: str) -> None:
    """Nothing of the call is readable or findable: no audio, no blob, no key, no caller's number, CRM link
    or consent details on the catalog row, no search terms, a destruction record."""
    row = world.row(rec_id)
    assert row.state == RecordingState.DESTROYED, f"{rec_id} came back: {row.state}"
    assert row.remote_number is None and row.crm_ref is None and not row.consent, f"{rec_id} keeps personal data"
    assert not world.has_key(rec_id) and not world.runtime.store.exists(row.blob_key), f"{rec_id}: key or blob back"
    assert not world.playable(rec_id)
    assert world.count(TranscriptTerm, TranscriptTerm.recording_id == rec_id) == 0, f"{rec_id}: search terms back"
    assert world.record(rec_id) is not None, f"{rec_id} has no destruction record"


def crash_restore_sweep(world: World, work: Path, *, trials: int, seed: int) -> Tally:
    """Scenario 21 under kill -9 (issue 24, finding 4). Each trial: 4 transcribed calls (2 due for retention
    at the sweep's NOW, 1 to be erased although not due, 1 kept); back up the database and the blobs; sweep
    and erase; restore the backup beside the current key directory (the erased calls' rows, search terms and
    blobs come back); then a sweep killed at a random point and its rerun. Every erased call must be erased
    again (``_erased``), the kept ones intact and playable."""
    tally = Tally("kill -9 during the retention sweep after a restore of an older backup")
    killer = Killer(world.settings.data_dir, world.settings.database_url, seed=seed)
    erased: list[str] = []
    kept: list[str] = []
    blobs = Path(world.settings.storage_url)
    try:
        for trial in range(trials):
            start = T + timedelta(days=250 * trial)
            due = [world.ingest(started=start + timedelta(minutes=i), seed=i,
                                remote_number="+1 416 555 0177") for i in range(2)]
            young = start + timedelta(days=120)
            gone, keep = (world.ingest(started=young + timedelta(minutes=i), seed=5 + i,
                                       remote_number="+1 416 555 0177") for i in range(2))
            for rec_id in (*due, gone, keep):
                _transcribe(world, rec_id)
            now = (start + timedelta(days=215)).isoformat()
            backup = work / f"blobs-{trial}"
            with backed_up(world) as restore:  # type: ignore[arg-type]  # a World has the settings and runtime it reads
                shutil.copytree(blobs, backup)
                killer.run("sweep", now, kill=False)
                _erase(world, gone)
                for rec_id in (*due, gone):
                    _erased(world, rec_id)
                restore()
                shutil.rmtree(blobs)
                shutil.copytree(backup, blobs)
            shutil.rmtree(backup)
            back = sum(world.count(TranscriptTerm, TranscriptTerm.recording_id == r) > 0 for r in (*due, gone))
            tally.counts["search_terms_restored"] += back
            _lines, killed = killer.run("sweep", now)
            tally.trials += 1
            tally.killed += killed
            tally.finished += not killed
            killer.run("sweep", now, kill=False)  # the rerun (the next worker pass)
            erased += [*due, gone]
            kept.append(keep)
            for rec_id in erased:
                _erased(world, rec_id)
            # This trial's kept call is not due; earlier trials' are by now, and the sweep destroys them whole.
            assert world.intact_or_fully_destroyed(keep) == "intact", f"{keep} should be kept"
            for rec_id in kept:
                world.intact_or_fully_destroyed(rec_id)
        tally.counts["erased_and_restored"] = len(erased)
        tally.counts["kept"] = len(kept)
        tally.counts["audit_entries"] = assert_chain_intact(world.runtime.db)
    finally:
        killer.close()
    return tally
