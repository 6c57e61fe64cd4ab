"""From a PBX's view of a call (file name + CDR rows) to callvault's call metadata.

Orientation (who is the customer, who the agent) uses one rule for both PBXs: a number of at most
``extension_max_digits`` digits is an internal extension, anything else is a phone number.

* FreePBX names say ``in``/``out`` outright; otherwise: extension → number is **outbound**
  (extension = src, remote = dst), number → extension is **inbound** (remote = src, extension = dst;
  a dialled DID is the local number), extension → extension is an **internal** call (not a customer
  call: never recorded, A1/B1), number → number (a DID ringing a queue) is inbound with the agent's
  extension taken from the answering channel (``PJSIP/2001-0000002a`` → 2001).
* Agent and team come from the active user who owns the extension (as for SIPREC capture).
* Consent evidence (A5/B2) from ``CDR(userfield)`` when the dialplan sets it:
  ``cv_announcement=<prompt version>`` (the inbound announcement was played at answer time),
  ``cv_announcement_end=<unix seconds>`` (when it ended: nothing before is kept, A14) and
  ``cv_notice=<unix seconds>`` (outbound: the agent's notice). Without them the recording is stored
  flagged "consent missing" and kept out of normal use until resolved.
"""

from __future__ import annotations

import re
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from callvault.capture.imports.cdr import CdrRow
from callvault.capture.imports.names import NameInfo
from callvault.capture.metadata import CallMetadata, normalise_number, parse_metadata

_CHANNEL_EXT = re.compile(r"^[A-Za-z0-9_]+/(?P<ext>\d{1,16})(?:[-@;/]|$)")


@dataclass(frozen=True)
class Internal:
    """An extension-to-extension call: not a customer call, so not recordable."""

    reason: str


def _is_ext(number: str | None, max_digits: int) -> bool:
    return number is not None and number.isdigit() and len(number) <= max_digits


def _channel_ext(channel: str) -> str | None:
    match = _CHANNEL_EXT.match(channel or "")
    return match.group("ext") if match else None


def _consent(userfield: str, at: datetime | None) -> dict[str, Any] | None:
    fields = dict(part.split("=", 1) for part in re.split(r"[;,]", userfield) if "=" in part)
    out: dict[str, Any] = {}
    if fields.get("cv_announcement") and at is not None:
        out["announcement_played_at"] = at.isoformat()
        out["announcement_version"] = fields["cv_announcement"].strip()[:50]
    for key, target in (("cv_announcement_end", "announcement_ended_at"), ("cv_notice", "agent_notice_at")):
        value = fields.get(key, "").strip()
        if value.isdigit():
            out[target] = datetime.fromtimestamp(int(value), tz=UTC).isoformat()
    return out or None


def build_metadata(
    *, flavour: str, name: NameInfo, rows: list[CdrRow], duration_seconds: float, max_digits: int,
    default_region: str, user_for: Any,
) -> CallMetadata | Internal:
    """The call's metadata (``InvalidInput`` naming the field when the PBX's values are unusable)."""
    first = rows[0] if rows else None
    src = (first.src if first else None) or name.src
    dst = (first.dst if first else None) or name.dst
    src_ext, dst_ext = _is_ext(src, max_digits), _is_ext(dst, max_digits)
    answering = next((e for r in rows for e in (_channel_ext(r.dstchannel),) if e), None)
    calling = next((e for r in rows for e in (_channel_ext(r.channel),) if e), None)
    explicit = next((r.extension for r in rows if r.extension), None)
    direction: str
    if name.kind == "in":
        direction = "inbound"
    elif name.kind == "out":
        direction = "outbound"
    elif src_ext and dst_ext:
        return Internal(f"internal call between extensions {src} and {dst}: only customer (inbound/outbound) "
                        "calls are recorded")
    elif src_ext:
        direction = "outbound"
    else:
        direction = "inbound"
    if direction == "inbound":
        remote = None if src_ext else src
        local = None if dst_ext else dst
        extension = explicit or (dst if dst_ext else None) or answering
    else:
        remote = None if dst_ext else dst
        local = None
        extension = explicit or (src if src_ext else None) or calling
    started = (first.start if first and first.start else None) or name.started_at_from_id or name.local_time
    if started is None:
        started = datetime.now(tz=UTC) - timedelta(seconds=duration_seconds)
    ends = [r.end for r in rows if r.end is not None]
    ended = max(ends) if ends else started + timedelta(seconds=duration_seconds)
    user = user_for(extension)
    call_prefix = "freeswitch" if flavour == "freeswitch" else "asterisk"
    raw: dict[str, Any] = {
        "call_id": f"{call_prefix}:{name.uniqueid}", "direction": direction,
        "started_at": started.isoformat(), "ended_at": max(ended, started).isoformat(),
        "extension": extension, "agent": user.username if user else None, "team": user.team if user else None,
    }
    if remote:
        with suppress(ValueError):  # a caller id that is not a number (anonymous, a name) must not hold it back
            raw["remote_number"] = normalise_number(remote, default_region)
    if local:
        raw["local_number"] = local
    consent = _consent(" ;".join(r.userfield for r in rows if r.userfield),
                       next((r.answer for r in rows if r.answer), started))
    if consent:
        raw["consent"] = consent
    return parse_metadata({k: v for k, v in raw.items() if v is not None}, default_region=default_region)
