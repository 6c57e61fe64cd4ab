"""A capture process's link to the rest of the cluster while calls run: control events in, live state out.

Why polling the database: the recording-control API (``POST /api/v1/calls/{id}/control``) may run on
another node than the capture process holding the call, and the database is what both share. One
query every ``POLL_SECONDS`` fetches the unapplied control events of *all* of this process's calls;
each is applied to its session at its instant (``CallSession.apply_control``) and marked applied on
its row when the call is stored or discarded, so ingest or ``apply_to_stored`` never applies it again.

The same link keeps ``active_calls`` (the cluster-wide live view) in step: a row when the call is
answered, one heartbeat statement for all calls every few seconds, the row's state after a control
event, deletion at BYE. It ends live listeners (in the database, audited) when a call is paused,
stopped, marked personal or ends, and checks the tickets relays show the tap.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from callvault.capture.models import CONTROL_ACTIONS, RecordingControl
from callvault.capture.siprec.session import CallSession, catalog_call_id
from callvault.live import service as live
from callvault.runtime import Runtime

log = logging.getLogger("callvault.siprec")

POLL_SECONDS = 0.2
"""How soon a control event filed on another node reaches the call (one indexed read per capture
process). A control filed through the listener's own API node cuts it off at once
(``callvault.api.routes_live.LocalRelays``)."""


@dataclass(frozen=True)
class Event:
    id: str
    call_id: str
    kind: str
    at: datetime | None
    requested_by: str
    administrative: bool
    requester_extension: str | None


class LiveLink:
    """Control polling, ``active_calls`` and tap tickets for one capture process (see the module doc)."""

    def __init__(self, runtime: Runtime, *, tap_url: str | None = None) -> None:
        self.runtime = runtime
        self.tap_url = tap_url
        self.node = f"{socket.gethostname()}:{os.getpid()}"
        self._pool = ThreadPoolExecutor(2, thread_name_prefix="siprec-live")
        self._poll: asyncio.Future[list[Event]] | None = None
        self._last_poll = 0.0
        self._last_beat = 0.0
        self._tasks: set[asyncio.Future[Any]] = set()
        self._shown: dict[str, tuple[str | None, ...]] = {}
        """What ``active_calls`` shows of each call (agent facts may arrive later, in metadata updates)."""

    # -- blocking work (worker threads) ----------------------------------------------------------
    @staticmethod
    def _shown_facts(call: CallSession) -> tuple[str | None, ...]:
        f = call.facts
        return (f.direction, f.extension, f.agent, f.team, "evidence" if f.consent else "missing")

    def _refresh(self, call_id: str, facts: tuple[str | None, ...]) -> None:
        direction, extension, agent, team, consent = facts
        with self.runtime.db.unit_of_work() as session:
            live.update_call(session, call_id, direction=direction, extension=extension, agent=agent, team=team,
                             consent_state=consent)

    def _register(self, call: CallSession) -> None:
        f = call.facts
        with self.runtime.db.unit_of_work() as session:
            live.register_call(session, call_id=catalog_call_id(call.call_id), recording_id=call.rec_id,
                               node=self.node, tap_url=self.tap_url, direction=f.direction, extension=f.extension,
                               agent=f.agent, team=f.team, consent_state="evidence" if f.consent else "missing",
                               started_at=call.started_at, clock=self.runtime.clock)

    def _ended(self, call_id: str, reason: str) -> None:
        with self.runtime.db.unit_of_work() as session:
            live.end_call(session, call_id, reason=reason, clock=self.runtime.clock)

    def _fetch(self, call_ids: list[str]) -> list[Event]:
        # A reader: on SQLite a read-write unit takes the one write lock, ten times a second, and the
        # API's control request then waits for it in SQLite's busy handler (sleeps of up to 100 ms).
        with self.runtime.db.read_only() as session:
            rows = session.execute(select(
                RecordingControl.id, RecordingControl.call_id, RecordingControl.kind, RecordingControl.at,
                RecordingControl.requested_by, RecordingControl.administrative, RecordingControl.requester_extension,
            ).where(RecordingControl.call_id.in_(call_ids), RecordingControl.applied_at.is_(None),
                     RecordingControl.kind.in_(CONTROL_ACTIONS))  # consent evidence waits for admission
              .order_by(RecordingControl.created_at)).all()
        return [Event(*row) for row in rows]

    def _beat(self, call_ids: list[str]) -> None:
        with self.runtime.db.unit_of_work() as session:
            live.heartbeat(session, call_ids, clock=self.runtime.clock)
            live.sweep_stale(session, clock=self.runtime.clock)

    def _after_control(self, call: CallSession, kind: str, state: str, actor: str) -> None:
        call_id = catalog_call_id(call.call_id)
        clock = self.runtime.clock
        if kind == "personal":
            with self.runtime.db.unit_of_work() as session:
                live.end_call(session, call_id, reason="personal", clock=clock)
            call.destroy_personal(actor=actor, reason=f"call marked personal by {actor} while it was recorded")
            return
        with self.runtime.db.unit_of_work() as session:
            live.update_call(session, call_id, state=state)
            if kind in live.END_REASON_BY_CONTROL:
                live.end_all_for_call(session, call_id, reason=live.END_REASON_BY_CONTROL[kind], actor=actor,
                                      clock=clock)

    def redeem_blocking(self, call_id: str, ticket: str) -> str:
        with self.runtime.db.unit_of_work() as session:
            return live.redeem_ticket(session, call_id=call_id, ticket=ticket, clock=self.runtime.clock).parties

    async def redeem(self, call_id: str, ticket: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.redeem_blocking, call_id, ticket)

    # -- event loop ----------------------------------------------------------------------------------
    def _spawn(self, fn: Any, *args: Any) -> None:
        fut = asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        self._tasks.add(fut)
        fut.add_done_callback(self._done)

    def _done(self, fut: asyncio.Future[Any]) -> None:
        self._tasks.discard(fut)
        if not fut.cancelled() and fut.exception() is not None:
            log.error("live link: %s", fut.exception())

    def call_started(self, call: CallSession) -> None:
        self._shown[catalog_call_id(call.call_id)] = self._shown_facts(call)
        self._spawn(self._register, call)

    def call_ended(self, call: CallSession, reason: str) -> None:
        call.feed.end("call_ended")
        call_id = catalog_call_id(call.call_id)
        self._shown.pop(call_id, None)
        if call.personal_by is None:
            self._spawn(self._ended, call_id, "call_ended")

    async def run(self, sessions: dict[str, CallSession]) -> None:
        """Forever: poll for control events and heartbeat while this process has calls."""
        while True:
            await asyncio.sleep(POLL_SECONDS / 4)
            self.tick(sessions)

    def tick(self, sessions: dict[str, CallSession]) -> None:
        """Start a poll (one at a time, at most every ``POLL_SECONDS``) and heartbeat when due."""
        now = time.monotonic()
        if not sessions:
            return
        by_id = {catalog_call_id(c.call_id): c for c in sessions.values() if c.state == "active"}
        for call_id, call in by_id.items():
            facts = self._shown_facts(call)
            if call_id in self._shown and self._shown[call_id] != facts and call.personal_by is None:
                self._shown[call_id] = facts
                self._spawn(self._refresh, call_id, facts)
        if now - self._last_beat >= live.HEARTBEAT_SECONDS:
            self._last_beat = now
            self._spawn(self._beat, list(by_id))
        if self._poll is None and now - self._last_poll >= POLL_SECONDS and by_id:
            self._last_poll = now
            self._poll = asyncio.get_running_loop().run_in_executor(self._pool, self._fetch, list(by_id))
            self._poll.add_done_callback(lambda fut: self._polled(fut, by_id))

    def _polled(self, fut: asyncio.Future[list[Event]], by_id: dict[str, CallSession]) -> None:
        self._poll = None
        if fut.cancelled() or fut.exception() is not None:
            if not fut.cancelled():
                log.warning("control poll failed: %s", fut.exception())
            return
        now = self.runtime.clock.now()
        for event in fut.result():
            call = by_id.get(event.call_id)
            if call is None or call.state != "active" or event.id in call.applied_controls:
                continue
            if event.at is not None and event.at > now:
                continue  # a scheduled resume (pause with ``until``): applied when its instant comes
            self.apply(call, event)

    def apply(self, call: CallSession, event: Event) -> None:
        """Apply one event to a live call (event loop), then its database effects (worker thread)."""
        extension = call.facts.extension
        if not (event.administrative or (event.requester_extension and event.requester_extension == extension)):
            call.applied_controls[event.id] = (
                f"ignored: requested by {event.requested_by} (extension {event.requester_extension or 'none'}), "
                f"but the call is on extension {extension or 'none'}")
            return
        kind = event.kind
        if kind not in ("pause", "resume", "stop", "personal"):
            call.applied_controls[event.id] = f"ignored: unknown action {kind!r}"
            return
        state = call.apply_control(kind, actor=event.requested_by, at=event.at)  # type: ignore[arg-type]
        call.applied_controls[event.id] = {
            "pause": "applied live: paused span silenced", "resume": "applied live: recording resumed",
            "stop": "applied live: nothing kept after the stop",
            "personal": "applied live: capture ended, partial recording destroyed"}[kind]
        log.info("call %s: %s by %s -> %s", call.call_id, kind, event.requested_by, state)
        self._spawn(self._after_control, call, kind, "paused" if state == "paused" else
                    "stopped" if state == "stopped" else "recording", event.requested_by)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self._pool.shutdown(wait=True)
