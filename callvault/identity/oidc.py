"""Single sign-on through an OpenID Connect provider: authorization code flow with PKCE, ``state`` and
``nonce``, ending in the same server-side web session a password sign-in makes.

Contracts:
- What a sign-in in flight needs (hashed ``state``, ``nonce``, PKCE verifier) is a database row, so
  the provider may send the browser back to any node; each row is used once and lives 10 minutes.
  The edge also binds it to the browser with a cookie holding the ``state`` (no login CSRF).
- The ID token is believed only when its signature checks against the provider's JWKS (asymmetric
  algorithms only, never ``none``), ``iss`` is the configured issuer, ``aud`` names our client id,
  it has not expired and its ``nonce`` is the one this sign-in sent. Anything else: refused, audited.
- An account is reached only through a link of the provider's (issuer, subject), made on purpose: by
  the account's owner signed in locally (password and TOTP) who starts a linking flow from their
  account page, by an administrator (``callvault users sso-link``), or when just-in-time provisioning
  creates the account. A username claim naming an existing account never links it (issue 24: anyone
  controlling that name at the provider took the account over); the person is told how to link.
- The role comes from the token's role/group claims only through the administrator's ``role_map``
  (first match wins), and a change is audited and ends the account's other tokens and sessions (made under
  the old role's sign-in rules). Without a map the role never changes.
- MFA: when the policy requires it for the role, the provider must prove it (``amr``/``acr`` from the
  accepted lists); otherwise the person owes our own TOTP code (or must set it up) exactly as after a
  password.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx2 as httpx  # the HTTP client authlib's httpx integration is built on
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import OAuth2Client
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from callvault.audit import service as audit
from callvault.core.clock import Clock, system_clock
from callvault.core.errors import AuthenticationFailed, ConfigurationError, Conflict, InvalidInput
from callvault.core.ids import new_id
from callvault.core.settings import OidcSettings
from callvault.identity import lifecycle, mfa, throttle
from callvault.identity import service as identity
from callvault.identity.counters import Counters
from callvault.identity.models import OidcIdentity, OidcLoginState, User
from callvault.identity.passwords import hash_password
from callvault.policy.schema import PolicyDocument

FLOW_LIFETIME = timedelta(minutes=10)
LEEWAY_SECONDS = 60
"""Clock skew tolerated between us and the provider for ``exp``/``iat``."""
ACCEPTED_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"]
METADATA_TTL_SECONDS = 300
HTTP_TIMEOUT = 10.0


class SsoRefused(AuthenticationFailed):
    """The provider's answer does not establish who this is; ``message`` says why (for the person and the log)."""


