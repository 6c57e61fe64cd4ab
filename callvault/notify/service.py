"""Queueing mail in the outbox and sending it over SMTP.

Contract: ``enqueue`` writes a row in the caller's transaction, so a mail exists exactly when the
event that caused it was committed. ``send_due`` (the worker job) claims one row at a time with a
conditional ``UPDATE … WHERE state = 'pending'`` that must change exactly one row, commits the claim,
sends, then records the outcome. A worker killed between sending and recording leaves the row in
``sending``; after ``STALE_SENDING`` it is tried again with ``attempts`` incremented, so a mail is
never sent twice without the outbox saying so (attempts > 1).

Settings (environment or ``config.toml``-free, read from ``Settings.env``): ``CALLVAULT_SMTP_HOST``
(default localhost), ``CALLVAULT_SMTP_PORT`` (25), ``CALLVAULT_SMTP_FROM`` (callvault@localhost),
``CALLVAULT_SMTP_STARTTLS`` (0/1), ``CALLVAULT_SMTP_USERNAME``, ``CALLVAULT_SMTP_PASSWORD`` (or
``_FILE``), and ``CALLVAULT_MAIL_DOMAIN`` for users without an address of their own.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError as SqlIntegrityError
from sqlalchemy.orm import Session

from callvault.core.clock import Clock, system_clock
from callvault.core.db import Database
from callvault.core.errors import ConfigurationError
from callvault.core.ids import new_id
from callvault.notify.models import OutboxMail, OutboxState

log = logging.getLogger("callvault.notify")

MAX_ATTEMPTS = 8
STALE_SENDING = timedelta(minutes=10)


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "localhost"
    port: int = 25
    sender: str = "callvault@localhost"
    starttls: bool = False
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0
    mail_domain: str = "localhost"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SmtpSettings:
        port_text = env.get("CALLVAULT_SMTP_PORT", "25")
        try:
            port = int(port_text)
        except ValueError:
            raise ConfigurationError(f"CALLVAULT_SMTP_PORT must be a port number, not {port_text!r}") from None
        password = env.get("CALLVAULT_SMTP_PASSWORD")
        if not password and env.get("CALLVAULT_SMTP_PASSWORD_FILE"):
            try:
                password = Path(env["CALLVAULT_SMTP_PASSWORD_FILE"]).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigurationError(f"CALLVAULT_SMTP_PASSWORD_FILE cannot be read: {exc}") from exc
        return cls(
            host=env.get("CALLVAULT_SMTP_HOST", "localhost") or "localhost",
            port=port,
            sender=env.get("CALLVAULT_SMTP_FROM", "callvault@localhost") or "callvault@localhost",
            starttls=env.get("CALLVAULT_SMTP_STARTTLS", "0").lower() in ("1", "true", "yes"),
            username=env.get("CALLVAULT_SMTP_USERNAME") or None,
            password=password or None,
            mail_domain=env.get("CALLVAULT_MAIL_DOMAIN", "localhost") or "localhost",
        )


def address_for(username: str, email: str | None, smtp: SmtpSettings) -> str:
    """A user's mail address: their own if the account has one, else ``username@CALLVAULT_MAIL_DOMAIN``."""
    return email or f"{username}@{smtp.mail_domain}"


def enqueue(
    session: Session, *, to: str, subject: str, body: str, dedup_key: str | None = None,
    recipient_user: str | None = None, clock: Clock = system_clock,
) -> OutboxMail | None:
    """Queue one mail (the caller commits). With a ``dedup_key`` already queued, nothing is added."""
    if dedup_key is not None:
        existing = session.scalar(select(OutboxMail).where(OutboxMail.dedup_key == dedup_key))
        if existing is not None:
            return None
    now = clock.now()
    mail = OutboxMail(id=new_id(), dedup_key=dedup_key, recipient=to, recipient_user=recipient_user,
                      subject=subject[:300], body=body, state=OutboxState.PENDING, attempts=0, created_at=now,
                      next_attempt_at=now, last_error="")
    try:
        with session.begin_nested():
            session.add(mail)
            session.flush()
    except SqlIntegrityError:
        # Another transaction queued the same key between our check and insert.
        return None
    return mail


