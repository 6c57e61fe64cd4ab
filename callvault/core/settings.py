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
class OidcSettings:
    """How callvault signs people in through an OpenID Connect provider (docs/sso.md).

    ``role_map`` pairs a value found in the role claim or the groups claim with a policy role; the
    first pair (in configured order) whose value the ID token carries decides the role. A token that
    matches none is refused: nobody gets a role by accident.
    """

    issuer: str
    client_id: str
    client_secret: str = field(repr=False)
    role_map: tuple[tuple[str, str], ...] = ()
    role_claim: str = "roles"
    groups_claim: str = "groups"
    username_claim: str = "preferred_username"
    scopes: tuple[str, ...] = ("openid", "profile", "email")
    mfa_amr: tuple[str, ...] = ("mfa",)
    """``amr`` values (RFC 8176) that prove the IdP did a second factor."""
    mfa_acr: tuple[str, ...] = ()
    """``acr`` values that prove a second factor (e.g. your IdP's MFA level URI)."""
    provisioning: str = "existing"
    """``existing``: the account must already exist (default); ``jit``: created at first sign-in."""
    jit_role: str | None = None
    """The role of a just-in-time account when ``role_map`` gives none: must reach no content (checked at
    sign-in against the policy in force). Unset: such a sign-in is refused."""
    button_label: str = "Sign in with SSO"


DEFAULT_SERVER_THREADS = 4
"""Request work (database, policy, decryption) runs in a thread pool; with anyio's default of 40
threads, 100 busy clients keep 40 requests inside Python at once, and they spend their time handing
the GIL to each other. A handful of threads per process (one process per core) serves more and with a
shorter tail (docs/performance.md, ``bench.http``)."""


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
    server_threads: int = DEFAULT_SERVER_THREADS
    """Threads per server process for request work (``CALLVAULT_SERVER_THREADS``); see
    ``DEFAULT_SERVER_THREADS`` for why it is small."""
    trusted_proxies: tuple[str, ...] = ()
    """CIDRs of reverse proxies whose X-Forwarded-For is believed (``CALLVAULT_TRUSTED_PROXIES``)."""
    step_up_seconds: int = 5 * 60
    """How recent a re-entered TOTP code must be for a download (``CALLVAULT_STEP_UP_SECONDS``, 30 to 3600)."""
    session_idle_seconds: int = 30 * 60
    """A web session unused this long ends (``CALLVAULT_SESSION_IDLE_SECONDS``)."""
    session_absolute_seconds: int = 12 * 3600
    """A web session ends this long after sign-in, however active (``CALLVAULT_SESSION_ABSOLUTE_SECONDS``)."""
    oidc: OidcSettings | None = None
    """Single sign-on through an OpenID Connect provider; None when ``CALLVAULT_OIDC_ISSUER`` is unset."""
    json_logs: bool = False
    """One JSON object per log line, each with the request id (``CALLVAULT_JSON_LOGS=1``)."""
    metrics_token: str | None = field(default=None, repr=False)
    """Bearer token that lets a scraper outside loopback read ``/metrics`` (``CALLVAULT_METRICS_TOKEN(_FILE)``)."""
    live_tap_ca: Path | None = None
    """Certificates (PEM) the API node trusts for capture taps that speak TLS (``CALLVAULT_LIVE_TAP_CA``); None:
    the system's trust store. A tap's ``wss://`` certificate is always verified, name included."""
    siprec_stats: str | None = None
    """Glob of the SIPREC servers' ``--stats-file`` files on this host, read by ``/metrics``."""
    redis_url: str | None = field(default=None, repr=False)
    """Where rate-limit counters live when set (``CALLVAULT_REDIS_URL(_FILE)``, ``redis://``, ``rediss://`` or
    ``unix://``); None keeps them in the database. It may carry a password, hence not in ``repr``."""
    redis_prefix: str = "callvault:"
    """Prepended to every Redis key (``CALLVAULT_REDIS_PREFIX``), so deployments can share one Redis."""
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
    uploads = _request_settings(pick)
    access.update(_ops_settings(env, pick))
    access["oidc"] = _oidc_settings(env, pick, file_conf)
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


