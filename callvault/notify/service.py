"""Queueing mail in the outbox and sending it over SMTP.

Contract: ``enqueue`` writes a row in the caller's transaction, so a mail exists exactly when the
event that caused it was committed. ``send_due`` (the worker job) claims one row at a time with a
conditional ``UPDATE … WHERE state = 'pending'`` that must change exactly one row, commits the claim,
sends, then records the outcome. A worker killed between sending and recording leaves the row in
``sending``; after ``STALE_SENDING`` it is tried again with ``attempts`` incremented, so a mail is
never sent twice without the outbox saying so (attempts > 1).

Secrets (a caller's verification code, a download link) are passed to ``enqueue`` as ``secrets``: the row
keeps ``[withheld:N]`` in their place and the secrets themselves sealed under a fresh key wrapped by the
keyring (AES-GCM, bound to the mail's id); the worker puts them back into the message it sends, and the
sealed copy and its key are dropped as soon as the mail is sent or has failed for good. A database
reader, or a backup, never finds a usable code or link in the outbox.

Settings (environment or ``config.toml``-free, read from ``Settings.env``): ``CALLVAULT_SMTP_HOST``
(default localhost), ``CALLVAULT_SMTP_PORT`` (25), ``CALLVAULT_SMTP_FROM`` (callvault@localhost),
``CALLVAULT_SMTP_STARTTLS`` (0/1), ``CALLVAULT_SMTP_USERNAME``, ``CALLVAULT_SMTP_PASSWORD`` (or
``_FILE``), and ``CALLVAULT_MAIL_DOMAIN`` for users without an address of their own.
"""

from __future__ import annotations

import json
import logging
import secrets as random_secrets
import smtplib
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError as SqlIntegrityError
from sqlalchemy.orm import Session

from callvault.core.clock import Clock, system_clock
from callvault.core.db import Database
from callvault.core.errors import CallvaultError, ConfigurationError, IntegrityError
from callvault.core.ids import new_id
from callvault.notify.models import OutboxMail, OutboxState
from callvault.storage.keys import Keyring, WrappedKey

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


def _placeholder(index: int) -> str:
    return f"[withheld:{index + 1}]"


def _key_context(mail_id: str) -> str:
    return f"mail-{mail_id}"


def _seal_secrets(mail: OutboxMail, values: Sequence[str], keyring: Keyring) -> None:
    """Replace each secret in the subject and body by its placeholder and keep the secrets sealed."""
    for index, value in enumerate(values):
        mail.subject = mail.subject.replace(value, _placeholder(index))
        mail.body = mail.body.replace(value, _placeholder(index))
    data_key = AESGCM.generate_key(bit_length=256)
    wrapped = keyring.wrap(data_key, recording_id=_key_context(mail.id))
    nonce = random_secrets.token_bytes(12)
    plaintext = json.dumps(list(values)).encode()
    mail.secrets_sealed = nonce + AESGCM(data_key).encrypt(nonce, plaintext, mail.id.encode())
    mail.secrets_kek_id, mail.secrets_wrapped_key = wrapped.kek_id, wrapped.wrapped


def _open_secrets(mail: OutboxMail, keyring: Keyring | None) -> list[str]:
    if mail.secrets_sealed is None:
        return []
    if keyring is None or mail.secrets_kek_id is None or mail.secrets_wrapped_key is None:
        raise ConfigurationError("this mail carries sealed secrets and the sender has no keyring to open them")
    data_key = keyring.unwrap(WrappedKey(kek_id=mail.secrets_kek_id, wrapped=mail.secrets_wrapped_key),
                              recording_id=_key_context(mail.id))
    sealed = mail.secrets_sealed
    try:
        values = json.loads(AESGCM(data_key).decrypt(sealed[:12], sealed[12:], mail.id.encode()))
    except InvalidTag:
        raise IntegrityError(f"the sealed secrets of mail {mail.id} failed authentication") from None
    return [str(v) for v in values]


