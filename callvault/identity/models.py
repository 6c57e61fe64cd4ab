"""People and machines that act on callvault."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from callvault.core.db import Base, UTCDateTime


class User(Base):
    """A local account. The role comes from the policy's role vocabulary."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    """Login name; also what call metadata calls ``agent``."""
    display_name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(64))
    """Role id from the policy (``specialist``, ``support_lead``...)."""
    extension: Mapped[str | None] = mapped_column(String(32), nullable=True)
    """The user's own phone extension; specialists may reach only this extension's recordings."""
    team: Mapped[str | None] = mapped_column(String(64), nullable=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    """argon2id hash; never the password."""
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    timezone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """The IANA zone the person chose (Account page); None: the policy's zone. Pages show times in it."""


class ApiToken(Base):
    """A bearer token. Only its SHA-256 is stored, so a database leak yields no usable tokens."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    scopes: Mapped[str] = mapped_column(String(500), default="*", server_default="*")
    """Space-separated scopes (``recordings:read recordings:play``); ``*`` for an interactive sign-in."""
    stepped_up_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """When the holder last re-confirmed a TOTP code (``POST /auth/step-up``); downloads need a recent one."""


class PolicyAcknowledgement(Base):
    """That a user read and accepted one policy document (A10, B13); content access needs it.

    It counts for the content it was given for, named by ``policy_sha256``: another policy that reuses
    the version string (two policies may both say ``2024.1``) needs its own acknowledgement."""

    __tablename__ = "policy_acknowledgements"
    __table_args__ = (UniqueConstraint("user_id", "policy_sha256", name="uq_policy_ack_user_sha256"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    policy_version: Mapped[str] = mapped_column(String(64))
    """The version string as the user saw it (for people to read; it decides nothing)."""
    policy_sha256: Mapped[str] = mapped_column(String(64))
    """The acknowledged document's content hash (``policy_versions.sha256``): what access is checked against."""
    acknowledged_at: Mapped[datetime] = mapped_column(UTCDateTime())


class WebSession(Base):
    """A signed-in browser. Server-side so it can be revoked at once and timed out when idle (A12).

    Only the SHA-256 of the cookie value is stored. ``stage`` says how far sign-in has got: ``mfa``
    (password checked, second factor owed), ``enrol`` (password checked, MFA must be set up first)
    or ``full``. Only a ``full`` session reaches anything but the sign-in pages.
    """

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    session_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    stage: Mapped[str] = mapped_column(String(16))
    csrf_token: Mapped[str] = mapped_column(String(64))
    """Per-session secret every state-changing form must echo."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    """The absolute end, however active the session is."""
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    source_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    first_factor: Mapped[str] = mapped_column(String(16), default="password", server_default="password")
    """How the person proved who they are before any TOTP step: ``password`` or ``oidc`` (for the audit)."""
    stepped_up_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """When the person last re-entered their TOTP code for a download (step-up, RELIABILITY 17)."""


class MfaCredential(Base):
    """A user's TOTP secret, wrapped by the key-encryption key so a database leak yields no codes."""

    __tablename__ = "mfa_credentials"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    kek_id: Mapped[str] = mapped_column(String(64))
    wrapped_secret: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """Set once the user proved they hold the secret; until then it is not a second factor."""
    last_used_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    """The TOTP time step last accepted; a code for this step or an earlier one is a replay."""


class MfaRecoveryCode(Base):
    """A single-use recovery code; only its SHA-256 is kept."""

    __tablename__ = "mfa_recovery_codes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class SignInThrottle(Base):
    """Failed sign-ins per account name or per client address, in the database so every node agrees."""

    __tablename__ = "sign_in_throttles"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    """``account:<name>`` (the name as typed, existing or not) or ``address:<ip>``."""
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class OidcIdentity(Base):
    """Which account an identity-provider subject signs in as. Linked on purpose only: by the account's
    owner after a local sign-in (password and TOTP), by an administrator, or at just-in-time creation;
    never because a token's username claim names an account (issue 24: that let anyone who controls a
    name at the provider take over the local account). Afterwards the subject, not the name, decides."""

    __tablename__ = "oidc_identities"
    __table_args__ = (UniqueConstraint("issuer", "subject", name="uq_oidc_identities_issuer_subject"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    issuer: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    linked_via: Mapped[str] = mapped_column(String(16), server_default="username-match")
    """How the link was made: ``owner`` (the owner signed in locally, then linked), ``admin``, ``jit``
    (created by SSO), or ``username-match`` (made by name alone before migration 0023: review these)."""
    linked_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """Who made it (the owner's or the administrator's username); None for ``username-match``."""


class OidcLoginState(Base):
    """One sign-in through the identity provider in flight: the ``state`` (hashed), the ``nonce`` the
    ID token must carry and the PKCE verifier. In the database, so the callback may land on any node;
    used once, and short-lived."""

    __tablename__ = "oidc_login_states"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    state_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    nonce: Mapped[str] = mapped_column(String(128))
    code_verifier: Mapped[str] = mapped_column(String(128))
    redirect_uri: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    link_user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=True)
    """Set when a locally signed-in owner started this flow to link their account: the callback links the
    provider's subject to this account (and only in that owner's browser session) instead of signing in."""


class AccountCode(Base):
    """A one-time code an administrator issued for one account: ``enrol`` (set up MFA) or ``password``
    (choose a new password after an administrator's reset). Only its SHA-256 is kept; it expires soon,
    works once, and issuing a new one for the same purpose replaces the old one (issue 24 point 7: before
    these, whoever signed in first with the password after an MFA reset enrolled their own authenticator)."""

    __tablename__ = "account_codes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(16))
    """``enrol`` or ``password``."""
    code_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    issued_by: Mapped[str] = mapped_column(String(64))
    """The administrator's username (``cli`` for the command line)."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
