"""Identifiers. Recording ids are random (UUID4) so they reveal nothing about volume or order."""

from __future__ import annotations

import secrets
import uuid


def new_id() -> str:
    """A new opaque identifier for a row (36-character UUID text)."""
    return str(uuid.uuid4())


def new_secret_token(prefix: str) -> str:
    """A bearer secret: ``prefix`` + 256 bits of randomness, URL-safe."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"
