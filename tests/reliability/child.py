"""The process the crash harness kills: ``python -m tests.reliability.child MODE DATA_DIR DB_URL ARGS``.

It builds its own runtime, prints ``READY``, waits for ``GO`` on stdin (so the parent's kill timer
starts after the imports), then works, printing ``ACK …`` after every durable step the product
acknowledges (an ingest that returned, a sweep that returned, a send pass that returned).

Modes:
  ingest JOBS.jsonl   ingest each job ({"call_id", "audio", "meta"}) in turn; ``ACK call_id rec_id``
  ingest_many JOBS.jsonl   the same jobs in one ``ingest_many`` batch; an ACK per job once it returns
  sweep NOW_ISO       one retention sweep (batch size 1) as of NOW; ``ACK swept N``
  mail PORT           send the outbox to the SMTP server on 127.0.0.1:PORT; ``ACK sent N``
  serve PORT          ``callvault serve`` on 127.0.0.1:PORT (uvicorn, as deployed); ``LISTENING`` once it
                      accepts connections, then it serves until killed (tests/reliability/crash_upload.py)
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path


def main(argv: list[str]) -> None:
    mode, data_dir, db_url, arg = argv
    from callvault.core.clock import FixedClock, system_clock
    from callvault.core.settings import load_settings
    from callvault.runtime import build_runtime

    settings = load_settings(Path(data_dir), env={"CALLVAULT_DATABASE_URL": db_url})
    clock = FixedClock(datetime.fromisoformat(arg)) if mode == "sweep" else system_clock
    runtime = build_runtime(settings, clock=clock)
    print("READY", flush=True)
    if sys.stdin.readline().strip() != "GO":
        return
    if mode == "ingest":
        from callvault.capture.ingest import ingest_recording

        for line in Path(arg).read_text().splitlines():
            job = json.loads(line)
            result = ingest_recording(db=runtime.db, store=runtime.store, keyring=runtime.keyring,
                                      audio=Path(job["audio"]), metadata=json.dumps(job["meta"]).encode(),
                                      actor="crash-harness", actor_role="admin")
            print(f"ACK {job['call_id']} {result.recording_id}", flush=True)
    elif mode == "ingest_many":
        from callvault.capture.ingest import IngestItem, IngestResult, ingest_many

        jobs = [json.loads(line) for line in Path(arg).read_text().splitlines()]
        outcomes = ingest_many(db=runtime.db, store=runtime.store, keyring=runtime.keyring,
                               items=[IngestItem(Path(job["audio"]), json.dumps(job["meta"]).encode()) for job in jobs],
                               actor="crash-harness", actor_role="admin")
        for job, outcome in zip(jobs, outcomes, strict=True):
            assert isinstance(outcome, IngestResult), outcome
            print(f"ACK {job['call_id']} {outcome.recording_id}", flush=True)
    elif mode == "sweep":
        from callvault.retention.sweep import sweep

        swept = sweep(db=runtime.db, store=runtime.store, keyring=runtime.keyring, clock=clock, batch_size=1)
        print(f"ACK swept {swept.destroyed}", flush=True)
    elif mode == "mail":
        from callvault.notify.service import SmtpSettings, send_due

        sent = send_due(runtime.db, SmtpSettings(host="127.0.0.1", port=int(arg), sender="cv@example.test"))
        print(f"ACK sent {sent}", flush=True)
    elif mode == "serve":
        _serve(runtime, int(arg))
    print("DONE", flush=True)
    runtime.close()


def _serve(runtime: object, port: int) -> None:
    """Serve the API until killed (the parent's SIGKILL is the point of the exercise)."""
    import threading
    import time

    import uvicorn

    from callvault.api.app import create_app

    server = uvicorn.Server(uvicorn.Config(create_app(runtime), host="127.0.0.1", port=port,  # type: ignore[arg-type]
                                           log_level="warning", lifespan="off", proxy_headers=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:  # uvicorn offers no event to wait on; its own flag, checked briefly
        if not thread.is_alive():
            raise SystemExit("the server did not start")
        time.sleep(0.01)
    print("LISTENING", flush=True)
    thread.join()


if __name__ == "__main__":
    main(sys.argv[1:])
