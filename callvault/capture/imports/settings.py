"""Import settings, from the environment (``CALLVAULT_PBX_*``, ``CALLVAULT_TWILIO_*``; secrets also ``*_FILE``).

Read where they are used (worker, CLI, webhook) so a typo fails with the variable's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from callvault.core.errors import ConfigurationError
from callvault.core.settings import env_or_file

FLAVOURS = ("asterisk", "freeswitch")


@dataclass(frozen=True)
class PbxFolder:
    flavour: str
    root: Path
    cdr_file: Path | None = None


@dataclass(frozen=True)
class PbxSettings:
    folders: tuple[PbxFolder, ...] = ()
    """``CALLVAULT_PBX_FOLDERS``: ``flavour:/dir[:/cdr.csv]`` entries separated by ``;``."""
    quiet_seconds: int = 300
    """A file whose size and mtime stayed the same this long is complete (when no hook said so)."""
    cdr_wait_seconds: int = 3600
    """How long a complete file waits for its CDR row before it becomes ``cdr_missing``."""
    retry_seconds: int = 60
    delete_source: bool = True
    """Delete the plaintext source file after a verified import (plaintext at rest is not allowed)."""
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    """The PBX's local time zone: Asterisk CSV CDRs and FreePBX file names are in local time."""
    extension_max_digits: int = 6
    """A number this short (digits only) is an internal extension, anything longer a phone number."""
    freeswitch_stereo_swap: bool = False
    """Set when the dialplan sets RECORD_STEREO_SWAP=true (the caller is then on the right)."""
    max_file_bytes: int = 2 * 1024 * 1024 * 1024
    max_name_bytes: int = 255


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if not raw.strip().isdigit() or int(raw) < minimum:
        raise ConfigurationError(f"{name} must be a whole number, at least {minimum} (got {raw!r})")
    return int(raw)


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{name} must be true or false (got {raw!r})")


def parse_folders(raw: str) -> tuple[PbxFolder, ...]:
    folders = []
    for item in (part.strip() for part in raw.split(";")):
        if not item:
            continue
        flavour, _, rest = item.partition(":")
        if flavour not in FLAVOURS or not rest:
            raise ConfigurationError(f"CALLVAULT_PBX_FOLDERS entry {item!r}: write FLAVOUR:/DIR[:/CDR.csv] with "
                                     f"FLAVOUR one of {', '.join(FLAVOURS)}")
        root, _, cdr = rest.partition(":")
        if not Path(root).is_absolute() or (cdr and not Path(cdr).is_absolute()):
            raise ConfigurationError(f"CALLVAULT_PBX_FOLDERS entry {item!r}: paths must be absolute")
        folders.append(PbxFolder(flavour, Path(root), Path(cdr) if cdr else None))
    return tuple(folders)


def pbx_settings(env: Mapping[str, str]) -> PbxSettings:
    tz_name = env.get("CALLVAULT_PBX_TIMEZONE") or "UTC"
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(f"CALLVAULT_PBX_TIMEZONE {tz_name!r} is not a time zone name "
                                 "(e.g. America/Toronto)") from None
    return PbxSettings(
        folders=parse_folders(env.get("CALLVAULT_PBX_FOLDERS", "")),
        quiet_seconds=_int(env, "CALLVAULT_PBX_QUIET_SECONDS", 300, 1),
        cdr_wait_seconds=_int(env, "CALLVAULT_PBX_CDR_WAIT_SECONDS", 3600, 0),
        retry_seconds=_int(env, "CALLVAULT_PBX_RETRY_SECONDS", 60, 1),
        delete_source=_bool(env, "CALLVAULT_PBX_DELETE_SOURCE", True),
        timezone=tz,
        extension_max_digits=_int(env, "CALLVAULT_PBX_EXTENSION_MAX_DIGITS", 6, 1),
        freeswitch_stereo_swap=_bool(env, "CALLVAULT_FREESWITCH_STEREO_SWAP", False),
    )


@dataclass(frozen=True)
class TwilioSettings:
    auth_token: str
    media_base_url: str
    """Only ``RecordingUrl`` values under this prefix are fetched (never an arbitrary host)."""
    public_url: str | None
    """The callback URL as Twilio calls it (behind a proxy the server's own view differs)."""
    api_key_sid: str | None
    api_key_secret: str | None
    default_direction: str
    local_number: str | None
    extension: str | None
    max_bytes: int
    timeout_seconds: int
    max_attempts: int
    retry_seconds: int


def twilio_settings(env: Mapping[str, str]) -> TwilioSettings:
    token = env_or_file(env, "CALLVAULT_TWILIO_AUTH_TOKEN")
    if not token:
        raise ConfigurationError("the Twilio callback is not configured: set CALLVAULT_TWILIO_AUTH_TOKEN "
                                 "(or CALLVAULT_TWILIO_AUTH_TOKEN_FILE) to the account's auth token")
    base = env.get("CALLVAULT_TWILIO_MEDIA_BASE_URL", "https://api.twilio.com/2010-04-01/Accounts/")
    if not base.startswith(("https://", "http://")) or not base.endswith("/"):
        raise ConfigurationError("CALLVAULT_TWILIO_MEDIA_BASE_URL must be an http(s) URL ending in '/'")
    direction = env.get("CALLVAULT_TWILIO_DIRECTION", "inbound")
    if direction not in ("inbound", "outbound"):
        raise ConfigurationError("CALLVAULT_TWILIO_DIRECTION must be inbound or outbound")
    return TwilioSettings(
        auth_token=token.strip(), media_base_url=base, public_url=env.get("CALLVAULT_TWILIO_PUBLIC_URL") or None,
        api_key_sid=env.get("CALLVAULT_TWILIO_API_KEY_SID") or None,
        api_key_secret=env_or_file(env, "CALLVAULT_TWILIO_API_KEY_SECRET"),
        default_direction=direction, local_number=env.get("CALLVAULT_TWILIO_LOCAL_NUMBER") or None,
        extension=env.get("CALLVAULT_TWILIO_EXTENSION") or None,
        max_bytes=_int(env, "CALLVAULT_TWILIO_MAX_BYTES", 512 * 1024 * 1024, 1024),
        timeout_seconds=_int(env, "CALLVAULT_TWILIO_TIMEOUT_SECONDS", 60, 1),
        max_attempts=_int(env, "CALLVAULT_TWILIO_MAX_ATTEMPTS", 8, 1),
        retry_seconds=_int(env, "CALLVAULT_TWILIO_RETRY_SECONDS", 60, 0),
    )
