"""Uploads per second through the HTTP API: 30-second calls posted one per request, as a PBX pushes them.

    .venv/bin/python -m bench.uploads [--body raw|multipart] [--clients 32] [--seconds 8] [--server-workers 2]
                                      [--database-url URL]

Starts ``--server-workers`` single-process ``callvault serve`` nodes on loopback (the deploy/ layout)
over a fresh data directory, then ``wrk`` keeps ``--clients`` connections busy posting
``POST /api/v1/recordings`` (a 30 s stereo 8 kHz WAV of 0.96 MB and its metadata, every request a
new ``call_id``) for ``--seconds``, split evenly across the nodes. ``--body raw`` (the default) sends
the WAV as the body with the metadata in the ``Callvault-Metadata`` header; ``--body multipart`` sends
the form. Each upload goes the whole way: admission, data key, AES-256-GCM, fsynced blob, two commits and an
audit entry, answered 201 only after the final commit; uploads in flight together share their
transactions (``capture.group_commit``). Afterwards every answered upload must be an available
recording.

Reference in the same run: the same number of recordings through the bulk path in one process
(``ingest_many``, batches of 100, two at a time, as ``callvault ingest FOLDER`` runs), with no HTTP.
Target (#10, ``--small``): >= 300 recordings/s.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from bench.catalog import fresh_runtime
from bench.http import run_wrk, serve_nodes
from bench.ingest import make_wav
from callvault.capture.ingest import IngestItem, IngestResult, ingest_many
from callvault.identity import service as identity
from callvault.policy import service as policy_service
from callvault.recordings.models import Recording, RecordingState

BOUNDARY = "cvbench7f3a9e"
STARTED = datetime.now(UTC) - timedelta(days=1)
"""The calls' start: recent, as a call past its retention is refused on arrival (A3)."""

UPLOAD_SCRIPT = """
local f = assert(io.open("%(wav)s", "rb"))
local audio = f:read("*a")
f:close()
local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
%(body)s
local n = 0
request = function()
  n = n + 1
  local meta = '%(meta_head)s' .. "node%(node)d-t" .. tid .. "-" .. n .. '%(meta_tail)s'
  return upload(meta)
end
"""
"""wrk's script: every request a new call_id (node, wrk thread, count); ``body`` defines ``upload(meta)``."""

BODIES = {
    "raw": """
upload = function(meta)
  local headers = {["Authorization"] = "Bearer %(token)s", ["Content-Type"] = "audio/wav",
                   ["Callvault-Metadata"] = meta}
  return wrk.format("POST", "/api/v1/recordings", headers, audio)
end""",
    "multipart": """
local head = '--%(boundary)s\\r\\nContent-Disposition: form-data; name="metadata"\\r\\n\\r\\n'
local middle = '\\r\\n--%(boundary)s\\r\\nContent-Disposition: form-data; name="audio"; filename="call.wav"\\r\\n'
  .. 'Content-Type: audio/wav\\r\\n\\r\\n'
local tail = '\\r\\n--%(boundary)s--\\r\\n'
local headers = {["Authorization"] = "Bearer %(token)s",
                 ["Content-Type"] = "multipart/form-data; boundary=%(boundary)s"}
upload = function(meta)
  return wrk.format("POST", "/api/v1/recordings", headers, head .. meta .. middle .. audio .. tail)
end""",
}


def _metadata(call_id: str) -> dict[str, object]:
    return {"call_id": call_id, "direction": "inbound", "started_at": STARTED.isoformat(),
            "ended_at": (STARTED + timedelta(seconds=30)).isoformat(), "extension": "2001", "agent": "alice",
            "team": "customer_support", "remote_number": "+14165550100",
            "consent": {"announcement_played_at": STARTED.isoformat(), "announcement_version": "1"}}


def _script(node: int, wav: Path, token: str, body: str) -> str:
    marker = "@@CALL@@"
    head, tail = json.dumps(_metadata(marker)).split(marker)
    values = {"wav": wav, "boundary": BOUNDARY, "token": token, "node": node, "meta_head": head, "meta_tail": tail}
    return UPLOAD_SCRIPT % {**values, "body": BODIES[body] % values}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--body", choices=tuple(BODIES), default="raw",
                        help="the audio as the body with a metadata header, or a multipart form")
    parser.add_argument("--clients", type=int, default=32, help="uploads in flight (wrk connections)")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--server-workers", type=int, default=os.cpu_count() or 1, help="serve nodes")
    parser.add_argument("--database-url", default=None, help="default: SQLite in the temp data dir")
    args = parser.parse_args()
    with fresh_runtime(args.database_url) as (runtime, root):
        settings = runtime.settings
        with runtime.db.unit_of_work() as session:
            policy = policy_service.current_policy(session)
            admin = identity.get_user(session, "admin")
            identity.acknowledge_policy(session, user=admin, policy=policy)
            token = identity.issue_token(session, user=admin, ttl_seconds=3600).token
        wav = root / "call.wav"
        make_wav(wav, 0.5)
        size_mb = wav.stat().st_size / 1e6

        with serve_nodes(runtime, [1] * args.server_workers) as bases:
            done, p50, p99 = run_wrk(bases, lambda node: _script(node, wav, token, args.body), args.clients,
                                     args.seconds, threads_per_node=1)
        with runtime.db.read_only() as session:
            stored = session.scalar(select(func.count()).select_from(Recording)
                                    .where(Recording.state == RecordingState.AVAILABLE)) or 0
        if stored < done:
            raise SystemExit(f"{done} uploads were answered 2xx but only {stored} recordings are available")

        # The reference: as many recordings again through the bulk path, in this process, no HTTP.
        def batch(first: int) -> None:
            items = [IngestItem(wav, _metadata(f"bulk-{i}")) for i in range(first, min(first + 100, done))]
            for outcome in ingest_many(db=runtime.db, store=runtime.store, keyring=runtime.keyring, items=items,
                                       actor="bench"):
                if not (isinstance(outcome, IngestResult) and outcome.created):
                    raise SystemExit(f"bulk ingest did not store a recording: {outcome!r}")

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(batch, range(0, done, 100)))
        bulk_rate = done / (time.perf_counter() - started)

    rate = done / args.seconds
    print(f"database:  {settings.database_url.split('://')[0]}; {args.server_workers} serve node(s); "
          f"{args.clients} uploads in flight (wrk); {args.body} body; "
          f"30 s stereo 8 kHz WAV, {size_mb:.2f} MB each")
    print(f"uploads:   {rate:8.1f} recordings/s over HTTP ({done} answered in {args.seconds:g} s, {stored} stored: "
          "those still in flight when wrk stopped were stored too), "
          f"p50 {p50:.0f} ms, p99 {p99:.0f} ms per upload")
    print(f"reference: {bulk_rate:8.1f} recordings/s bulk ingest_many in one process, same run "
          f"(ratio {rate / bulk_rate:.2f})")
    print("target:    >= 300 recordings/s")


if __name__ == "__main__":
    main()