def _claim(db: Database, *, clock: Clock) -> OutboxMail | None:
    """Claim the next due mail for this worker; committed before anything is sent."""
    now = clock.now()
    with db.unit_of_work() as session:
        # Mails stuck in "sending" (a worker died mid-send) become due again; attempts shows it.
        session.execute(
            update(OutboxMail)
            .where(OutboxMail.state == OutboxState.SENDING, OutboxMail.claimed_at < now - STALE_SENDING)
            .values(state=OutboxState.PENDING, last_error="worker stopped while sending; may have been delivered")
        )
        candidates = list(session.scalars(
            select(OutboxMail.id)
            .where(OutboxMail.state == OutboxState.PENDING, OutboxMail.next_attempt_at <= now)
            .order_by(OutboxMail.next_attempt_at, OutboxMail.id).limit(10)
        ))
        for mail_id in candidates:
            result = session.execute(
                update(OutboxMail)
                .where(OutboxMail.id == mail_id, OutboxMail.state == OutboxState.PENDING)
                .values(state=OutboxState.SENDING, claimed_at=now, attempts=OutboxMail.attempts + 1)
            )
            if getattr(result, "rowcount", 0) == 1:
                mail = session.get(OutboxMail, mail_id)
                if mail is not None:
                    session.refresh(mail)
                    session.expunge(mail)
                return mail
    return None


def _message(mail: OutboxMail, smtp: SmtpSettings) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = smtp.sender
    msg["To"] = mail.recipient
    msg["Subject"] = mail.subject
    msg["Date"] = formatdate(localtime=False)
    domain = smtp.sender.rpartition("@")[2] or "localhost"
    msg["Message-ID"] = make_msgid(idstring=mail.id, domain=domain)
    msg["X-Callvault-Outbox-Id"] = mail.id
    msg.set_content(mail.body)
    return msg


def _deliver(msg: EmailMessage, smtp: SmtpSettings) -> None:
    with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout) as client:
        if smtp.starttls:
            client.starttls(context=ssl.create_default_context())
        if smtp.username and smtp.password:
            client.login(smtp.username, smtp.password)
        client.send_message(msg)


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(60 * 2 ** max(attempts - 1, 0), 6 * 3600))


def _record(db: Database, mail_id: str, *, error: str | None, attempts: int, clock: Clock) -> None:
    now = clock.now()
    with db.unit_of_work() as session:
        if error is None:
            values: dict[str, object] = {"state": OutboxState.SENT, "sent_at": now, "last_error": ""}
        elif attempts >= MAX_ATTEMPTS:
            values = {"state": OutboxState.FAILED, "last_error": error[:2000]}
        else:
            values = {"state": OutboxState.PENDING, "last_error": error[:2000],
                      "next_attempt_at": now + _backoff(attempts)}
        session.execute(update(OutboxMail).where(OutboxMail.id == mail_id,
                                                 OutboxMail.state == OutboxState.SENDING).values(**values))


def send_due(db: Database, smtp: SmtpSettings, *, clock: Clock = system_clock, limit: int = 200) -> int:
    """Send due mails, one claim at a time; returns how many were delivered."""
    sent = 0
    for _ in range(limit):
        mail = _claim(db, clock=clock)
        if mail is None:
            break
        try:
            _deliver(_message(mail, smtp), smtp)
        except (OSError, smtplib.SMTPException) as exc:
            log.warning("mail %s to %s failed (attempt %d): %s", mail.id, mail.recipient, mail.attempts, exc)
            _record(db, mail.id, error=f"{type(exc).__name__}: {exc}", attempts=mail.attempts, clock=clock)
            continue
        _record(db, mail.id, error=None, attempts=mail.attempts, clock=clock)
        sent += 1
    return sent


def outbox(session: Session, *, state: str | None = None, limit: int = 200) -> list[OutboxMail]:
    """Recent outbox rows, newest first."""
    query = select(OutboxMail).order_by(OutboxMail.created_at.desc()).limit(limit)
    if state:
        query = query.where(OutboxMail.state == state)
    return list(session.scalars(query))

