"""Request-scoped dependencies: who is calling, from where, with what authority.

Every request passes three gates, in this order:

1. ``NetworkGuard`` (middleware, every request and WebSocket handshake): the client address
   (``X-Forwarded-For`` believed only from ``CALLVAULT_TRUSTED_PROXIES``) must be inside the policy's
   network allow-list (A11), and, when the policy requires company devices, the trusted proxy must
   vouch for a verified client certificate.
   Only the public notice, its stylesheet and the health checks are exempt.
2. ``get_caller``: a bearer token (``Authorization: Bearer``) or a fully signed-in web session cookie.
   A token may only reach the routes its scopes cover; a cookie-authenticated state-changing request
   must carry the session's CSRF token (``X-CSRF-Token``); the policy's per-role network rule applies.
3. The handler's own call to the domain (``decide()`` for content).

For a bearer token the guard reads the token, its user and their acknowledgement in the same
read-only unit as the policy, and leaves them in the request's scope state for ``get_caller``,
which then checks scope, CSRF and the role's network rule on the event loop: an API request takes
two worker-thread hops (guard, handler) and two transactions instead of four and three. The result
lives only as long as the request. Cookies take ``get_caller``'s own read (the idle-session end may
need to write).

Every refusal at gates 1 and 2 that concerns a known address or user is audited.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Literal, NoReturn

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from callvault.audit import service as audit
from callvault.core.clock import Clock
from callvault.core.errors import AccessDenied, AuthenticationFailed, ConfigurationError, StepUpRequired
from callvault.core.settings import Settings
from callvault.identity import network
from callvault.identity import service as identity
from callvault.identity import sessions as web_sessions
from callvault.identity.models import User, WebSession
from callvault.policy import service as policy_service
from callvault.policy.decide import Actor
from callvault.policy.schema import PolicyDocument
from callvault.runtime import Runtime

log = logging.getLogger("callvault.api")

SESSION_COOKIE = "cv_session"
"""The session cookie's name on plain HTTP (the embedded demo, loopback): browsers take ``__Host-`` only over HTTPS."""
HOST_PREFIX = "__Host-"
"""Over HTTPS every cookie of the session is ``__Host-`` prefixed: the browser then accepts it only with
``Secure``, ``Path=/`` and no ``Domain``, so neither a sibling subdomain nor a plain-HTTP response can plant
or overwrite it (session fixation). Unprefixed cookies are ignored on HTTPS requests."""
CSRF_HEADER = "x-csrf-token"
CLIENT_CERT_HEADER = "x-ssl-client-verify"
"""Set by the TLS-terminating proxy (nginx ``$ssl_client_verify``); believed only from a trusted proxy."""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_PATHS = ("/notice", "/static/", "/healthz", "/readyz")
"""Reachable from anywhere: the public recording notice (B2) must be, and the health checks are for the
load balancer. Nothing here touches recordings or accounts."""

_SUBJECT_PUBLIC = re.compile(r"^/(request(/[0-9a-f-]{36}/verify(-phone)?)?|s/[A-Za-z0-9_-]{20,100})$")
_SUBJECT_PUBLIC_API = re.compile(r"^/api/v1/subject-requests(/[0-9a-f-]{36}/verify(-phone)?)?$")


def _public_subject_path(scope: Scope) -> bool:
    """Callers' requests for their recordings (B7) come from anywhere: the public form, its API (POST
    only: listing the queue is staff work) and the emailed download link. None of them reaches a
    recording without a verified request released by staff (``callvault.subject_requests``)."""
    path: str = scope.get("path", "")
    if _SUBJECT_PUBLIC.match(path):
        return True
    return scope.get("method") == "POST" and bool(_SUBJECT_PUBLIC_API.match(path))


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def secure_request(request: Request) -> bool:
    """Whether the browser reached us over HTTPS: our own TLS, or a trusted proxy's ``X-Forwarded-Proto``
    (the header is believed from ``trusted_proxies`` only, as ``X-Forwarded-For`` is)."""
    if request.url.scheme in ("https", "wss"):
        return True
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[-1].strip().lower()
    return forwarded == "https" and _peer_is_trusted_proxy(request.scope, runtime_of(request).settings)


