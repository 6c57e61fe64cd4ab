"""Audio and metadata factories for tests (generated, deterministic)."""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any

import numpy as np
import soundfile


def wav_bytes(seconds: float = 2.0, *, rate: int = 8000, channels: int = 2, seed: int = 0,
              fmt: str = "WAV", subtype: str = "PCM_16") -> bytes:
    """A deterministic tone-and-noise signal, different per ``seed``."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    cols = [0.3 * np.sin(2 * np.pi * (300 + 100 * c + seed) * t) + 0.05 * rng.standard_normal(len(t))
            for c in range(channels)]
    data = np.stack(cols, axis=1).astype(np.float32)
    buf = io.BytesIO()
    soundfile.write(buf, data, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


CALL_START = datetime.combine(datetime.now(UTC).date() - timedelta(days=1), time(14, 0), tzinfo=UTC)
"""When ``metadata()``'s calls start unless told: 14:00 UTC yesterday by the clock the suite runs on (the
product's clock, also when the run's clock is moved), fixed for the whole run. Recent, because a call whose
retention has already ended is refused on arrival (A3), so no stored call may be older than a policy's cap
whatever day the suite runs. A test whose outcome depends on the call's age (retention, sampling of "last
week", due dates) passes ``started`` relative to the product's clock, and compares dates with it."""


def metadata(**overrides: Any) -> dict[str, Any]:
    """Valid inbound-call metadata for extension 2001 (alice); override any field. ``started`` (a datetime)
    moves the start, the end and the announcement together."""
    started: datetime = overrides.pop("started", CALL_START)
    meta: dict[str, Any] = {
        "call_id": f"test-{uuid.uuid4().hex[:12]}",
        "direction": "inbound",
        "started_at": started.isoformat(),
        "ended_at": (started + timedelta(seconds=2)).isoformat(),
        "extension": "2001",
        "agent": "alice",
        "team": "customer_support",
        "remote_number": "+1 416 555 0142",
        "local_number": "+1 416 591 1668",
        "consent": {"announcement_played_at": started.isoformat(), "announcement_version": "1"},
    }
    meta.update(overrides)
    return {k: v for k, v in meta.items() if v is not None}


def upload(client: Any, audio: bytes, meta: dict[str, Any] | str) -> Any:
    """POST a recording the way an integration would (multipart: audio + metadata JSON)."""
    body = meta if isinstance(meta, str) else json.dumps(meta)
    return client.post("/api/v1/recordings", files={"audio": ("call.wav", audio, "audio/wav")},
                       data={"metadata": body})
