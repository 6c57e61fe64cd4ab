"""Ingest throughput against the machine's raw crypto speed, measured in the same run.

    .venv/bin/python -m bench.ingest [--small] [--count N] [--minutes M] [--workers W] [--batch B]
                                     [--processes [--per-process T]] [--database-url URL] [--work-dir DIR]

Ingests ``count`` ten-minute stereo 8 kHz 16-bit WAV recordings (19.2 MB each) through the real
pipeline (metadata validation, audio probe, pending row, AES-256-GCM chunked encryption + SHA-256,
temp file + fsync + rename, key wrap, catalog row, audit entry) into a throw-away data directory,
then measures raw AES-256-GCM (64 KiB chunks) + SHA-256 over the same bytes in memory and the raw
durable write rate (64 KiB writes + fsync) of the same file system, and prints all three and the
ratios. Target: ratio >= 0.8 of raw crypto (#10; 0.5 in #2). Where the disk's durable write rate is below the
crypto rate, the disk bounds ingest (every recording is fsynced before it is acknowledged), so the
second ratio says how close ingest comes to what the hardware allows.

``--small`` (30-second calls) measures recordings/s twice in the same run: one ``ingest_recording``
per call (as uploads arrive, ``--workers`` at once) and the bulk path (``ingest_many`` in batches of
``--batch``, as ``callvault ingest FOLDER`` imports, ``--workers`` batches at once). Both do the same
per recording: its own admission, data key, fsynced blob and audit entry; the bulk path shares the
transactions. Single ingests that arrive together share their transactions too (group commit,
``capture.group_commit``), so the one-per-call figure grows with the uploads in flight: give
``--workers 32`` for a server busy enough to take 300 uploads/s (at ~100 ms an upload, Little's law
puts ~30 in flight). Target: >= 300 recordings/s.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import soundfile
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bench.catalog import fresh_runtime
from callvault.capture.ingest import IngestItem, IngestResult, ingest_many, ingest_recording
from callvault.core.settings import load_settings
from callvault.runtime import Runtime, build_runtime

RATE = 8000
CHUNK = 64 * 1024


def make_wav(path: Path, minutes: float) -> None:
    rng = np.random.default_rng(1)
    frames = int(minutes * 60 * RATE)
    data = (rng.standard_normal((frames, 2)) * 3000).clip(-32768, 32767).astype(np.int16)
    soundfile.write(str(path), data, RATE, subtype="PCM_16", format="WAV")


def raw_crypto_rate(data: bytes, repeats: int) -> float:
    """MB/s of AES-256-GCM over 64 KiB chunks plus SHA-256 of the whole, in memory."""
    aead = AESGCM(AESGCM.generate_key(bit_length=256))
    view = memoryview(data)
    start = time.perf_counter()
    for _ in range(repeats):
        digest = hashlib.sha256()
        for index, offset in enumerate(range(0, len(data), CHUNK)):
            piece = view[offset:offset + CHUNK]
            digest.update(piece)
            aead.encrypt(index.to_bytes(12, "big"), piece, b"aad")
        digest.hexdigest()
    elapsed = time.perf_counter() - start
    return len(data) * repeats / elapsed / 1e6


def raw_durable_write_rate(data: bytes, directory: Path, repeats: int) -> float:
    """MB/s of writing the same bytes to ``directory`` in 1 MiB writes with one fsync per file."""
    view = memoryview(data)
    start = time.perf_counter()
    for r in range(repeats):
        path = directory / f"raw-{r}.bin"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for offset in range(0, len(data), 1 << 20):
                os.write(fd, view[offset:offset + (1 << 20)])
            os.fsync(fd)
        finally:
            os.close(fd)
    elapsed = time.perf_counter() - start
    for r in range(repeats):
        (directory / f"raw-{r}.bin").unlink()
    return len(data) * repeats / elapsed / 1e6


def raw_pipeline_rate(data: bytes, directory: Path, repeats: int) -> float:
    """MB/s of the least a durable encrypted store must do, in one thread: AES-256-GCM (64 KiB chunks) and
    SHA-256 of the bytes, the ciphertext written in 1 MiB writes to a new file on ``directory``, one fsync.

    Why beside the other two: on tmpfs (``--work-dir /dev/shm``) writing is not a separate device that
    runs beside the CPU but a copy into freshly allocated pages by the same cores, so its cost adds to
    the crypto's instead of overlapping it; this is the reference for the pipeline there."""
    aead = AESGCM(AESGCM.generate_key(bit_length=256))
    view = memoryview(data)
    start = time.perf_counter()
    for r in range(repeats):
        digest = hashlib.sha256()
        path = directory / f"pipe-{r}.bin"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            batch: list[bytes] = []
            for index, offset in enumerate(range(0, len(data), CHUNK)):
                piece = view[offset:offset + CHUNK]
                digest.update(piece)
                batch.append(aead.encrypt(index.to_bytes(12, "big"), piece, b"aad"))
                if len(batch) == 16:
                    os.write(fd, b"".join(batch))
                    batch = []
            os.write(fd, b"".join(batch))
            os.fsync(fd)
        finally:
            os.close(fd)
        digest.hexdigest()
    elapsed = time.perf_counter() - start
    for r in range(repeats):
        (directory / f"pipe-{r}.bin").unlink()
    return len(data) * repeats / elapsed / 1e6