def cookie_name(request: Request, name: str) -> str:
    """``name`` as this request's browser stores it: ``__Host-`` prefixed over HTTPS (see ``HOST_PREFIX``)."""
    return HOST_PREFIX + name if secure_request(request) else name


def read_cookie(request: Request, name: str) -> str | None:
    """The cookie ``name`` under this request's name for it; an unprefixed copy on HTTPS is not read."""
    return request.cookies.get(cookie_name(request, name))


async def get_runtime(request: Request) -> Runtime:
    """The app's runtime, as a dependency (async: a plain attribute read needs no worker thread)."""
    return runtime_of(request)


def policy_in_force(session: Session, clock: Clock) -> PolicyDocument:
    """The policy in force (parsed once per distinct document; the version is looked up each time)."""
    return policy_service.current_policy(session, clock=clock)


def _client_address(scope: Scope, settings: Settings) -> str | None:
    client = scope.get("client")
    peer = client[0] if client else None
    forwarded = [v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"x-forwarded-for"]
    return network.client_address(peer, forwarded, network.networks(settings.trusted_proxies))


def source_ip(request: Request) -> str | None:
    """The client's address, proxies accounted for (computed once by ``NetworkGuard``)."""
    state_ip = request.scope.get("state", {}).get("client_ip")
    if state_ip is not None:
        return str(state_ip)
    return _client_address(request.scope, runtime_of(request).settings)


def _peer_is_trusted_proxy(scope: Scope, settings: Settings) -> bool:
    client = scope.get("client")
    if not client:
        return False
    peer: str = client[0]
    return any(_in(peer, net) for net in settings.trusted_proxies)


