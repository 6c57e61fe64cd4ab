"""The demo's mailbox: an SMTP server on loopback that keeps every mail the product sends.

Why: a demo whose verification codes, misuse reports and sample notices go to an SMTP server that is
not there shows half the product (issue 27). The demo starts this sink (aiosmtpd, in a thread of the
demo process) on a free loopback port and points ``CALLVAULT_SMTP_HOST``/``_PORT`` at it, so the
background workers send through the real outbox and SMTP code. Each mail is kept in a Maildir in the
demo's data directory (``demo-mailbox/``, readable with any mail client, e.g. ``mutt -f``) and one
line about it is printed on the console. Demo only: it accepts mail from anyone who can reach loopback.
"""

from __future__ import annotations

import email
import email.policy
import mailbox
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

MAILBOX_ENV = "CALLVAULT_DEMO_MAILBOX"
"""Set by ``callvault demo`` to the Maildir's path: the demo mode the mailbox page (``/admin/mailbox``)
answers in. An environment variable, not process memory, so every server process of the node agrees."""


def demo_mailbox_dir(data_dir: Path) -> Path:
    """Where the demo keeps the mails it received (a Maildir)."""
    return data_dir / "demo-mailbox"


def mailbox_in_use(env: Mapping[str, str]) -> Path | None:
    """The demo mailbox's folder when this process serves a demo; None otherwise (no page then)."""
    value = env.get(MAILBOX_ENV, "").strip()
    return Path(value) if value else None


@dataclass(frozen=True)
class MailSummary:
    """One line of the mailbox page."""

    key: str
    """The Maildir key: the mail's address on the page (``/admin/mailbox/{key}``)."""
    to: str
    subject: str
    received_at: datetime


@dataclass(frozen=True)
class MailView(MailSummary):
    """One mail opened: its text split into plain parts and links (``(text, is_link)``), so the page
    escapes the text and makes only the links clickable."""

    sender: str
    parts: list[tuple[str, bool]]


_LINK = re.compile(r"https?://[^\s<>\"']+[^\s<>\"'.,;:!?)\]]")


def _summary(key: str, message: mailbox.MaildirMessage) -> tuple[MailSummary, email.message.EmailMessage]:
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    received = datetime.fromtimestamp(message.get_date(), UTC)
    return MailSummary(key, str(parsed.get("To", "")), str(parsed.get("Subject", "(no subject)")), received), parsed


def list_mails(folder: Path) -> list[MailSummary]:
    """Every mail the demo mailbox received, newest first."""
    box = mailbox.Maildir(folder, create=True)
    mails = [_summary(key, box[key])[0] for key in box.keys()]  # noqa: SIM118 - iterating a Maildir yields messages
    return sorted(mails, key=lambda m: (m.received_at, m.key), reverse=True)


def read_mail(folder: Path, key: str) -> MailView | None:
    """One mail by its key; None when there is no such mail."""
    box = mailbox.Maildir(folder, create=True)
    try:
        message = box[key]
    except KeyError:
        return None
    summary, parsed = _summary(key, message)
    part = parsed.get_body(preferencelist=("plain", "html"))
    text = part.get_content() if part is not None else ""
    parts: list[tuple[str, bool]] = []
    at = 0
    for link in _LINK.finditer(text):
        parts += [(text[at:link.start()], False), (link.group(0), True)]
        at = link.end()
    parts.append((text[at:], False))
    return MailView(summary.key, summary.to, summary.subject, summary.received_at, str(parsed.get("From", "")),
                    [p for p in parts if p[0]])


class _Keep:
    """aiosmtpd handler: store the message in the Maildir, then tell ``announce``."""

    def __init__(self, folder: Path, announce: Callable[[str], None]) -> None:
        self._box = mailbox.Maildir(folder, create=True)
        self._announce = announce

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self._box.add(envelope.content)
        self._announce(f"mail to {', '.join(envelope.rcpt_tos)}: {message.get('Subject', '(no subject)')}")
        return "250 OK"


class DemoMailbox:
    """A running loopback SMTP sink (see the module docstring); ``close`` stops it."""

    def __init__(self, data_dir: Path, *, announce: Callable[[str], None] = print) -> None:
        self.folder = demo_mailbox_dir(data_dir)
        with socket.socket() as sock:  # a free port; aiosmtpd binds it right after
            sock.bind(("127.0.0.1", 0))
            self.port: int = sock.getsockname()[1]
        self._controller = Controller(_Keep(self.folder, announce), hostname="127.0.0.1", port=self.port)
        self._controller.start()

    @property
    def smtp_env(self) -> dict[str, str]:
        """The settings that send the product's mail here (for the worker processes' environment) and
        turn on the administrators' mailbox page (``MAILBOX_ENV``)."""
        return {"CALLVAULT_SMTP_HOST": "127.0.0.1", "CALLVAULT_SMTP_PORT": str(self.port),
                "CALLVAULT_SMTP_STARTTLS": "0", MAILBOX_ENV: str(self.folder)}

    def messages(self) -> list[email.message.EmailMessage]:
        """Every mail received so far (also those of earlier demo runs), oldest first by file name."""
        box = mailbox.Maildir(self.folder, create=True)
        return [email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)
                for key in sorted(box.keys())]

    def close(self) -> None:
        self._controller.stop()