UPLOAD_BYTES_CEILING = 4 * 1024 ** 3
"""The most ``CALLVAULT_MAX_UPLOAD_BYTES`` may be: the upload route's own body limit, fixed when the app is
built, so that no setting can leave a route without one."""


def _request_settings(pick: Callable[[str, str, str], str]) -> dict[str, Any]:
    """Upload size and slow-client limits (RELIABILITY: upload abuse) and the request thread pool,
    checked at start-up."""
    values: dict[str, Any] = {}
    for env_name, key, default, least in (  # (each also has a ceiling where one is needed, below)
            ("CALLVAULT_MAX_UPLOAD_BYTES", "max_upload_bytes", 512 * 1024 * 1024, 1024),
            ("CALLVAULT_UPLOAD_MIN_BYTES_PER_SECOND", "upload_min_bytes_per_second", 16 * 1024, 1),
            ("CALLVAULT_UPLOAD_GRACE_SECONDS", "upload_grace_seconds", 30, 1),
            ("CALLVAULT_SERVER_THREADS", "server_threads", DEFAULT_SERVER_THREADS, 1)):
        raw = pick(env_name, key, str(default)).strip()
        if not raw.isdigit() or int(raw) < least:
            raise ConfigurationError(f"{env_name} must be a whole number, at least {least} (got {raw!r})")
        values[key] = int(raw)
    if values["max_upload_bytes"] > UPLOAD_BYTES_CEILING:
        raise ConfigurationError(f"CALLVAULT_MAX_UPLOAD_BYTES may be at most {UPLOAD_BYTES_CEILING} (4 GiB): an "
                                 f"upload is held in memory, encrypted, never spooled to disk in clear "
                                 f"(got {values['max_upload_bytes']})")
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
    raw = pick("CALLVAULT_STEP_UP_SECONDS", "step_up_seconds", "300")
    if not raw.isdigit() or not 30 <= int(raw) <= 3600:
        raise ConfigurationError("CALLVAULT_STEP_UP_SECONDS must be a whole number of seconds from 30 to 3600")
    values["step_up_seconds"] = int(raw)
    return values


