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
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


def demo_mailbox_dir(data_dir: Path) -> Path:
    """Where the demo keeps the mails it received (a Maildir)."""
    return data_dir / "demo-mailbox"


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
        """The settings that send the product's mail here (for the worker processes' environment)."""
        return {"CALLVAULT_SMTP_HOST": "127.0.0.1", "CALLVAULT_SMTP_PORT": str(self.port),
                "CALLVAULT_SMTP_STARTTLS": "0"}

    def messages(self) -> list[email.message.EmailMessage]:
        """Every mail received so far (also those of earlier demo runs), oldest first by file name."""
        box = mailbox.Maildir(self.folder, create=True)
        return [email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)
                for key in sorted(box.keys())]

    def close(self) -> None:
        self._controller.stop()
