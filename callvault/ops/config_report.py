"""What ``callvault config show`` prints: every setting's effective value and where it came from, with
secrets redacted, so an operator can compare two nodes or a support person can read it safely.

Sources, as ``core.settings`` applies them: the environment (``env``), a ``*_FILE`` named in the
environment (``file``), ``<data-dir>/config.toml`` (``config.toml``) or the built-in ``default``.
A secret is shown only as ``(set)``/``(not set)``; every URL-like value loses its credentials (``redact_url``).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from callvault.core.settings import Settings

REDACTED = "(set, redacted)"


@dataclass(frozen=True)
class Spec:
    env: str
    key: str | None = None
    """Its name in config.toml, when it may be set there."""
    secret: bool = False
    value: Callable[[Settings], object] | None = None
    """The effective value from ``Settings``; None: read straight from the environment (default ``default``)."""
    default: str = ""


def _oidc(attr: str) -> Callable[[Settings], object]:
    return lambda s: getattr(s.oidc, attr) if s.oidc else None


SPECS: tuple[Spec, ...] = (
    Spec("CALLVAULT_DATA_DIR", None, value=lambda s: s.data_dir),
    Spec("CALLVAULT_DATABASE_URL", "database_url", value=lambda s: redact_url(s.database_url)),
    Spec("CALLVAULT_STORAGE_URL", "storage_url", value=lambda s: redact_url(s.storage_url)),
    Spec("CALLVAULT_KEY_DIR", "key_dir", value=lambda s: s.key_dir),
    Spec("CALLVAULT_KEK", None, secret=True),
    Spec("CALLVAULT_KEK_ID", None),
    Spec("CALLVAULT_S3_ACCESS_KEY", None, secret=True),
    Spec("CALLVAULT_S3_SECRET_KEY", None, secret=True),
    Spec("CALLVAULT_DEFAULT_REGION", "default_region", value=lambda s: s.default_region),
    Spec("CALLVAULT_TOKEN_TTL_SECONDS", "token_ttl_seconds", value=lambda s: s.token_ttl_seconds),
    Spec("CALLVAULT_TRUSTED_PROXIES", "trusted_proxies", value=lambda s: ",".join(s.trusted_proxies)),
    Spec("CALLVAULT_STEP_UP_SECONDS", "step_up_seconds", value=lambda s: s.step_up_seconds),
    Spec("CALLVAULT_SESSION_IDLE_SECONDS", "session_idle_seconds", value=lambda s: s.session_idle_seconds),
    Spec("CALLVAULT_SESSION_ABSOLUTE_SECONDS", "session_absolute_seconds",
         value=lambda s: s.session_absolute_seconds),
    Spec("CALLVAULT_AUDIT_ANCHOR_DIR", "audit_anchor_dir", value=lambda s: s.audit_anchor_dir),
    Spec("CALLVAULT_MAX_UPLOAD_BYTES", "max_upload_bytes", value=lambda s: s.max_upload_bytes),
    Spec("CALLVAULT_UPLOAD_MIN_BYTES_PER_SECOND", "upload_min_bytes_per_second",
         value=lambda s: s.upload_min_bytes_per_second),
    Spec("CALLVAULT_UPLOAD_GRACE_SECONDS", "upload_grace_seconds", value=lambda s: s.upload_grace_seconds),
    Spec("CALLVAULT_SERVER_THREADS", "server_threads", value=lambda s: s.server_threads),
    Spec("CALLVAULT_PUBLIC_URL", None),
    Spec("CALLVAULT_SMTP_HOST", None, default="localhost"),
    Spec("CALLVAULT_SMTP_PORT", None, default="25"),
    Spec("CALLVAULT_SMTP_FROM", None, default="callvault@localhost"),
    Spec("CALLVAULT_SMTP_STARTTLS", None, default="0"),
    Spec("CALLVAULT_SMTP_USERNAME", None),
    Spec("CALLVAULT_SMTP_PASSWORD", None, secret=True),
    Spec("CALLVAULT_MAIL_DOMAIN", None, default="localhost"),
    Spec("CALLVAULT_SEARCH_KEY", None, secret=True),
    Spec("CALLVAULT_AUDIT_SIGNING_KEY_FILE", None),
    Spec("CALLVAULT_CRM_WEBHOOK_SECRET", None, secret=True),
    Spec("CALLVAULT_ASR_MODEL_DIR", None),
    Spec("CALLVAULT_ASR_THREADS", None, default="1"),
    Spec("CALLVAULT_SUBJECT_REMINDER_DAYS", None, default="3,1"),
    Spec("CALLVAULT_SMS_URL", None),
    Spec("CALLVAULT_SMS_TOKEN", None, secret=True),
    Spec("CALLVAULT_JSON_LOGS", "json_logs", value=lambda s: s.json_logs),
    Spec("CALLVAULT_METRICS_TOKEN", None, secret=True, value=lambda s: s.metrics_token),
    Spec("CALLVAULT_SIPREC_STATS", "siprec_stats", value=lambda s: s.siprec_stats),
    Spec("CALLVAULT_LIVE_TAP_CA", "live_tap_ca", value=lambda s: str(s.live_tap_ca) if s.live_tap_ca else None),
    Spec("CALLVAULT_REDIS_URL", "redis_url", value=lambda s: redact_url(s.redis_url) if s.redis_url else None),
    Spec("CALLVAULT_REDIS_PREFIX", "redis_prefix", value=lambda s: s.redis_prefix),
    Spec("CALLVAULT_OIDC_ISSUER", "oidc_issuer", value=_oidc("issuer")),
    Spec("CALLVAULT_OIDC_CLIENT_ID", "oidc_client_id", value=_oidc("client_id")),
    Spec("CALLVAULT_OIDC_CLIENT_SECRET", None, secret=True, value=_oidc("client_secret")),
    Spec("CALLVAULT_OIDC_ROLE_MAP", "oidc_role_map",
         value=lambda s: ",".join(f"{k}={v}" for k, v in s.oidc.role_map) if s.oidc else None),
    Spec("CALLVAULT_OIDC_ROLE_CLAIM", "oidc_role_claim", value=_oidc("role_claim")),
    Spec("CALLVAULT_OIDC_GROUPS_CLAIM", "oidc_groups_claim", value=_oidc("groups_claim")),
    Spec("CALLVAULT_OIDC_USERNAME_CLAIM", "oidc_username_claim", value=_oidc("username_claim")),
    Spec("CALLVAULT_OIDC_SCOPES", "oidc_scopes", value=lambda s: " ".join(s.oidc.scopes) if s.oidc else None),
    Spec("CALLVAULT_OIDC_MFA_AMR", "oidc_mfa_amr", value=lambda s: ",".join(s.oidc.mfa_amr) if s.oidc else None),
    Spec("CALLVAULT_OIDC_MFA_ACR", "oidc_mfa_acr", value=lambda s: ",".join(s.oidc.mfa_acr) if s.oidc else None),
    Spec("CALLVAULT_OIDC_PROVISIONING", "oidc_provisioning", value=_oidc("provisioning")),
    Spec("CALLVAULT_OIDC_JIT_ROLE", "oidc_jit_role", value=_oidc("jit_role")),
    Spec("CALLVAULT_OIDC_BUTTON_LABEL", "oidc_button_label", value=_oidc("button_label")),
)


@dataclass(frozen=True)
class SettingLine:
    name: str
    value: str
    source: str


SECRET_QUERY = re.compile(r"pass|secret|token|key|sig|credential|auth", re.IGNORECASE)
"""Query parameters whose value is a credential (``password``, ``sslpassword``, ``secret_key``,
``access_key``, ``token``, ``X-Amz-Signature``, ...)."""
USER_IS_SECRET = frozenset({"s3", "https", "http"})
"""Schemes whose user part is itself a credential (an S3 access key id, an API user): hidden too.
A database or Redis user name stays: it says which account the node uses, which support needs."""
UNPARSABLE = "(set, redacted: not a valid URL)"


def redact_url(url: str) -> str:
    """The URL without its credentials (``postgresql://cv:***@db/cv``, ``s3://***:***@bucket``, ``?token=***``).

    Why every part: people put S3 key pairs in the user part and passwords in the query as often as
    in the password slot, and ``config show`` output ends up in support tickets. A URL that does not
    parse is hidden whole, since where its secret sits cannot be known."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return UNPARSABLE
    if "@" in parts.netloc:
        userinfo, host = parts.netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        if parts.scheme.lower() in USER_IS_SECRET and user:
            user = "***"
        netloc = f"{user}:***@{host}" if password is not None else f"{user}@{host}"
        parts = parts._replace(netloc=netloc)
    if parts.query:
        pairs = [(k, "***" if SECRET_QUERY.search(k) and v else v)
                 for k, v in parse_qsl(parts.query, keep_blank_values=True)]
        parts = parts._replace(query="&".join(f"{quote(k, safe='_-.~')}={quote(v, safe='_-.~:/*')}"
                                              for k, v in pairs))
    return urlunsplit(parts)


def _file_conf(settings: Settings) -> dict[str, object]:
    try:
        return tomllib.loads(settings.config_path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}


def describe(settings: Settings) -> list[SettingLine]:
    """One line per known setting, in a stable order."""
    env = settings.env
    conf = _file_conf(settings)
    lines: list[SettingLine] = []
    for spec in SPECS:
        if env.get(spec.env):
            source = "env"
        elif env.get(spec.env + "_FILE"):
            source = f"file {env[spec.env + '_FILE']}"
        elif spec.key is not None and spec.key in conf:
            source = "config.toml"
        else:
            source = "--data-dir or default" if spec.env == "CALLVAULT_DATA_DIR" else "default"
        raw = spec.value(settings) if spec.value is not None else (env.get(spec.env) or spec.default or None)
        if spec.secret:
            shown = REDACTED if raw or source != "default" else "(not set)"
        elif raw is None or raw == "":
            shown = "(not set)"
        else:
            shown = str(raw).lower() if isinstance(raw, bool) else str(raw)
            if "://" in shown:  # every URL-like setting (SMS gateway, public URL, issuer, ...), not only the known ones
                shown = redact_url(shown)
        lines.append(SettingLine(spec.env, shown, source))
    return lines
