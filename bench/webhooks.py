"""Outgoing webhook delivery rate through the outbox against bare HTTP posts, measured in the same run.

    .venv/bin/python -m bench.webhooks [--events N] [--database-url URL]

Queues ``events`` ``recording.saved`` events with ``emit`` (one outbox row each, 100 per
transaction, as ingest commits them), then lets ``deliver_due`` post them to a loopback receiver
that checks every HMAC-SHA-256 signature: claim (conditional UPDATE, committed), unwrap the secret,
sign, POST, record (committed). The reference is the same number of signed posts of the same bodies
with one ``httpx.Client`` and no database, to the same receiver. Prints both rates and the ratio: the
share of the HTTP rate the crash-safe outbox keeps (two commits per delivery are its price).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from callvault.cli.commands import initialise
from callvault.core.settings import load_settings
from callvault.integrations import signing
from callvault.integrations.webhooks_out import service as webhooks
from callvault.integrations.webhooks_out.emit import emit
from callvault.runtime import build_runtime

POLICY = Path(__file__).resolve().parents[1] / "examples" / "policies" / "policy-a.yaml"


class _Receiver:
    def __init__(self) -> None:
        self.secret = b""
        self.ok = 0
        self.bad = 0
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                stamp = self.headers.get("X-Callvault-Timestamp", "")
                good = hmac.compare_digest(
                    "sha256=" + hmac.new(owner.secret, stamp.encode() + b"." + raw, hashlib.sha256).hexdigest(),
                    self.headers.get("X-Callvault-Signature", ""))
                with owner.lock:
                    owner.ok += good
                    owner.bad += not good
                self.send_response(204 if good else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/in"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temporary data dir")
    args = parser.parse_args()
    receiver = _Receiver()
    with tempfile.TemporaryDirectory() as tmp:
        env = {"CALLVAULT_DATABASE_URL": args.database_url} if args.database_url else {}
        settings = load_settings(Path(tmp) / "data", env=env)
        initialise(settings, policy_file=POLICY, admin_user="admin", admin_password="bench-password-2026")
        runtime = build_runtime(settings)
        try:
            with runtime.db.unit_of_work() as session:
                created = webhooks.add_subscription(session, keyring=runtime.keyring, name="bench", url=receiver.url,
                                                    events=["recording.saved"], actor="bench")
            receiver.secret = created.secret.encode()
            start = time.perf_counter()
            for first in range(0, args.events, 100):
                with runtime.db.unit_of_work() as session:
                    for i in range(first, min(first + 100, args.events)):
                        emit(session, "recording.saved", {"recording_id": f"rec-{i}", "call_id": f"call-{i}"})
            queued = time.perf_counter() - start
            start = time.perf_counter()
            delivered = 0
            while delivered < args.events:
                delivered += webhooks.deliver_due(runtime.db, runtime.keyring, limit=args.events)
            outbox_s = time.perf_counter() - start
            bodies = [json.dumps({"id": str(i), "type": "recording.saved", "data": {"recording_id": f"rec-{i}"}},
                                 separators=(",", ":")).encode() for i in range(args.events)]
            start = time.perf_counter()
            with httpx.Client(timeout=10) as client:
                for body in bodies:
                    stamp = str(int(time.time()))
                    client.post(receiver.url, content=body, headers={
                        "X-Callvault-Timestamp": stamp,
                        "X-Callvault-Signature": signing.sign(receiver.secret, stamp, body)}).raise_for_status()
            bare_s = time.perf_counter() - start
        finally:
            runtime.close()
            receiver.httpd.shutdown()
    backend = "postgresql" if args.database_url else "sqlite"
    result = {"events": args.events, "database": backend, "queue_rows_per_s": round(args.events / queued),
              "outbox_deliveries_per_s": round(args.events / outbox_s),
              "bare_signed_posts_per_s": round(args.events / bare_s),
              "ratio_outbox_to_bare": round(bare_s / outbox_s, 3), "signatures_verified": receiver.ok,
              "signatures_bad": receiver.bad}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