@dataclass(frozen=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str


class ProviderClient:
    """Talks to one provider. Caches discovery and keys for a few minutes: a cache both nodes refill
    the same way, not state they could disagree on. A token signed with an unknown ``kid`` refreshes
    the keys once (the provider rotated them)."""

    def __init__(self, settings: OidcSettings, *, transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        self._transport = transport
        self._lock = threading.Lock()
        self._metadata: tuple[float, ProviderMetadata] | None = None
        self._keys: tuple[float, KeySet] | None = None

    def _get_json(self, url: str) -> dict[str, Any]:
        try:
            with httpx.Client(timeout=HTTP_TIMEOUT, transport=self._transport) as client:
                response = client.get(url)
                response.raise_for_status()
                body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ConfigurationError(f"the identity provider could not be reached at {url}: {exc}") from exc
        if not isinstance(body, dict):
            raise ConfigurationError(f"the identity provider answered {url} with something other than a JSON object")
        return body

    def metadata(self) -> ProviderMetadata:
        with self._lock:
            if self._metadata and time.monotonic() - self._metadata[0] < METADATA_TTL_SECONDS:
                return self._metadata[1]
        url = self.settings.issuer + "/.well-known/openid-configuration"
        doc = self._get_json(url)
        try:
            found = ProviderMetadata(issuer=str(doc["issuer"]).rstrip("/"),
                                     authorization_endpoint=str(doc["authorization_endpoint"]),
                                     token_endpoint=str(doc["token_endpoint"]), jwks_uri=str(doc["jwks_uri"]))
        except KeyError as exc:
            raise ConfigurationError(f"the identity provider's discovery document lacks {exc}") from exc
        if found.issuer != self.settings.issuer:
            raise ConfigurationError(f"the identity provider calls itself {found.issuer!r}, but "
                                     f"CALLVAULT_OIDC_ISSUER is {self.settings.issuer!r}; they must be the same")
        with self._lock:
            self._metadata = (time.monotonic(), found)
        return found

    def keys(self, *, refresh: bool = False) -> KeySet:
        with self._lock:
            if not refresh and self._keys and time.monotonic() - self._keys[0] < METADATA_TTL_SECONDS:
                return self._keys[1]
        doc = self._get_json(self.metadata().jwks_uri)
        try:
            keyset = KeySet.import_key_set(doc)  # type: ignore[arg-type]
        except (JoseError, ValueError, KeyError, TypeError) as exc:
            raise ConfigurationError(f"the identity provider's JWKS cannot be read: {exc}") from exc
        with self._lock:
            self._keys = (time.monotonic(), keyset)
        return keyset

    def oauth(self, redirect_uri: str) -> OAuth2Client:
        return OAuth2Client(self.settings.client_id, self.settings.client_secret,
                            scope=" ".join(self.settings.scopes), redirect_uri=redirect_uri,
                            code_challenge_method="S256",
                            token_endpoint_auth_method="client_secret_basic",  # noqa: S106 - a method name
                            timeout=HTTP_TIMEOUT, transport=self._transport)


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class FlowStart:
    authorization_url: str
    state: str
    """Also set as a short-lived cookie by the edge, binding the flow to this browser."""


def begin(session: Session, *, client: ProviderClient, redirect_uri: str, clock: Clock = system_clock,
          link_user_id: str | None = None) -> FlowStart:
    """Record a sign-in in flight and build the provider URL to send the browser to. With
    ``link_user_id`` (an owner signed in locally) the flow links that account instead of signing in."""
    endpoint = client.metadata().authorization_endpoint  # network first: no database lock held while waiting
    now = clock.now()
    session.execute(delete(OidcLoginState).where(OidcLoginState.expires_at < now - timedelta(hours=1)))
    state, nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(64)
    session.add(OidcLoginState(id=new_id(), state_sha256=_hash(state), nonce=nonce, code_verifier=verifier,
                               redirect_uri=redirect_uri[:500], created_at=now, expires_at=now + FLOW_LIFETIME,
                               link_user_id=link_user_id))
    with client.oauth(redirect_uri) as oauth:
        url, _ = oauth.create_authorization_url(endpoint, state=state, nonce=nonce, code_verifier=verifier)
    return FlowStart(authorization_url=url, state=state)


@dataclass(frozen=True)
class Flow:
    """A sign-in in flight, claimed: what the callback needs to finish it."""

    nonce: str
    code_verifier: str
    redirect_uri: str
    link_user_id: str | None = None
    """The account whose owner started this flow to link it (None: an ordinary sign-in)."""


def claim_flow(session: Session, *, state: str, clock: Clock = system_clock) -> Flow:
    """Mark the sign-in behind ``state`` used and return it. The edge commits this on its own, before
    talking to the provider, so a refused answer cannot be replayed against the same flow."""
    row = session.scalar(select(OidcLoginState).where(OidcLoginState.state_sha256 == _hash(state)))
    now = clock.now()
    if row is None or row.used_at is not None or row.expires_at <= now:
        raise SsoRefused("this single sign-on attempt expired or was already used; start again from the sign-in page")
    row.used_at = now
    return Flow(nonce=row.nonce, code_verifier=row.code_verifier, redirect_uri=row.redirect_uri,
                link_user_id=row.link_user_id)


def exchange_code(*, client: ProviderClient, flow: Flow, code: str, clock: Clock = system_clock) -> dict[str, Any]:
    """Trade the code (with the PKCE verifier) for tokens and return the checked ID token's claims.
    Network only: called outside any database transaction."""
    try:
        with client.oauth(flow.redirect_uri) as oauth:
            token = oauth.fetch_token(client.metadata().token_endpoint, code=code, code_verifier=flow.code_verifier)
    except OAuthError as exc:
        raise SsoRefused(f"the identity provider refused the sign-in code ({exc.error}: {exc.description})") from exc
    except httpx.HTTPError as exc:
        raise ConfigurationError(f"the identity provider's token endpoint could not be reached: {exc}") from exc
    id_token = token.get("id_token")
    if not isinstance(id_token, str):
        raise SsoRefused("the identity provider returned no ID token (is the 'openid' scope allowed?)")
    return validate_id_token(id_token, client=client, nonce=flow.nonce, now=clock.now())


def validate_id_token(id_token: str, *, client: ProviderClient, nonce: str, now: datetime) -> dict[str, Any]:
    """The ID token's claims, once signature, issuer, audience, expiry and nonce all check out."""
    try:
        try:
            token = jwt.decode(id_token, client.keys(), algorithms=ACCEPTED_ALGORITHMS)
        except JoseError:
            token = jwt.decode(id_token, client.keys(refresh=True), algorithms=ACCEPTED_ALGORITHMS)
    except (JoseError, ValueError) as exc:
        raise SsoRefused(f"the identity provider's ID token failed its signature check ({exc})") from exc
    claims: dict[str, Any] = dict(token.claims)
    expected = client.settings
    if str(claims.get("iss", "")).rstrip("/") != expected.issuer:
        raise SsoRefused(f"the ID token was issued by {claims.get('iss')!r}, not the configured provider")
    audience = claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else list(audience or [])
    if expected.client_id not in audiences:
        raise SsoRefused("the ID token was issued for another application (aud does not name our client id)")
    if len(audiences) > 1 and claims.get("azp") not in (None, expected.client_id):
        raise SsoRefused("the ID token's authorised party (azp) is another application")
    stamp = now.timestamp()
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or exp + LEEWAY_SECONDS <= stamp:
        raise SsoRefused("the ID token has expired (or carries no expiry); sign in again")
    iat = claims.get("iat")
    if isinstance(iat, int | float) and iat - LEEWAY_SECONDS > stamp:
        raise SsoRefused("the ID token was issued in the future; check the clocks of callvault and the provider")
    if not secrets.compare_digest(str(claims.get("nonce", "")), nonce):
        raise SsoRefused("the ID token does not answer this sign-in (nonce mismatch): a replayed token")
    if not claims.get("sub"):
        raise SsoRefused("the ID token names no subject (sub)")
    return claims


def _values(claim: object) -> list[str]:
    if isinstance(claim, str):
        return [claim]
    if isinstance(claim, list | tuple):
        return [str(v) for v in claim]
    return []


def mapped_role(settings: OidcSettings, claims: dict[str, Any]) -> str | None:
    """The role the token's role/group claims map to (first ``role_map`` pair that matches); None without
    a map. A claim value is never taken as a role id by itself: the provider's administrators (or anyone
    who can edit a claim there) must not decide callvault roles unless callvault's administrator said so."""
    if not settings.role_map:
        return None
    carried = set(_values(claims.get(settings.role_claim))) | set(_values(claims.get(settings.groups_claim)))
    for value, role in settings.role_map:
        if value in carried:
            return role
    return None


def idp_proved_mfa(settings: OidcSettings, claims: dict[str, Any]) -> bool:
    """Whether the token's ``amr`` or ``acr`` is one the operator accepts as a second factor."""
    amr = set(_values(claims.get("amr")))
    return bool(amr & set(settings.mfa_amr)) or str(claims.get("acr", "")) in settings.mfa_acr


@dataclass(frozen=True)
class SsoSignIn:
    user: User
    stage: identity.Stage
    idp_mfa: bool


NOT_LINKED = ("this identity-provider account is not linked to a callvault account. If you have one, sign in with "
              "your callvault password and one-time code, open Account and choose 'Link single sign-on'; or ask "
              "an administrator to link it (callvault users sso-link)")
"""Said whether or not the username claim names an account: the answer must not tell names apart."""


def _jit_role(settings: OidcSettings, role: str | None, policy: PolicyDocument) -> str:
    """The role a just-in-time account gets: the mapped one, else the configured no-content default."""
    if role is not None:
        return role
    default = settings.jit_role
    if default is None:
        raise SsoRefused("the identity provider gave no role or group that maps to a callvault role, and no "
                         "default role for new accounts is set (CALLVAULT_OIDC_ROLE_MAP, CALLVAULT_OIDC_JIT_ROLE)")
    rule = policy.roles.get(default)
    if rule is None or rule.content_scope != "none" or rule.can_administer:
        raise SsoRefused(f"CALLVAULT_OIDC_JIT_ROLE {default!r} must be a role of the policy in force that reaches "
                         "no recordings and administers nothing; ask an administrator")
    return default


def link(session: Session, *, user: User, issuer: str, subject: str, via: str, actor: str, actor_role: str = "",
         source_ip: str | None = None, clock: Clock = system_clock) -> OidcIdentity:
    """Link the provider's (issuer, subject) to ``user``, audited ``user.sso_linked`` with ``via`` (``owner``,
    ``admin``, ``jit``). Conflict when the subject already reaches another account, or ``user`` already
    has another subject at this provider (unlink first: one person, one provider account)."""
    subject = subject.strip()
    if not subject or len(subject) > 255:
        raise InvalidInput("the identity provider's subject (sub) must be 1 to 255 characters")
    found = session.scalar(select(OidcIdentity).where(OidcIdentity.issuer == issuer, OidcIdentity.subject == subject))
    if found is not None:
        if found.user_id == user.id:
            return found
        raise Conflict("this identity-provider account is already linked to another callvault account; "
                       "an administrator must unlink it first (callvault users sso-unlink)")
    if session.scalar(select(OidcIdentity.id).where(OidcIdentity.user_id == user.id, OidcIdentity.issuer == issuer)):
        raise Conflict(f"the callvault account {user.username!r} is already linked to another account at this "
                       "identity provider; unlink it first (callvault users sso-unlink)")
    row = OidcIdentity(id=new_id(), user_id=user.id, issuer=issuer, subject=subject, created_at=clock.now(),
                       linked_via=via, linked_by=actor)
    session.add(row)
    session.flush()
    audit.append(session, audit.AuditEvent(
        actor=actor, actor_role=actor_role, action="user.sso_linked", object_type="user", object_id=user.id,
        source_ip=source_ip, details={"username": user.username, "issuer": issuer, "subject": subject, "via": via},
        clauses=("A12",)), clock=clock)
    return row


def unlink(session: Session, *, user: User, issuer: str | None, actor: str, actor_role: str = "",
           clock: Clock = system_clock) -> int:
    """Remove ``user``'s links (at ``issuer``, or at every provider), audited ``user.sso_unlinked``."""
    query = select(OidcIdentity).where(OidcIdentity.user_id == user.id)
    if issuer is not None:
        query = query.where(OidcIdentity.issuer == issuer)
    rows = list(session.scalars(query))
    for row in rows:
        audit.append(session, audit.AuditEvent(
            actor=actor, actor_role=actor_role, action="user.sso_unlinked", object_type="user", object_id=user.id,
            details={"username": user.username, "issuer": row.issuer, "subject": row.subject,
                     "was_linked_via": row.linked_via}, clauses=("A12",)), clock=clock)
        session.delete(row)
    return len(rows)


def links(session: Session) -> list[tuple[User, OidcIdentity]]:
    """Every link with its account, for review (``callvault users sso-links``)."""
    return [(u, i) for i, u in session.execute(select(OidcIdentity, User).join(User, User.id == OidcIdentity.user_id)
                                                .order_by(User.username, OidcIdentity.issuer))]


def link_owner(session: Session, *, settings: OidcSettings, claims: dict[str, Any], flow: Flow,
               source_ip: str | None, clock: Clock = system_clock) -> User:
    """Finish a linking flow the account's owner started from their account page.

    Why this proves ownership: the flow row names the account, and only a full web session whose first
    factor was the password (plus TOTP where the policy wants it) can start one (the edge checks, with
    its CSRF token); the ``state`` cookie binds the callback to that same browser. The provider's
    redirect is cross-site, so the SameSite=Strict session cookie itself is not sent on the callback.
    Signs nobody in and changes no role."""
    assert flow.link_user_id is not None
    user = session.get(User, flow.link_user_id)
    if user is None or not user.active:
        raise SsoRefused("the callvault account that started this linking is gone or deactivated")
    try:
        link(session, user=user, issuer=settings.issuer, subject=str(claims["sub"]), via="owner", actor=user.username,
             actor_role=user.role, source_ip=source_ip, clock=clock)
    except Conflict as exc:
        raise SsoRefused(exc.message) from exc
    return user


def _link_user(session: Session, *, settings: OidcSettings, claims: dict[str, Any], role: str | None,
               policy: PolicyDocument, clock: Clock) -> User:
    subject = str(claims["sub"])[:255]
    found = session.scalar(select(OidcIdentity).where(OidcIdentity.issuer == settings.issuer,
                                                      OidcIdentity.subject == subject))
    now = clock.now()
    if found is not None:
        user = session.get(User, found.user_id)
        assert user is not None  # the link is deleted with the account (ON DELETE CASCADE)
        found.last_sign_in_at = now
        return user
    if settings.provisioning != "jit":
        raise SsoRefused(NOT_LINKED)
    username = str(claims.get(settings.username_claim) or "").strip().lower()
    if not username:
        raise SsoRefused(f"the ID token carries no {settings.username_claim!r} claim to name a new callvault account "
                         "(CALLVAULT_OIDC_USERNAME_CLAIM)")
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        # An existing local account is never taken over by name: its owner (or an administrator) links it.
        raise SsoRefused(NOT_LINKED)
    if not identity.USERNAME_RE.match(username):
        raise SsoRefused(f"{username!r} cannot be a callvault account name (2-64 lowercase letters, digits, "
                         "'.', '_', '-')")
    new_role = _jit_role(settings, role, policy)
    user = User(id=new_id(), username=username, display_name=str(claims.get("name") or username)[:200],
                role=new_role, password_hash=hash_password(secrets.token_urlsafe(32)), active=True, created_at=now)
    session.add(user)
    session.flush()
    audit.append(session, audit.AuditEvent(
        actor="sso", action="user.created", object_type="user", object_id=user.id,
        details={"username": username, "role": new_role, "via": "oidc just-in-time", "issuer": settings.issuer,
                 "role_source": "oidc role map" if role is not None else "CALLVAULT_OIDC_JIT_ROLE"}), clock=clock)
    found = link(session, user=user, issuer=settings.issuer, subject=subject, via="jit", actor="sso", clock=clock)
    found.last_sign_in_at = now
    return user


def finish(
    session: Session, *, settings: OidcSettings, claims: dict[str, Any], policy: PolicyDocument,
    source_ip: str | None, counters: Counters, clock: Clock = system_clock,
) -> SsoSignIn:
    """Checked claims → the account, its role, and how far it is signed in (see the module doc).
    Refusals raise ``SsoRefused``; the edge records them in a transaction of their own."""
    role = mapped_role(settings, claims)
    if role is not None and role not in policy.roles:
        raise SsoRefused(f"the identity provider's claims map to role {role!r}, which the policy in force does not "
                         f"define (roles: {', '.join(sorted(policy.roles))})")
    if role is None and settings.role_map:
        raise SsoRefused("your identity provider account carries no role or group that callvault maps to a role; "
                         "ask an administrator")
    user = _link_user(session, settings=settings, claims=claims, role=role, policy=policy, clock=clock)
    if not user.active:
        raise SsoRefused("this callvault account is deactivated")
    lock = throttle.active_lock(session, counters=counters, username=user.username, address=source_ip,
                                now=clock.now())
    if lock is not None:
        raise identity.SignInLocked(lock.until)
    if role is not None and role != user.role:
        audit.append(session, audit.AuditEvent(
            actor="sso", action="user.role_changed", object_type="user", object_id=user.id,
            details={"username": user.username, "from": user.role, "to": role, "source": "oidc claims",
                     "issuer": settings.issuer}, clauses=("A12",)), clock=clock)
        old_role, user.role = user.role, role
        # Tokens and sessions made under the old role must not carry on under this one (finding W3); the
        # sign-in under way makes its own new session after this, under the new role's rules.
        lifecycle.end_credentials_for_role_change(session, user=user, old_role=old_role, actor="sso",
                                                  source_ip=source_ip, clock=clock)
    proved = idp_proved_mfa(settings, claims)
    if identity.mfa_required(policy, user) and not proved:
        stage: identity.Stage = "mfa" if mfa.is_enrolled(session, user) else "enrol"
        audit.append(session, audit.AuditEvent(
            actor=user.username, actor_role=user.role, action="auth.idp_verified", source_ip=source_ip,
            reason="the provider did not prove a second factor: one-time code owed" if stage == "mfa"
            else "the provider did not prove a second factor: MFA set-up required by the policy",
            details={"amr": _values(claims.get("amr")), "acr": claims.get("acr")}), clock=clock)
        return SsoSignIn(user=user, stage=stage, idp_mfa=False)
    identity.record_sign_in(session, user=user, source_ip=source_ip, method="oidc+idp-mfa" if proved else "oidc",
                            counters=counters,
                            clock=clock)
    return SsoSignIn(user=user, stage="full", idp_mfa=proved)


def record_refusal(session: Session, *, reason: str, source_ip: str | None, clock: Clock = system_clock) -> None:
    """Put a refused single sign-on on record (its own transaction: the refused one rolls back).
    Not counted towards lockout: no secret was guessed here."""
    audit.append(session, audit.AuditEvent(
        actor="(sso)", action="auth.sign_in", decision="deny", reason=reason[:500], source_ip=source_ip,
        details={"method": "oidc"}, clauses=("A12",)), clock=clock)