def _flag(raw: str, name: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{name} must be true or false, not {raw!r}")


def _words(raw: str) -> tuple[str, ...]:
    """A comma/space separated list from the environment, or a TOML list's str()."""
    return tuple(w for w in raw.translate(str.maketrans(",[]'\"", "     ")).split() if w)


def _ops_settings(env: Mapping[str, str], pick: Callable[[str, str, str], str]) -> dict[str, Any]:
    return {
        "json_logs": _flag(pick("CALLVAULT_JSON_LOGS", "json_logs", "false"), "CALLVAULT_JSON_LOGS"),
        "metrics_token": env_or_file(env, "CALLVAULT_METRICS_TOKEN") or None,
        "siprec_stats": pick("CALLVAULT_SIPREC_STATS", "siprec_stats", "") or None,
        "live_tap_ca": _existing_file(pick("CALLVAULT_LIVE_TAP_CA", "live_tap_ca", ""), "CALLVAULT_LIVE_TAP_CA"),
        **_redis_settings(pick),
    }


def _existing_file(raw: str, name: str) -> Path | None:
    if not raw.strip():
        return None
    path = Path(raw.strip()).expanduser()
    if not path.is_file():
        raise ConfigurationError(f"{name}: {path} does not exist or is not a file")
    return path


REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def _redis_settings(pick: Callable[[str, str, str], str]) -> dict[str, Any]:
    """Redis for rate-limit counters, checked at start-up: a typo must not silently mean "database"."""
    url = pick("CALLVAULT_REDIS_URL", "redis_url", "").strip()  # pick() also reads CALLVAULT_REDIS_URL_FILE
    if url and not url.startswith(REDIS_SCHEMES):
        raise ConfigurationError("CALLVAULT_REDIS_URL must start with redis://, rediss:// (TLS) or unix:// "
                                 "(e.g. redis://127.0.0.1:6379/0); leave it unset to keep counters in the database")
    prefix = pick("CALLVAULT_REDIS_PREFIX", "redis_prefix", "callvault:").strip()
    if not prefix or len(prefix) > 64 or any(c.isspace() or c in "*?[]\\" for c in prefix):
        raise ConfigurationError(f"CALLVAULT_REDIS_PREFIX {prefix!r} must be 1-64 characters with no spaces "
                                 "and none of * ? [ ] \\ (e.g. callvault-prod:)")
    return {"redis_url": url or None, "redis_prefix": prefix}


def _oidc_settings(env: Mapping[str, str], pick: Callable[[str, str, str], str],
                   file_conf: Mapping[str, object]) -> OidcSettings | None:
    """OIDC settings, checked at start-up: a half-configured provider is an error, not a silent no-SSO."""
    from urllib.parse import urlsplit

    issuer = pick("CALLVAULT_OIDC_ISSUER", "oidc_issuer", "").rstrip("/")
    if not issuer:
        return None
    parts = urlsplit(issuer)
    loopback = parts.hostname in ("127.0.0.1", "::1", "localhost")
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise ConfigurationError(f"CALLVAULT_OIDC_ISSUER {issuer!r} must be an https:// URL "
                                 "(plain http is accepted only for a provider on loopback, for tests)")
    client_id = pick("CALLVAULT_OIDC_CLIENT_ID", "oidc_client_id", "")
    secret = env_or_file(env, "CALLVAULT_OIDC_CLIENT_SECRET") or ""
    if not client_id or not secret:
        raise ConfigurationError("CALLVAULT_OIDC_ISSUER is set: also set CALLVAULT_OIDC_CLIENT_ID and "
                                 "CALLVAULT_OIDC_CLIENT_SECRET (or CALLVAULT_OIDC_CLIENT_SECRET_FILE)")
    role_map: list[tuple[str, str]] = []
    table = file_conf.get("oidc_role_map")
    if isinstance(table, dict) and not env.get("CALLVAULT_OIDC_ROLE_MAP"):
        role_map = [(str(k), str(v)) for k, v in table.items()]
    else:
        for pair in pick("CALLVAULT_OIDC_ROLE_MAP", "oidc_role_map", "").split(","):
            if not pair.strip():
                continue
            value, sep, role = pair.partition("=")
            if not sep or not value.strip() or not role.strip():
                raise ConfigurationError(f"CALLVAULT_OIDC_ROLE_MAP: {pair.strip()!r} is not CLAIM_VALUE=ROLE "
                                         "(e.g. cv-admins=it_staff,cv-agents=specialist)")
            role_map.append((value.strip(), role.strip()))
    provisioning = pick("CALLVAULT_OIDC_PROVISIONING", "oidc_provisioning", "existing").strip().lower()
    if provisioning not in ("existing", "jit"):
        raise ConfigurationError("CALLVAULT_OIDC_PROVISIONING must be 'existing' (accounts must be created first) "
                                 "or 'jit' (created at first sign-in)")
    defaults = OidcSettings(issuer="", client_id="", client_secret="")
    return OidcSettings(
        issuer=issuer, client_id=client_id, client_secret=secret, role_map=tuple(role_map),
        role_claim=pick("CALLVAULT_OIDC_ROLE_CLAIM", "oidc_role_claim", defaults.role_claim),
        groups_claim=pick("CALLVAULT_OIDC_GROUPS_CLAIM", "oidc_groups_claim", defaults.groups_claim),
        username_claim=pick("CALLVAULT_OIDC_USERNAME_CLAIM", "oidc_username_claim", defaults.username_claim),
        scopes=_words(pick("CALLVAULT_OIDC_SCOPES", "oidc_scopes", " ".join(defaults.scopes))),
        mfa_amr=_words(pick("CALLVAULT_OIDC_MFA_AMR", "oidc_mfa_amr", ",".join(defaults.mfa_amr))),
        mfa_acr=_words(pick("CALLVAULT_OIDC_MFA_ACR", "oidc_mfa_acr", "")),
        provisioning=provisioning,
        jit_role=pick("CALLVAULT_OIDC_JIT_ROLE", "oidc_jit_role", "").strip() or None,
        button_label=pick("CALLVAULT_OIDC_BUTTON_LABEL", "oidc_button_label", defaults.button_label),
    )
