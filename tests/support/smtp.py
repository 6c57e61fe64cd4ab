"""A real SMTP server for tests (aiosmtpd on 127.0.0.1, a free port) that keeps what it receives."""

from __future__ import annotations

import email
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller

from callvault.notify.service import SmtpSettings


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: Message


@dataclass
class MailSink:
    """Collects every mail; ``fail_next`` makes the next N deliveries fail with a 451."""

    received: list[Received] = field(default_factory=list)
    fail_next: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            if self.fail_next > 0:
                self.fail_next -= 1
                return "451 try again later"
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                          email.message_from_bytes(envelope.content)))
        return "250 OK"

    def to(self, address: str) -> list[Received]:
        return [r for r in self.received if address in r.recipients]

    @property
    def settings(self) -> SmtpSettings:
        return SmtpSettings(host="127.0.0.1", port=self.port, sender="callvault@example.test", timeout=10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def smtp_server() -> Iterator[MailSink]:
    sink = MailSink(port=_free_port())
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()
