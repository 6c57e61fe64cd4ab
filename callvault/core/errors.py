"""The one exception tree of callvault, mapped to HTTP statuses and CLI exit codes in one place
(`callvault.api.errors` and `callvault.cli.main`).

    CallvaultError                 base; ``message`` is written for a person to act on
    ├── InvalidInput               bad metadata, audio, policy, dates, numbers (HTTP 422, exit 2)
    │   └── PolicyInvalid          a policy file that does not validate; carries every issue
    ├── NotFound                   no such object, or the caller may not know it exists (404)
    ├── Conflict                   the request contradicts stored state (409)
    ├── AuthenticationFailed       who you are could not be established (401)
    ├── AccessDenied               the policy engine said no; carries the decision (403)
    ├── IntegrityError             stored data failed a check: tampering or corruption (500, alarm)
    └── ConfigurationError         the deployment is set up wrongly (exit 3; 503 from the server)

Services raise these; nothing else should escape to a user as a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class CallvaultError(Exception):
    """Base of every error callvault raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class FieldProblem:
    """One thing wrong with an input: where (dotted path, optional line) and what."""

    location: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = self.location or "(document)"
        if self.line is not None:
            where = f"{where} (line {self.line})"
        return f"{where}: {self.message}"


class InvalidInput(CallvaultError):
    """The input is malformed; ``problems`` names each field at fault."""

    def __init__(self, message: str, problems: list[FieldProblem] | None = None) -> None:
        self.problems = problems or []
        if self.problems and message.endswith(":"):
            message = message + " " + "; ".join(str(p) for p in self.problems)
        super().__init__(message)

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": "invalid_input",
            "message": self.message,
            "problems": [
                {"location": p.location, "message": p.message, "line": p.line} for p in self.problems
            ],
        }


class PolicyInvalid(InvalidInput):
    """A policy document failed validation."""


class NotFound(CallvaultError):
    """The object does not exist (or the caller may not learn that it does)."""


class Conflict(CallvaultError):
    """The request contradicts what is stored (e.g. same call_id, different audio)."""


class AuthenticationFailed(CallvaultError):
    """Credentials missing, wrong, expired or revoked. The message never says which; ``reason`` (for the
    audit log only) may."""

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message


class AccessDenied(CallvaultError):
    """The policy engine denied the request; ``reason`` and ``clauses`` explain why."""

    def __init__(self, message: str, *, reason: str = "", clauses: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.reason = reason or message
        self.clauses = clauses


class StepUpRequired(AccessDenied):
    """Content is about to leave callvault (a download) and the caller has not re-confirmed their
    authenticator code recently enough (step-up, RELIABILITY 17). Answered 403 ``step_up_required``."""


class IntegrityError(CallvaultError):
    """Stored data failed an integrity check (tampered ciphertext, bad hash, broken chain)."""


class ConfigurationError(CallvaultError):
    """The deployment is misconfigured (missing key, unreachable database, bad URL)."""