def enqueue(
    session: Session, *, to: str, subject: str, body: str, dedup_key: str | None = None,
    recipient_user: str | None = None, clock: Clock = system_clock, secrets: Sequence[str] = (),
    keyring: Keyring | None = None,
) -> OutboxMail | None:
    """Queue one mail (the caller commits). With a ``dedup_key`` already queued, nothing is added.
    ``to=""`` with ``recipient_user``: that user's address at the sending node's mail domain (``recipient_of``).

    ``secrets`` are strings of the subject or body that must not be kept in the outbox (a code, a link):
    they are sealed with ``keyring`` (required with them) and given back only to the message sent."""
    values = [v for v in dict.fromkeys(secrets) if v]
    if values and keyring is None:
        raise ConfigurationError("a mail with secrets needs the keyring to seal them")
    if dedup_key is not None:
        existing = session.scalar(select(OutboxMail).where(OutboxMail.dedup_key == dedup_key))
        if existing is not None:
            return None
    now = clock.now()
    mail = OutboxMail(id=new_id(), dedup_key=dedup_key, recipient=to, recipient_user=recipient_user,
                      subject=subject[:300], body=body, state=OutboxState.PENDING, attempts=0, created_at=now,
                      next_attempt_at=now, last_error="")
    if values:
        assert keyring is not None
        _seal_secrets(mail, values, keyring)
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


def recipient_of(mail: OutboxMail, smtp: SmtpSettings) -> str:
    """The address a mail goes to: the one queued, or (queued with ``to=""`` by code that has no mail settings,
    e.g. a capture process) the user's at the sending node's ``CALLVAULT_MAIL_DOMAIN``."""
    if mail.recipient:
        return mail.recipient
    if not mail.recipient_user:
        raise ConfigurationError(f"mail {mail.id} names neither an address nor a user to send it to")
    return address_for(mail.recipient_user, None, smtp)


def _message(mail: OutboxMail, smtp: SmtpSettings, keyring: Keyring | None = None) -> EmailMessage:
    subject, body = mail.subject, mail.body
    for index, value in enumerate(_open_secrets(mail, keyring)):
        subject, body = subject.replace(_placeholder(index), value), body.replace(_placeholder(index), value)
    msg = EmailMessage()
    msg["From"] = smtp.sender
    msg["To"] = recipient_of(mail, smtp)
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False)
    domain = smtp.sender.rpartition("@")[2] or "localhost"
    msg["Message-ID"] = make_msgid(idstring=mail.id, domain=domain)
    msg["X-Callvault-Outbox-Id"] = mail.id
    msg.set_content(body)
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
        forget = {"secrets_sealed": None, "secrets_kek_id": None, "secrets_wrapped_key": None}
        if error is None:
            values: dict[str, object] = {"state": OutboxState.SENT, "sent_at": now, "last_error": "", **forget}
        elif attempts >= MAX_ATTEMPTS:
            values = {"state": OutboxState.FAILED, "last_error": error[:2000], **forget}
        else:
            values = {"state": OutboxState.PENDING, "last_error": error[:2000],
                      "next_attempt_at": now + _backoff(attempts)}
        session.execute(update(OutboxMail).where(OutboxMail.id == mail_id,
                                                 OutboxMail.state == OutboxState.SENDING).values(**values))


def send_due(db: Database, smtp: SmtpSettings, *, clock: Clock = system_clock, limit: int = 200,
             keyring: Keyring | None = None) -> int:
    """Send due mails, one claim at a time; returns how many were delivered. ``keyring`` opens the
    sealed secrets of the mails that carry some (see the module doc)."""
    sent = 0
    for _ in range(limit):
        mail = _claim(db, clock=clock)
        if mail is None:
            break
        try:
            _deliver(_message(mail, smtp, keyring), smtp)
        except (OSError, smtplib.SMTPException, CallvaultError) as exc:
            log.warning("mail %s to %s failed (attempt %d): %s", mail.id, mail.recipient or mail.recipient_user,
                        mail.attempts, exc)
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

