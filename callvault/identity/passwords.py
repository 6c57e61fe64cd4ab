"""Password hashing with argon2id (OWASP parameters), rehashing when parameters change, and the
rules a new password must meet (NIST SP 800-63B section 3.1.1.2).

The rules are the NIST ones and nothing else: at least 12 characters, up to 128 (so passphrases fit),
no composition rules (no "one digit and one symbol", which only produces ``Password1!``), and refusal
of passwords that are common, breached, or built from the account's own context (its username, the
product's name). The common-password list is the 30,000 most frequent passwords shipped with the
``zxcvbn`` package (drawn from real breach corpora), loaded once on first use.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_COMMON: frozenset[str] | None = None

# OWASP Password Storage Cheat Sheet: argon2id, m=19 MiB, t=2, p=1 (minimum recommended).
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 128
CONTEXT_WORDS = ("callvault",)
"""Words that make a password guessable from where it is used (NIST: "context-specific words")."""


def hash_password(password: str) -> str:
    """An argon2id hash string (salt and parameters included)."""
    return _hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    """True when ``password`` matches; never raises for a wrong password or a corrupt hash."""
    try:
        return _hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """True when the hash was made with parameters other than today's."""
    return _hasher.check_needs_rehash(stored_hash)


# A hash to verify against when the user does not exist, so unknown users cost the same time.
DUMMY_HASH = hash_password("callvault-timing-equaliser")


def _common_passwords() -> frozenset[str]:
    global _COMMON
    if _COMMON is None:
        from zxcvbn.frequency_lists import FREQUENCY_LISTS

        _COMMON = frozenset(word.lower() for word in FREQUENCY_LISTS["passwords"])
    return _COMMON


def _core(password: str) -> str:
    """The password without the digits and symbols people tack on (``Summer2024!`` -> ``summer``)."""
    return password.lower().strip().rstrip("0123456789!@#$%^&*?.-_ ").lstrip("0123456789!@#$%^&*?.-_ ")


def password_problems(password: str, *, username: str = "", context: tuple[str, ...] = CONTEXT_WORDS) -> list[str]:
    """Why ``password`` may not be used, as sentences; empty when it is acceptable (NIST SP 800-63B)."""
    problems: list[str] = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(f"must be at least {MIN_PASSWORD_LENGTH} characters (a few words make a good one)")
    if len(password) > MAX_PASSWORD_LENGTH:
        problems.append(f"must be at most {MAX_PASSWORD_LENGTH} characters")
    lowered = password.lower()
    common = _common_passwords()
    if lowered in common or _core(password) in common or len(set(lowered)) <= 2:
        problems.append("is too common: it appears in lists of breached passwords; choose another")
    elif username and len(username) >= 3 and username.lower() in lowered:
        problems.append("must not contain the username")
    elif any(word in lowered for word in context):
        problems.append(f"must not contain the product's name ({', '.join(context)})")
    return problems
