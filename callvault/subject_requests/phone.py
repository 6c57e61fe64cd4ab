"""Sending a code to a caller's phone number, through a provider the deployment configures.

The email code proves only that the requester reads a mailbox; anyone can type someone else's phone
number into the public form. A code sent *to the number* (an SMS, or a call-back that reads it out)
proves the requester answers that number. callvault speaks one small, generic contract so any SMS or
voice gateway (or a few lines of glue in front of one) can serve:

    POST CALLVAULT_SMS_URL
    Authorization: Bearer CALLVAULT_SMS_TOKEN
    Content-Type: application/json
    {"to": "+14165550101", "text": "Your … code is 123456 …", "reference": "<request id>"}

Any 2xx answer means the provider accepted it; anything else (or no answer within 10 seconds) is a
failure, which the request survives: it falls back to the facts a reviewer checks (``proof``).

Sending happens outside any database transaction (``send_codes``): the codes are stored hashed and
committed first, then sent, then the outcome is recorded in a second unit of work.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import httpx

from callvault.core.clock import Clock
from callvault.core.db import Database
from callvault.core.errors import ConfigurationError
from callvault.core.settings import env_or_file
from callvault.identity.counters import Counters
from callvault.policy.schema import PolicyDocument

SEND_TIMEOUT = 10.0


class PhoneSendFailed(Exception):
    """The provider did not accept the message (the reason is safe to audit: it names no secret)."""


class PhoneVerifier(Protocol):
    """Delivers a short text to a phone number (as an SMS, or read out on a call-back)."""

    def send(self, *, to: str, text: str, reference: str) -> None:
        """Hand the text to the provider; raise ``PhoneSendFailed`` when it does not accept it."""


@dataclass(frozen=True)
class HttpPhoneVerifier:
    """The generic JSON contract above, over HTTPS (or HTTP to a gateway on the same host)."""

    url: str
    token: str
    timeout: float = SEND_TIMEOUT

    def send(self, *, to: str, text: str, reference: str) -> None:
        try:
            resp = httpx.post(self.url, json={"to": to, "text": text, "reference": reference}, timeout=self.timeout,
                              headers={"Authorization": f"Bearer {self.token}"}, follow_redirects=False)
        except httpx.HTTPError as exc:
            raise PhoneSendFailed(f"the phone provider did not answer ({type(exc).__name__})") from None
        if not 200 <= resp.status_code < 300:
            raise PhoneSendFailed(f"the phone provider refused the message (HTTP {resp.status_code})")


def verifier_from_env(env: Mapping[str, str]) -> PhoneVerifier | None:
    """The configured provider (``CALLVAULT_SMS_URL`` + ``CALLVAULT_SMS_TOKEN(_FILE)``), or None."""
    url = (env.get("CALLVAULT_SMS_URL") or "").strip()
    if not url:
        return None
    if not url.startswith(("https://", "http://")):
        raise ConfigurationError(f"CALLVAULT_SMS_URL must be an http(s) URL, not {url[:40]!r}")
    token = env_or_file(env, "CALLVAULT_SMS_TOKEN")
    if not token:
        raise ConfigurationError("CALLVAULT_SMS_URL is set but CALLVAULT_SMS_TOKEN (or CALLVAULT_SMS_TOKEN_FILE) "
                                 "is not: the provider must be able to tell callvault's messages from anyone's")
    return HttpPhoneVerifier(url=url, token=token.strip())


def send_codes(db: Database, verifier: PhoneVerifier, *, policy: PolicyDocument, request_id: str,
               counters: Counters, source_ip: str | None, clock: Clock) -> list[str]:
    """Issue a code for each of the request's numbers, send them, and record what happened.

    Returns the numbers a code was sent to. Called by the edges once the email code is confirmed."""
    from callvault.subject_requests import proof

    with db.unit_of_work() as session:
        issued = proof.issue_phone_codes(session, policy=policy, request_id=request_id, counters=counters,
                                         source_ip=source_ip, clock=clock)
    results: dict[str, str] = {}
    for number, text in issued:
        try:
            verifier.send(to=number, text=text, reference=request_id)
            results[number] = ""
        except PhoneSendFailed as exc:
            results[number] = str(exc)
    if results:
        with db.unit_of_work() as session:
            proof.record_sends(session, request_id=request_id, results=results, source_ip=source_ip, clock=clock)
    return [n for n, error in results.items() if not error]
