"""Live monitoring over HTTP and WebSocket (A7, A13, A14).

* ``GET /live/calls``: calls being recorded now that the caller may see (their own, and those the
  policy lets them monitor), with who is listening (shown to the agent when the policy says so).
* ``WS /live/calls/{call_id}/listen?purpose=spot_check``: listen to a call while it happens. The
  server asks ``decide()`` (action ``monitor``) and audits, records the monitoring session with a
  one-time ticket, opens the capture process's tap with it and relays the frames (``callvault.live.tap``
  describes them) to the browser. When the call is paused, stopped, marked personal or ends, the
  browser gets ``{"type": "ended", "reason": ..., "message": ...}`` and a close with the reason's code
  (4001 personal, 4002 paused, 4003 stopped, 4004 call ended); every end is audited with its purpose.
  A refusal is a ``{"type": "refused", ...}`` message (the reason and clauses, as the JSON API's 403)
  and a close with 4401/4403/4404/4409, because a browser cannot read a failed handshake's status.

The network guard middleware checks the handshake's address (and the company-device certificate
when the policy requires one) before this endpoint runs; the endpoint then applies the credential
gates itself (bearer token or the web session cookie, the per-role network rules), and for a cookie
the Origin must be this server (no cross-site WebSocket hijacking).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, WebSocket
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.websockets import WebSocketDisconnect, WebSocketState
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from callvault.api.deps import Caller, _resolve, get_caller, get_runtime
from callvault.core.errors import AccessDenied, AuthenticationFailed, CallvaultError, Conflict, NotFound
from callvault.live import service as live
from callvault.live.service import END_REASONS
from callvault.live.tap import REASON_BY_CODE, close_code, is_loopback
from callvault.runtime import Runtime

log = logging.getLogger("callvault.live")
router = APIRouter(tags=["live monitoring"])

TAP_CLOSE_SECONDS = 2.0
"""How long letting go of a capture tap may wait for its closing handshake before dropping the socket
(the listener is told first, and the end recorded, whatever this wait)."""

REFUSAL_CODES = [(AuthenticationFailed, 4401), (AccessDenied, 4403), (NotFound, 4404), (Conflict, 4409)]


class LocalRelays:
    """The live relays this server process holds, by call id (one per app: ``app.state.live_relays``).

    Why: a control filed through this process (the agent's pause, stop or personal) cuts its own
    listeners at once instead of after the capture process's next poll of the database. The capture
    process still ends the tap for every listener on every node, so this only makes the common case
    faster; nothing depends on it being complete (it holds connections, like the sockets themselves).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_call: dict[str, set[Callable[[str], None]]] = {}

    def add(self, call_id: str, cut: Callable[[str], None]) -> None:
        with self._lock:
            self._by_call.setdefault(call_id, set()).add(cut)

    def remove(self, call_id: str, cut: Callable[[str], None]) -> None:
        with self._lock:
            cuts = self._by_call.get(call_id)
            if cuts is not None:
                cuts.discard(cut)
                if not cuts:
                    del self._by_call[call_id]

    def controlled(self, call_id: str, action: str, *, now: bool) -> None:
        """A control was filed (authorised, on the record) for a call being recorded: end its listeners
        here when it takes effect now. Safe to call from any thread."""
        reason = live.END_REASON_BY_CONTROL.get(action)
        if reason is None or not now:
            return
        with self._lock:
            cuts = list(self._by_call.get(call_id, ()))
        for cut in cuts:
            cut(reason)


class LiveCallRead(BaseModel):
    call_id: str
    direction: str
    extension: str | None
    agent: str | None
    team: str | None
    consent_state: str
    state: str
    started_at: str
    seconds: int
    own: bool
    may_monitor: bool
    listeners: list[dict[str, str]]


class LiveOverview(BaseModel):
    monitoring_offered: bool
    purposes: list[str]
    default_purpose: str | None
    parties: str
    calls: list[LiveCallRead]


@router.get("/live/calls", response_model=LiveOverview)
def live_calls(caller: Caller = Depends(get_caller), runtime: Runtime = Depends(get_runtime)) -> LiveOverview:
    """Calls being recorded now that you may see, with their consent state and who is listening."""
    rules = caller.policy.monitoring
    with runtime.db.unit_of_work() as session:
        views = live.visible_calls(session, policy=caller.policy, actor=caller.actor, clock=runtime.clock)
    calls = [LiveCallRead(
        call_id=v.call_id, direction=v.direction, extension=v.extension, agent=v.agent, team=v.team,
        consent_state=v.consent_state, state=v.state, started_at=v.started_at.isoformat(), seconds=v.seconds,
        own=v.own, may_monitor=v.may_monitor,
        listeners=[{"listener": n, "role": r, "purpose": p} for n, r, p in v.listeners]) for v in views]
    purposes = [p for p in rules.purposes if caller.user.role in caller.policy.purposes[p].roles] \
        if caller.user.role in rules.roles else []
    return LiveOverview(monitoring_offered=rules.enabled and bool(purposes), purposes=purposes,
                        default_purpose=rules.default_purpose if rules.default_purpose in purposes else
                        next(iter(purposes), None), parties=rules.parties, calls=calls)


def _ws_caller(websocket: WebSocket, runtime: Runtime) -> Caller:
    """The same credential checks as ``get_caller``, for a WebSocket handshake (a GET)."""
    request = Request({**websocket.scope, "type": "http", "method": "GET"})
    caller = _resolve(request, runtime, allow_enrol=False)
    if caller.via == "session":
        origin = websocket.headers.get("origin", "")
        host = websocket.headers.get("host", "")
        if not origin or urlsplit(origin).netloc != host:
            raise AccessDenied("live listening from a page of another site is refused (Origin does not match)")
    return caller


async def _refuse(websocket: WebSocket, exc: CallvaultError) -> None:
    code = next((c for cls, c in REFUSAL_CODES if isinstance(exc, cls)), 4400)
    body: dict[str, Any] = {"type": "refused", "message": exc.message}
    if isinstance(exc, AccessDenied):
        body.update(reason=exc.reason, clauses=list(exc.clauses))
    await websocket.accept()
    await websocket.send_text(json.dumps(body))
    await websocket.close(code, exc.message[:120])


def _start(runtime: Runtime, caller: Caller, call_id: str, purpose: str | None) -> live.Started:
    try:
        with runtime.db.unit_of_work() as session:
            return live.start_monitoring(session, policy=caller.policy, actor=caller.actor, call_id=call_id,
                                         purpose=purpose, source_ip=caller.source_ip, clock=runtime.clock)
    except AccessDenied as exc:
        with runtime.db.unit_of_work() as session:
            live.audit_denial(session, actor=caller.actor, call_id=call_id, purpose=purpose, exc=exc,
                              source_ip=caller.source_ip, clock=runtime.clock)
        raise


def _end(runtime: Runtime, monitoring_id: str, reason: str, actor: str) -> None:
    with runtime.db.unit_of_work() as session:
        live.end_monitoring(session, monitoring_id, reason=reason, actor=actor, clock=runtime.clock)


@router.websocket("/live/calls/{call_id:path}/listen")
async def listen(websocket: WebSocket, call_id: str, purpose: str | None = None) -> None:
    """Listen to a call in progress (see the module docstring for the messages and close codes)."""
    runtime: Runtime = websocket.app.state.runtime
    try:
        caller = await run_in_threadpool(_ws_caller, websocket, runtime)
        started = await run_in_threadpool(_start, runtime, caller, call_id, purpose)
    except CallvaultError as exc:
        await _refuse(websocket, exc)
        return
    await websocket.accept()
    reason = "capture_lost"
    loop = asyncio.get_running_loop()
    cut_short: asyncio.Future[str] = loop.create_future()

    def settle(why: str) -> None:
        if not cut_short.done():
            cut_short.set_result(why)

    def cut(why: str) -> None:  # from the thread that filed the control
        loop.call_soon_threadsafe(settle, why)

    relays: LocalRelays = websocket.app.state.live_relays
    relays.add(call_id, cut)
    tap: ClientConnection | None = None
    try:
        tap = await _open_tap(started, call_id, ca=runtime.settings.live_tap_ca)
        if tap is not None:
            reason = await _relay(websocket, tap, started, cut_short)
    finally:
        relays.remove(call_id, cut)
        # Cut the listener off first (A7: leave the line at once), then put the end on the record, then let
        # go of the tap: the database write may wait behind the capture side's own (a personal call's
        # destruction), and a capture process that busy may answer the tap's close only seconds later.
        if websocket.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await websocket.send_text(json.dumps({"type": "ended", "reason": reason,
                                                      "message": END_REASONS.get(reason, reason)}))
                await websocket.close(close_code(reason), reason)
        try:
            await run_in_threadpool(_end, runtime, started.monitoring_id, reason,
                                    caller.user.username if reason == "listener_left" else "")
        finally:
            if tap is not None:
                with contextlib.suppress(Exception):
                    await tap.close()


async def _open_tap(started: live.Started, call_id: str, *, ca: Path | None) -> ClientConnection | None:
    """The capture process's tap for this call, opened with the monitoring session's one-time ticket.

    A ``wss://`` tap's certificate is verified (name included) against ``ca`` or the system's trust store;
    a plain ``ws://`` tap is opened only on loopback, so that live audio never crosses a wire in clear (and
    the ticket with it): None, and the listener is told the capture process could not be reached."""
    url = f"{started.tap_url}/calls/{quote(call_id, safe='')}?ticket={started.ticket}"
    parts = urlsplit(started.tap_url)
    tls: ssl.SSLContext | None = None
    if parts.scheme == "wss":
        tls = ssl.create_default_context(cafile=str(ca) if ca else None)
    elif not is_loopback(parts.hostname or ""):
        log.warning("live tap for %s refused: %s is plain ws:// off loopback; run the capture process with "
                    "--tap-cert/--tap-key", call_id, started.tap_url)
        return None
    try:
        return await connect(url, open_timeout=5, close_timeout=TAP_CLOSE_SECONDS, max_size=1 << 20,
                             compression=None, ssl=tls)
    except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
        log.warning("live tap for %s unreachable: %s", call_id, exc)
        return None


async def _relay(websocket: WebSocket, tap: ClientConnection, started: live.Started,
                 cut_short: asyncio.Future[str]) -> str:
    """Frames from the tap to the browser until either side ends, or a control filed on this node cuts
    the listener off (``cut_short``); returns the end reason. The caller closes both sockets."""

    async def from_tap() -> str:
        try:
            async for message in tap:
                if isinstance(message, bytes):
                    await websocket.send_bytes(message)
                    continue
                data = json.loads(message)
                if data.get("type") == "end":
                    return str(data.get("reason") or "call_ended")
                if data.get("type") == "hello":
                    data.update(monitoring_id=started.monitoring_id)
                    await websocket.send_text(json.dumps(data))
        except ConnectionClosed:
            pass
        code = tap.close_code or 0
        return REASON_BY_CODE.get(code, "capture_lost")

    async def from_browser() -> str:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
        return "listener_left"

    tasks = [asyncio.ensure_future(from_tap()), asyncio.ensure_future(from_browser()), cut_short]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        return next(iter(done)).result()
    finally:
        for task in tasks[:2]:
            task.cancel()


