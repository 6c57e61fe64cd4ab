"""A loopback stand-in for the phone provider (``callvault.subject_requests.phone``): it takes the generic
JSON POST ``{to, text, reference}`` with the bearer token, as a real SMS or call-back gateway would, and
keeps what it received so a test can read the code "on the phone"."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from tests.support.webhook_receiver import LoopbackPostServer

TOKEN = "sms-test-token"


@dataclass(frozen=True)
class Text:
    to: str
    text: str
    reference: str


@dataclass
class PhoneDouble:
    token: str = TOKEN
    received: list[Text] = field(default_factory=list)
    refused: int = 0
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def handle(self, headers: Any, raw: bytes) -> int:
        if headers.get("Authorization", "") != f"Bearer {self.token}":
            self.refused += 1
            return 401
        body = json.loads(raw)
        with self._cond:
            self.received.append(Text(str(body["to"]), str(body["text"]), str(body.get("reference", ""))))
            self._cond.notify_all()
        return 202

    def texts_to(self, number: str) -> list[Text]:
        with self._cond:
            return [t for t in self.received if t.to == number]

    def code_for(self, number: str, *, after: int = 0, timeout: float = 30.0) -> str:
        """The code in the latest text to ``number`` beyond the first ``after`` (waits for it to arrive)."""
        with self._cond:
            self._cond.wait_for(lambda: len([t for t in self.received if t.to == number]) > after, timeout=timeout)
            texts = [t for t in self.received if t.to == number]
        assert len(texts) > after, f"no text reached {number}"
        found = re.search(r"\b(\d{6})\b", texts[-1].text)
        assert found, texts[-1].text
        return found.group(1)


class PhoneServer(LoopbackPostServer):
    """The double on 127.0.0.1 (a free port); ``url`` is what CALLVAULT_SMS_URL points at."""

    def __init__(self, double: PhoneDouble) -> None:
        super().__init__(double, "/sms")
        self.double = double

    def env(self) -> dict[str, str]:
        return {"CALLVAULT_SMS_URL": self.url, "CALLVAULT_SMS_TOKEN": self.double.token}