def _in(address: str, cidr: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False


def _audit_network_denial(runtime: Runtime, *, ip: str | None, path: str, reason: str,
                          actor: str = "(anonymous)", role: str = "") -> None:
    with runtime.db.unit_of_work() as session:
        audit.append(session, audit.AuditEvent(
            actor=actor, actor_role=role, action="network.denied", decision="deny", reason=reason, source_ip=ip,
            clauses=("A11",), details={"path": path[:200]}), clock=runtime.clock)


class NetworkGuard:
    """ASGI middleware: the policy's network allow-list on every request (A11). See the module doc."""

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    def _check(self, scope: Scope, ip: str | None) -> tuple[str | None, PolicyDocument]:
        with self.runtime.db.read_only() as session:
            policy = policy_in_force(session, self.runtime.clock)
            problem = self._problem(scope, ip, policy)
            token = _scope_bearer_token(scope) if problem is None else None
            if token is not None:
                # Read in the same read-only unit as the policy, so ``get_caller`` needs neither a transaction nor
                # a worker thread of its own for a token (most API traffic). Cookies take the full path.
                scope["state"]["credential"] = _load_token_credential(session, token, policy, self.runtime.clock)
        return problem, policy

    def _problem(self, scope: Scope, ip: str | None, policy: PolicyDocument) -> str | None:
        rules = policy.network
        if ip is None or not rules.permits(ip):
            return f"address {ip or '(unknown)'} is outside the policy's network allow-list"
        if rules.require_device_certificate:
            headers = dict(scope.get("headers", []))
            verified = headers.get(CLIENT_CERT_HEADER.encode(), b"").decode("latin-1")
            if not (_peer_is_trusted_proxy(scope, self.runtime.settings) and verified == "SUCCESS"):
                return "the policy requires a company device: no verified client certificate"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        ip = _client_address(scope, self.runtime.settings)
        scope.setdefault("state", {})["client_ip"] = ip
        if path in ("/notice", "/healthz", "/readyz") or path.startswith("/static/") or _public_subject_path(scope):
            await self.app(scope, receive, send)
            return
        try:
            problem, policy = await run_in_threadpool(self._check, scope, ip)
        except ConfigurationError as exc:  # e.g. the database is unreachable: a clear 503, not a reset connection
            log.error("service unavailable: %s", exc.message)
            body = json.dumps({"error": "unavailable",
                               "message": "the service is temporarily unavailable; try again shortly"}).encode()
            await send({"type": "http.response.start", "status": 503,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode()), (b"retry-after", b"5")]})
            await send({"type": "http.response.body", "body": body})
            return
        if problem is None:
            scope["state"]["policy"] = policy
            await self.app(scope, receive, send)
            return
        await run_in_threadpool(_audit_network_denial, self.runtime, ip=ip, path=path, reason=problem)
        body = json.dumps({"error": "access_denied", "message": f"callvault cannot be reached from here: {problem}",
                           "reason": problem, "clauses": ["A11"]}).encode()
        await send({"type": "http.response.start", "status": 403,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": body})


    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The same allow-list for a WebSocket handshake (live listening). A refusal is accepted, told
        and closed with 4403 (a browser cannot read a refused handshake's status), like the route's own."""
        ip = _client_address(scope, self.runtime.settings)
        scope.setdefault("state", {})["client_ip"] = ip
        try:
            problem, policy = await run_in_threadpool(self._check, scope, ip)
        except ConfigurationError as exc:
            log.error("service unavailable: %s", exc.message)
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1013, "reason": "temporarily unavailable"})
            return
        if problem is None:
            scope["state"]["policy"] = policy
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        await run_in_threadpool(_audit_network_denial, self.runtime, ip=ip, path=path, reason=problem)
        message = f"callvault cannot be reached from here: {problem}"
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps(
            {"type": "refused", "message": message, "reason": problem, "clauses": ["A11"]})})
        await send({"type": "websocket.close", "code": 4403, "reason": message[:120]})


def bearer_token(request: Request) -> str | None:
    return _scope_bearer_token(request.scope)


def _scope_bearer_token(scope: Scope) -> str | None:
    """The ``Authorization: Bearer`` token of a request (or WebSocket handshake), from its first such
    header (ASGI header names are lower case), or None."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            header = value.decode("latin-1")
            return (header[7:].strip() or None) if header.lower().startswith("bearer ") else None
    return None


@dataclass(frozen=True)
class _TokenCredential:
    """A bearer token resolved by the network guard: what ``get_caller`` needs, read in one read-only unit
    with the policy. ``failure`` is set instead when the token is unknown, expired or revoked."""

    token: str
    policy: PolicyDocument
    user: User | None = None
    actor: Actor | None = None
    scopes: frozenset[str] = frozenset()
    credential_id: str = ""
    failure: AuthenticationFailed | None = None


def _load_token_credential(session: Session, token: str, policy: PolicyDocument, clock: Clock) -> _TokenCredential:
    try:
        row, user, actor = identity.token_caller(session, token, policy=policy, clock=clock)
    except AuthenticationFailed as exc:
        return _TokenCredential(token=token, policy=policy, failure=exc)
    return _TokenCredential(token=token, policy=policy, user=user, actor=actor, scopes=frozenset(row.scopes.split()),
                            credential_id=row.id)


CONTROL_PATH = re.compile(r"^/api/v1/(calls|recordings)/[^/]+/control/?$")
"""Where the telephony integration relays controls and consent evidence: its token needs nothing else."""


def required_scope(method: str, path: str) -> str | None:
    """The token scope a route needs; None: any signed-in token. Unlisted routes need ``admin``."""
    if method == "POST" and CONTROL_PATH.match(path):
        return "calls:control"
    if path.startswith("/api/v1/recordings"):
        # The CRM check quotes what was said (and its flags tell a guesser what was not): transcript content.
        if any(part in path for part in ("/audio", "/export", "/transcript", "/derivative", "/crm-note")):
            return "recordings:play"
        if method == "POST" and path.rstrip("/") == "/api/v1/recordings":
            return "recordings:ingest"
        return "recordings:read" if method in SAFE_METHODS else "admin"
    if path.startswith("/api/v1/quality"):
        if path.endswith("/audio") or path.endswith("/training-clip"):
            return "recordings:play"
        return "recordings:read" if method in SAFE_METHODS else "admin"
    if path.startswith(("/api/v1/access-requests", "/api/v1/grants")):
        return "access:request"
    if (method in SAFE_METHODS and path in ("/api/v1/me", "/api/v1/policy")) or path in (
            "/api/v1/auth/revoke", "/api/v1/auth/step-up"):
        return None
    return "admin"


ENROL_PATHS = ("/api/v1/me/mfa/enrol", "/api/v1/me/mfa/confirm", "/api/v1/auth/revoke", "/api/v1/me")


@dataclass(frozen=True)
class Caller:
    """The signed-in user, the policy in force and the policy engine's view of the user."""

    user: User
    policy: PolicyDocument
    actor: Actor
    source_ip: str | None
    via: Literal["token", "session"] = "token"
    scopes: frozenset[str] = field(default_factory=lambda: frozenset({identity.FULL_SCOPE}))
    credential_id: str = ""
    """The token's or web session's row id (for revocation)."""
    csrf_token: str = ""


def _web_session(request: Request, runtime: Runtime, session: Session) -> WebSession | None:
    cookie = read_cookie(request, SESSION_COOKIE)
    if not cookie:
        return None
    return web_sessions.resolve(session, cookie=cookie, idle_seconds=runtime.settings.session_idle_seconds,
                                clock=runtime.clock)


def _resolve(request: Request, runtime: Runtime, *, allow_enrol: bool) -> Caller:
    caller = _preloaded(request) or _read_caller(request, runtime)
    reason = _refusal(caller, request, allow_enrol=allow_enrol)
    if reason is not None:
        _refuse_role_network(runtime, caller, request, reason)
    return caller


def _refuse_role_network(runtime: Runtime, caller: Caller, request: Request, reason: str) -> NoReturn:
    """Audit, then raise, the policy's per-role network refusal (A11)."""
    _audit_network_denial(runtime, ip=caller.source_ip, path=request.scope.get("path", ""), reason=reason,
                          actor=caller.user.username, role=caller.user.role)
    raise AccessDenied(f"callvault cannot be reached from here: {reason}", clauses=("A11",))


def _read_caller(request: Request, runtime: Runtime) -> Caller:
    """The caller from the database: a bearer token, else a fully signed-in web session cookie."""
    token = bearer_token(request)
    web: tuple[str, str, str] | None = None
    if token is None:
        cookie = read_cookie(request, SESSION_COOKIE) or ""
        idle = runtime.settings.session_idle_seconds
        with runtime.db.read_only() as session:
            ws, must_write = web_sessions.peek(session, cookie=cookie, idle_seconds=idle, clock=runtime.clock)
            if ws is not None and ws.stage == "full":
                web = (ws.id, ws.user_id, ws.csrf_token)
        if must_write:
            # Its own transaction, committed even when the answer is no: an idle session is ended for good.
            with runtime.db.unit_of_work() as session:
                ws = _web_session(request, runtime, session)
                web = (ws.id, ws.user_id, ws.csrf_token) if ws is not None and ws.stage == "full" else None
        if web is None:
            raise AuthenticationFailed("sign in first: send 'Authorization: Bearer TOKEN' (POST /api/v1/auth/token)")
    with runtime.db.read_only() as session:
        policy = request.scope.get("state", {}).get("policy") or policy_in_force(session, runtime.clock)
        if token is not None:
            row, user = identity.token_and_user(session, token, clock=runtime.clock)
            scopes = frozenset(row.scopes.split())
            via: Literal["token", "session"] = "token"
            credential_id, csrf = row.id, ""
        else:
            assert web is not None
            found = session.get(User, web[1])
            if found is None or not found.active:
                raise AuthenticationFailed("sign in again")
            user, scopes, via = found, frozenset({identity.FULL_SCOPE}), "session"
            credential_id, csrf = web[0], web[2]
        actor = identity.actor_for(session, user, policy)
    return Caller(user=user, policy=policy, actor=actor, source_ip=source_ip(request), via=via, scopes=scopes,
                  credential_id=credential_id, csrf_token=csrf)


def _preloaded(request: Request) -> Caller | None:
    """The caller from the guard's read of this request's bearer token (see ``NetworkGuard._check``), or
    None when it did not read one (a cookie, or a path the guard lets through unread)."""
    found = request.scope.get("state", {}).get("credential")
    if not isinstance(found, _TokenCredential) or found.token != bearer_token(request):
        return None
    if found.failure is not None:
        raise found.failure
    assert found.user is not None and found.actor is not None
    return Caller(user=found.user, policy=found.policy, actor=found.actor, source_ip=source_ip(request), via="token",
                  scopes=found.scopes, credential_id=found.credential_id)


def _refusal(caller: Caller, request: Request, *, allow_enrol: bool) -> str | None:
    """The checks on a resolved caller that read nothing: token scope and CSRF (raised), then the
    policy's per-role network rule, whose refusal is returned for the caller to audit and raise."""
    path: str = request.scope.get("path", "")
    _check_scope(caller, request.method, path, allow_enrol=allow_enrol)
    if caller.via == "session" and request.method not in SAFE_METHODS and path.startswith("/api/"):
        sent = request.headers.get(CSRF_HEADER, "")
        if not (sent and hmac.compare_digest(sent, caller.csrf_token)):
            raise AccessDenied("missing or wrong CSRF token: send the X-CSRF-Token header of your session")
    ip, role = caller.source_ip, caller.user.role
    if ip is not None and not caller.policy.network.permits(ip, role):
        return f"role {role} may not connect from {ip} under the policy's network rules"
    return None


def _check_scope(caller: Caller, method: str, path: str, *, allow_enrol: bool) -> None:
    scopes = caller.scopes
    if identity.ENROL_SCOPE in scopes:
        if allow_enrol or path in ENROL_PATHS[2:]:
            return
        raise AccessDenied("set up MFA first (POST /api/v1/me/mfa/enrol, then /api/v1/me/mfa/confirm), "
                           "then sign in again with the one-time code", clauses=("A12",))
    if identity.FULL_SCOPE in scopes or "admin" in scopes:
        return
    needed = required_scope(method, path)
    if needed is not None and needed not in scopes:
        raise AccessDenied(f"this token lacks the scope {needed!r} (it has: {', '.join(sorted(scopes))})")


def resolve_caller(request: Request, runtime: Runtime) -> Caller:
    """``get_caller`` for code already on a worker thread (the web pages' own dependencies)."""
    return _resolve(request, runtime, allow_enrol=False)


async def get_caller(request: Request, runtime: Runtime = Depends(get_runtime)) -> Caller:
    """Resolve the credential in a short transaction; handlers open their own unit of work,
    so that a denial can be committed to the audit log before the request is refused."""
    return await _resolve_async(request, runtime, allow_enrol=False)


async def get_enrolling_caller(request: Request, runtime: Runtime = Depends(get_runtime)) -> Caller:
    """Like ``get_caller`` but also accepts the short-lived token issued to finish MFA set-up."""
    return await _resolve_async(request, runtime, allow_enrol=True)


async def _resolve_async(request: Request, runtime: Runtime, *, allow_enrol: bool) -> Caller:
    """A token the guard already read is checked here on the event loop (it reads nothing more); anything
    else, and the audit of a refusal, goes to a worker thread."""
    caller = _preloaded(request)
    if caller is None:
        return await run_in_threadpool(_resolve, request, runtime, allow_enrol=allow_enrol)
    reason = _refusal(caller, request, allow_enrol=allow_enrol)
    if reason is not None:
        await run_in_threadpool(_refuse_role_network, runtime, caller, request, reason)
    return caller


def require_step_up(runtime: Runtime, caller: Caller, action: str | None = None) -> None:
    """Refuse a download unless this session or token confirmed a one-time code recently (or is an
    unattended client's token scoped ``recordings:download``): ``identity.step_up``, RELIABILITY 17.
    With ``action`` (an approval, a credential made, a policy loaded), the same check for that action,
    which no scoped token passes; answered 403 ``step_up_required`` like a download."""
    from callvault.identity import step_up

    with runtime.db.read_only() as session:
        step_up.require(session, via=caller.via, credential_id=caller.credential_id, scopes=caller.scopes,
                        full_scope=identity.FULL_SCOPE, window_seconds=runtime.settings.step_up_seconds,
                        clock=runtime.clock, action=action)


def step_up_problem(runtime: Runtime, caller: Caller) -> StepUpRequired | None:
    """``require_step_up``'s refusal, or None: for a content route to apply *after* the policy said yes
    (a serve check), so that the person first gets the policy's own answer (an unknown or unreachable call
    looks absent; a missing approval says what to ask for), and a download refused for want of a fresh code
    is on the audit log as the refusal it is, like every other content answer (issue 23, A4)."""
    try:
        require_step_up(runtime, caller)
    except StepUpRequired as exc:
        return exc
    return None