_worker_runtime: list[Runtime] = []


def _process_start(data_dir: str | None = None, env: dict[str, str] | None = None) -> None:
    """Process pool initializer (a runtime of the process's own); called again with nothing, a no-op
    that tells the parent the process is up."""
    if data_dir is not None and not _worker_runtime:
        _worker_runtime.append(build_runtime(load_settings(Path(data_dir), env=env or {})))


def _process_ingest(wav: str, metadatas: list[str], threads: int) -> None:
    """Single ingests of ``metadatas`` in this process, ``threads`` at once (uploads in flight on one node)."""
    runtime = _worker_runtime[0]

    def one(metadata: str) -> None:
        ingest_recording(db=runtime.db, store=runtime.store, keyring=runtime.keyring, audio=Path(wav),
                         metadata=metadata, actor="bench")

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(one, metadatas))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=None, help="default 200 (1,000 with --small)")
    parser.add_argument("--minutes", type=float, default=None, help="default 10 (0.5 with --small)")
    parser.add_argument("--small", action="store_true", help="many 30-second calls: the recordings/s case")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="concurrent ingests (default: one per core)")
    parser.add_argument("--processes", action="store_true",
                        help="one-per-call ingests in --workers processes instead of threads of one process: "
                             "each server process (`serve --workers N`) has its own interpreter and GIL")
    parser.add_argument("--per-process", type=int, default=1,
                        help="with --processes: concurrent uploads in each process (default 1); concurrent "
                             "uploads of one process share their transactions (capture.group_commit)")
    parser.add_argument("--batch", type=int, default=None,
                        help="also measure bulk ingest in batches of this many (default 100 with --small, else off)")
    parser.add_argument("--database-url", default=None, help="default: SQLite in the temp data dir")
    parser.add_argument("--work-dir", default=None, help="where the data dir goes (default: the system temp dir); "
                        "e.g. /dev/shm to take the disk out of the measurement")
    args = parser.parse_args()
    if args.count is None:
        args.count = 1000 if args.small else 200
    if args.minutes is None:
        args.minutes = 0.5 if args.small else 10.0
    if args.batch is None:
        args.batch = 100 if args.small else 0

    with fresh_runtime(args.database_url, args.work_dir) as (runtime, root):
        settings = runtime.settings
        env = {"CALLVAULT_DATABASE_URL": settings.database_url}  # what each --processes worker opens
        wav = root / "call.wav"
        make_wav(wav, args.minutes)
        size = wav.stat().st_size
        started = datetime.now(UTC) - timedelta(days=1)  # recent: a call past its retention is refused (A3)

        def meta_for(i: int) -> str:
            return json.dumps({
                "call_id": f"bench-{i}", "direction": "inbound", "started_at": started.isoformat(),
                "ended_at": (started + timedelta(minutes=args.minutes)).isoformat(), "extension": "2001",
                "agent": "alice", "team": "customer_support", "remote_number": "+14165550100",
                "consent": {"announcement_played_at": started.isoformat(), "announcement_version": "1"},
            })

        def ingest_one(i: int) -> None:
            ingest_recording(db=runtime.db, store=runtime.store, keyring=runtime.keyring, audio=wav,
                             metadata=meta_for(i), actor="bench")

        def one_per_call(first: int) -> float:
            """Seconds for ``count`` single ingests from ``first`` on: ``--workers`` threads of this process
            or, with ``--processes``, that many processes of their own (as ``serve --workers N`` runs)."""
            t0 = time.perf_counter()
            if args.processes:
                with ProcessPoolExecutor(max_workers=args.workers, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_process_start, initargs=(str(settings.data_dir), env)) as procs:
                    list(procs.map(_process_start, [None] * args.workers))  # start them before the clock runs
                    t0 = time.perf_counter()
                    step = args.per_process * 4  # a few rounds of the process's uploads per task
                    for future in [procs.submit(_process_ingest, str(wav),
                                                [meta_for(i) for i in range(n, min(n + step, first + args.count))],
                                                args.per_process)
                                   for n in range(first, first + args.count, step)]:
                        future.result()
                return time.perf_counter() - t0
            with ThreadPoolExecutor(max_workers=args.workers) as pool:
                for future in [pool.submit(ingest_one, i) for i in range(first, first + args.count)]:
                    future.result()
            return time.perf_counter() - t0

        def ingest_batch(first: int) -> None:
            items = [IngestItem(wav, meta_for(i)) for i in range(first, min(first + args.batch, 2 * args.count))]
            outcomes = ingest_many(db=runtime.db, store=runtime.store, keyring=runtime.keyring, items=items,
                                   actor="bench")
            for outcome in outcomes:
                if not (isinstance(outcome, IngestResult) and outcome.created):
                    raise RuntimeError(f"bulk ingest did not store a recording: {outcome!r}")

        # Concurrent uploads, as a server receives them: one ingest per worker (thread or process).
        elapsed = one_per_call(0)
        bulk_elapsed = None
        if args.batch > 0:  # the same number again, new call ids, through the bulk path
            t0 = time.perf_counter()
            with ThreadPoolExecutor(max_workers=args.workers) as pool:
                for future in [pool.submit(ingest_batch, first)
                               for first in range(args.count, 2 * args.count, args.batch)]:
                    future.result()
            bulk_elapsed = time.perf_counter() - t0

        data = wav.read_bytes()
        repeats = max(3, min(20, args.count // 10))
        reference = raw_crypto_rate(data, repeats=repeats)
        disk = raw_durable_write_rate(data, root, repeats=max(10, args.count // 4))
        pipeline = raw_pipeline_rate(data, root, repeats=max(3, min(20, args.count // 10)))

    total_mb = size * args.count / 1e6
    ingest_rate = total_mb / elapsed
    print(f"database:        {settings.database_url.split('://')[0]}")
    print(f"workers:         {args.workers} {'processes' if args.processes else 'threads'}"
          f"{f' x {args.per_process} concurrent uploads' if args.processes else ' (concurrent uploads)'}")
    print(f"recordings:      {args.count} x {args.minutes:g} min stereo 8 kHz WAV ({size / 1e6:.1f} MB each)")
    print(f"ingest:          {args.count / elapsed:.2f} recordings/s, {ingest_rate:.0f} MB/s ({elapsed:.1f} s)"
          f"{' one per call' if bulk_elapsed is not None else ''}")
    if bulk_elapsed is not None:
        print(f"bulk ingest:     {args.count / bulk_elapsed:.2f} recordings/s, {total_mb / bulk_elapsed:.0f} MB/s "
              f"({bulk_elapsed:.1f} s) ingest_many, batches of {args.batch}")
    print(f"raw AES-GCM+SHA: {reference:.0f} MB/s (same bytes, in memory, this run)")
    print(f"raw write+fsync: {disk:.0f} MB/s (same bytes, 1 MiB writes, same file system, this run)")
    print(f"raw crypto+write: {pipeline:.0f} MB/s (AES-GCM+SHA-256+write+fsync, one thread, same file system, "
          f"this run): ratio {ingest_rate / pipeline:.2f}")
    bound = min(reference, disk)
    print(f"ratio:           {ingest_rate / reference:.2f} of raw crypto (target >= 0.8, #10); "
          f"{ingest_rate / bound:.2f} of the slower of crypto and durable write")


if __name__ == "__main__":
    main()
