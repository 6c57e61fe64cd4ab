"""Typed settings. Everything comes from the data directory and the environment; nothing is guessed
silently, and a bad value fails loudly with a message naming the variable.

Precedence: explicit argument > environment (``CALLVAULT_*``; secrets also as ``*_FILE``) >
``<data-dir>/config.toml`` > defaults.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callvault.core.errors import ConfigurationError

DEFAULT_DATA_DIR = "./callvault-data"
CONFIG_FILE = "config.toml"


def env_or_file(env: Mapping[str, str], name: str) -> str | None:
    """Read ``name`` from the environment, or from the file named by ``name_FILE`` (Docker secrets)."""
    if env.get(name):
        return env[name]
    file_name = env.get(f"{name}_FILE")
    if file_name:
        try:
            return Path(file_name).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigurationError(f"{name}_FILE points at {file_name!r}, which cannot be read: {exc}") from exc
    return None


@dataclass(frozen=True)
class Settings:
    """Where callvault keeps things and how it reaches them."""

    data_dir: Path
    database_url: str
    storage_url: str
    key_dir: Path
    audit_anchor_dir: Path | None = None
    """Where each published audit checkpoint is also written, outside the database
    (``CALLVAULT_AUDIT_ANCHOR_DIR``; default ``<data dir>/audit-anchor``). Point it at storage the
    database's administrators cannot write (another host, a WORM share) for a real witness."""
    default_region: str = "CA"
    token_ttl_seconds: int = 12 * 3600
    stale_ingest_seconds: int = 3600
    max_upload_bytes: int = 512 * 1024 * 1024
    """Largest accepted upload body (``CALLVAULT_MAX_UPLOAD_BYTES``); larger declared bodies get 413."""
    upload_min_bytes_per_second: int = 16 * 1024
    """Slowest upload tolerated (``CALLVAULT_UPLOAD_MIN_BYTES_PER_SECOND``): a body must arrive within
    ``upload_grace_seconds + size / this``, or the request gets 408 and nothing is stored."""
    upload_grace_seconds: int = 30
    """Fixed allowance on top of the size-based upload deadline (``CALLVAULT_UPLOAD_GRACE_SECONDS``)."""
    trusted_proxies: tuple[str, ...] = ()
    """CIDRs of reverse proxies whose X-Forwarded-For is believed (``CALLVAULT_TRUSTED_PROXIES``)."""
    session_idle_seconds: int = 30 * 60
    """A web session unused this long ends (``CALLVAULT_SESSION_IDLE_SECONDS``)."""
    session_absolute_seconds: int = 12 * 3600
    """A web session ends this long after sign-in, however active (``CALLVAULT_SESSION_ABSOLUTE_SECONDS``)."""
    env: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def anchor_dir(self) -> Path:
        return self.audit_anchor_dir or self.data_dir / "audit-anchor"

    @property
    def config_path(self) -> Path:
        return self.data_dir / CONFIG_FILE

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def load_settings(data_dir: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Build settings for a data directory (argument, ``$CALLVAULT_DATA_DIR`` or ``./callvault-data``)."""
    env = dict(os.environ if env is None else env)
    root = Path(data_dir or env.get("CALLVAULT_DATA_DIR") or DEFAULT_DATA_DIR).expanduser().resolve()
    file_conf: dict[str, object] = {}
    config_path = root / CONFIG_FILE
    if config_path.exists():
        try:
            file_conf = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"{config_path} is not valid TOML: {exc}") from exc

    def pick(env_name: str, key: str, default: str) -> str:
        value = env_or_file(env, env_name)
        if value:
            return value
        conf_value = file_conf.get(key)
        if conf_value is not None:
            return str(conf_value)
        return default

    database_url = pick("CALLVAULT_DATABASE_URL", "database_url", f"sqlite:///{root / 'callvault.db'}")
    if not (database_url.startswith("sqlite") or database_url.startswith("postgresql")):
        raise ConfigurationError(
            f"CALLVAULT_DATABASE_URL {database_url!r} is not supported: use sqlite:///PATH or postgresql://..."
        )
    if database_url.startswith("postgresql://"):
        # psycopg 3 is the driver we ship; accept the plain URL people copy from docs.
        database_url = "postgresql+psycopg://" + database_url.removeprefix("postgresql://")
    storage_url = pick("CALLVAULT_STORAGE_URL", "storage_url", str(root / "blobs"))
    key_dir = Path(pick("CALLVAULT_KEY_DIR", "key_dir", str(root / "keys")))
    anchor_dir = Path(pick("CALLVAULT_AUDIT_ANCHOR_DIR", "audit_anchor_dir", str(root / "audit-anchor")))
    region = pick("CALLVAULT_DEFAULT_REGION", "default_region", "CA").upper()
    try:
        ttl = int(pick("CALLVAULT_TOKEN_TTL_SECONDS", "token_ttl_seconds", str(12 * 3600)))
    except ValueError as exc:
        raise ConfigurationError("CALLVAULT_TOKEN_TTL_SECONDS must be a whole number of seconds") from exc
    access = _access_settings(pick)
    uploads = _upload_settings(pick)
    return Settings(
        data_dir=root,
        database_url=database_url,
        storage_url=storage_url,
        key_dir=key_dir,
        audit_anchor_dir=anchor_dir,
        default_region=region,
        token_ttl_seconds=ttl,
        env=env,
        **access,
        **uploads,
    )


def _upload_settings(pick: Callable[[str, str, str], str]) -> dict[str, Any]:
    """Upload size and slow-client limits (RELIABILITY: upload abuse), checked at start-up."""
    values: dict[str, Any] = {}
    for env_name, key, default, least in (
            ("CALLVAULT_MAX_UPLOAD_BYTES", "max_upload_bytes", 512 * 1024 * 1024, 1024),
            ("CALLVAULT_UPLOAD_MIN_BYTES_PER_SECOND", "upload_min_bytes_per_second", 16 * 1024, 1),
            ("CALLVAULT_UPLOAD_GRACE_SECONDS", "upload_grace_seconds", 30, 1)):
        raw = pick(env_name, key, str(default)).strip()
        if not raw.isdigit() or int(raw) < least:
            raise ConfigurationError(f"{env_name} must be a whole number, at least {least} (got {raw!r})")
        values[key] = int(raw)
    return values


def _access_settings(pick: Callable[[str, str, str], str]) -> dict[str, Any]:
    """Trusted proxies and web-session timeouts, each checked so a typo fails at start-up."""
    import ipaddress

    proxies: list[str] = []
    raw_proxies = pick("CALLVAULT_TRUSTED_PROXIES", "trusted_proxies", "")
    # Comma/space separated in the environment; a TOML list arrives as its str(): strip the brackets.
    for item in raw_proxies.translate(str.maketrans(",[]'\"", "     ")).split():
        try:
            proxies.append(str(ipaddress.ip_network(item.strip(), strict=False)))
        except ValueError as exc:
            raise ConfigurationError(
                f"CALLVAULT_TRUSTED_PROXIES: {item!r} is not an address or CIDR network (e.g. 10.0.0.5/32)"
            ) from exc
    values: dict[str, Any] = {"trusted_proxies": tuple(proxies)}
    for env_name, key, default in (("CALLVAULT_SESSION_IDLE_SECONDS", "session_idle_seconds", 30 * 60),
                                   ("CALLVAULT_SESSION_ABSOLUTE_SECONDS", "session_absolute_seconds", 12 * 3600)):
        raw = pick(env_name, key, str(default))
        if not raw.isdigit() or int(raw) < 60:
            raise ConfigurationError(f"{env_name} must be a whole number of seconds, at least 60")
        values[key] = int(raw)
    return values
