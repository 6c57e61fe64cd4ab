"""A real HTTP endpoint on loopback that receives callvault's webhooks the way a customer's would:
it verifies each signature with the shared secret and can be told to fail the first deliveries."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol, Self


@dataclass
class Received:
    event_type: str
    delivery_id: str
    timestamp: str
    body: dict[str, Any]
    signature_ok: bool


@dataclass
class Receiver:
    secret: bytes = b""
    fail_first: int = 0
    """Answer 500 to this many deliveries before accepting."""
    received: list[Received] = field(default_factory=list)
    refused: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, headers: Any, raw: bytes) -> int:
        stamp = headers.get("X-Callvault-Timestamp", "")
        expected = "sha256=" + hmac.new(self.secret, stamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
        ok = hmac.compare_digest(expected, headers.get("X-Callvault-Signature", ""))
        with self._lock:
            if self.refused < self.fail_first:
                self.refused += 1
                return 500
            self.received.append(Received(headers.get("X-Callvault-Event", ""), headers.get("X-Callvault-Delivery", ""),
                                          stamp, json.loads(raw), ok))
        return 204 if ok else 401

    def of_type(self, event_type: str) -> list[Received]:
        return [r for r in self.received if r.event_type == event_type]


class _PostHandling(Protocol):
    def handle(self, headers: Any, raw: bytes) -> int: ...


class LoopbackPostServer:
    """A loopback HTTP server (a free port) that hands every POST to ``owner.handle(headers, body)`` and
    answers its status with no body: the stand-in for a receiver callvault posts to. ``url`` ends in ``path``."""

    def __init__(self, owner: _PostHandling, path: str) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = owner.handle(self.headers, raw)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)


class ReceiverServer(LoopbackPostServer):
    def __init__(self, receiver: Receiver) -> None:
        super().__init__(receiver, "/hooks/callvault")
