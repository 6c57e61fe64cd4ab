"""The SIPREC recording server: dialogs and call lifecycle (process.py runs it; transport, transactions, ports).

Transaction behaviour (RFC 3261 as far as a UAS that never sends requests needs it):

* every request's final response is cached by (branch, method) for 32 s, so a retransmitted
  request gets the same response again (and an INVITE still being set up gets ``100 Trying``);
* final responses to INVITE are retransmitted over UDP (T1 = 500 ms doubling to T2 = 4 s) until
  the ACK arrives or 32 s pass; over TCP they are sent once;
* CANCEL answers 200 and ends a not-yet-answered INVITE with 487;
* OPTIONS is answered at once (503 with Retry-After while draining, so SBCs fail over);
* ``Require`` tags other than ``siprec`` get 420 with ``Unsupported``;
* unparsable requests get a 400 naming the problem (when a Via can be found to answer to).

In-dialog requests are never answered with a 4xx other than 481/491 (OpenSIPS crashed on that),
so an unparsable re-INVITE SDP gets the previous answer back.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import secrets
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from callvault.audit import service as audit
from callvault.capture.siprec import sip
from callvault.capture.siprec.capacity import LoopLag, Refusal, at_capacity, unrecordable
from callvault.capture.siprec.config import ServerConfig, Stats
from callvault.capture.siprec.live import LiveLink
from callvault.capture.siprec.metadata import MetadataError, derive_facts, parse_recording_metadata
from callvault.capture.siprec.nodes import (
    HEARTBEAT_SECONDS,
    SWEEP_SECONDS,
    fail_orphaned_calls,
    heartbeat,
    this_node,
)
from callvault.capture.siprec.ports import PortPool, bind, receiver, rekey
from callvault.capture.siprec.rtp import StreamTimer
from callvault.capture.siprec.sdp import (
    SdpError,
    SessionDescription,
    build_answer,
    channel_count,
    parse_sdp,
    plan_answer,
)
from callvault.capture.siprec.session import (
    ACTOR,
    CallSession,
    ControlAction,
    StreamRuntime,
    catalog_call_id,
    facts_from,
    lookup_agent,
    scope_decision,
)
from callvault.capture.siprec.timers import CallTimers, SessionTimer, agreed_interval, expired, negotiate
from callvault.capture.siprec.transactions import Transactions
from callvault.capture.siprec.transport import Reply, answer_unparsable
from callvault.core.errors import Conflict
from callvault.policy.schema import PolicyDocument
from callvault.policy.service import current_policy
from callvault.runtime import Runtime

log = logging.getLogger("callvault.siprec")

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO"
METADATA_TYPES = ("application/rs-metadata+xml", "application/rs-metadata")
DRAIN_THREADS = 32
HOUSEKEEPING_SECONDS = 0.25
"""How often housekeeping runs (mixer flushes, timers, stats); how late it wakes is the loop's lag."""
"""Threads storing the calls still open at shutdown, all at once: storing is mostly waiting (fsync, the
database, the object store), so one thread stored ~6 calls/s and a drain of 1,000 calls outlived any
service manager's stop timeout."""


class SessionManager:
    """Dialogs, transactions and RTP endpoints of one capture process."""

    def __init__(self, runtime: Runtime, config: ServerConfig) -> None:
        self.runtime = runtime
        self.config = config
        self.sessions: dict[str, CallSession] = {}
        self.draining = False
        self.stats = Stats()
        self.loop_lag = LoopLag()
        """How late the event loop runs (measured by ``housekeeping``): a saturated process refuses new calls."""
        self.tx = Transactions()
        self.timers: dict[str, CallTimers] = {}
        """RTP inactivity and session timers of the calls in ``sessions`` (``capture.siprec.timers``)."""
        self._setting_up = 0
        """New INVITEs admitted and not yet answered: they count against ``max_calls`` too."""
        self._inflight_invites: dict[tuple[str, str], asyncio.Event] = {}
        self._cancelled: set[tuple[str, str]] = set()
        self._policy: tuple[float, PolicyDocument] | None = None
        self.ports = PortPool(*config.rtp_ports)
        self._finishing: set[asyncio.Task[Any]] = set()
        # Call set-up must not queue behind finalisations (WAV encryption, catalog writes) after a
        # burst of BYEs, so the two kinds of blocking work have their own threads.
        self._setup_pool = ThreadPoolExecutor(4, thread_name_prefix="siprec-setup")
        self._finish_pool = ThreadPoolExecutor(2, thread_name_prefix="siprec-finish")
        self.node = this_node(runtime.clock.now())
        """This process in ``capture_nodes``; named on every pending row it reserves (``capture.siprec.nodes``)."""
        self.live = LiveLink(runtime)
        """Control events from the database, ``active_calls``, live listeners (``capture.siprec.live``)."""
        self._advertise = config.advertise or (config.host if config.host not in ("0.0.0.0", "::") else  # noqa: S104
                                               socket.gethostbyname(socket.gethostname()))

    # -- policy ------------------------------------------------------------------------------
    def policy(self) -> PolicyDocument:
        """The current policy, re-read at most every 30 s (blocking: call from a worker thread)."""
        now = time.monotonic()
        if self._policy is None or now - self._policy[0] > 30:
            with self.runtime.db.unit_of_work() as session:
                self._policy = (now, current_policy(session))
        return self._policy[1]

    # -- control hook ----------------------------------------------------------------------------
    def apply_control(self, call_id: str, action: ControlAction, *, actor: str) -> str | None:
        """Apply pause/resume/stop/personal to a live call now, by SIP Call-ID or catalog call id.

        In-process hook (tests, tools). The recording-control API reaches calls through the database
        instead (``capture.siprec.live.LiveLink`` polls ``recording_controls``), so it works from any
        node. Returns the call's new state, or None if this process is not recording such a call.
        Must run on the event loop (``loop.call_soon_threadsafe`` from elsewhere).
        """
        call = self.sessions.get(call_id) or next(
            (s for s in self.sessions.values() if catalog_call_id(s.call_id) == call_id), None)
        if call is None:
            return None
        return call.apply_control(action, actor=actor)

    # -- entry point -----------------------------------------------------------------------------
    def handle_datagram(self, data: bytes, reply: Reply) -> None:
        if not data.strip(b"\r\n\x00 "):
            return  # keep-alive
        try:
            msg = sip.parse_message(data, stream=reply.reliable)
        except sip.SipParseError as exc:
            self.stats.parse_errors += 1
            self._bad_request(data, reply, str(exc))
            return
        if not msg.is_request:
            return  # we send no requests; stray responses are ignored
        try:
            self._handle_request(msg, reply)
        except Exception:  # never let one message take the server down
            log.exception("error handling %s", msg.method)
            with contextlib.suppress(Exception):
                self._respond(msg, reply, 500, "Server Internal Error")

    def _bad_request(self, data: bytes, reply: Reply, why: str) -> None:
        # Answer 400 only if enough of the message is there to address a response.
        answer = answer_unparsable(data, 400, "Bad Request - " + why)
        if answer is not None:
            reply.send(answer)

    def _handle_request(self, msg: sip.SipMessage, reply: Reply) -> None:
        method = msg.method or ""
        if method == "ACK":
            self._on_ack(msg)
            return
        key = (msg.branch or f"{msg.call_id}:{msg.get('CSeq')}", method)
        cached = self.tx.cache.get(key)
        if cached is not None:
            if cached[1] is not None:
                reply.send(cached[1])
            elif method == "INVITE":
                reply.send(sip.make_response(msg, 100, "Trying").to_bytes())
            return
        if method == "CANCEL":
            self._on_cancel(msg, reply)
            return
        if method == "OPTIONS":
            if self.draining:
                self._respond(msg, reply, 503, "Service Unavailable", headers=[("Retry-After", "30")])
            else:
                self._respond(msg, reply, 200, "OK", headers=self._capabilities())
            return
        unsupported = [t for t in msg.get_all("Require") if t.strip().lower() not in ("siprec", "timer")]
        if unsupported:
            self._respond(msg, reply, 420, "Bad Extension", headers=[("Unsupported", ", ".join(unsupported))])
            return
        to_tag = sip.param(msg.get("To") or "", "tag")
        call = self.sessions.get(msg.call_id)
        if method == "INVITE" and not to_tag:
            if self.draining:
                self._respond(msg, reply, 503, "Service Unavailable", headers=[("Retry-After", "30")])
                return
            if call is not None:
                self._respond(msg, reply, 482, "Loop Detected")
                return
            refusal = at_capacity(self.config, calls=len(self.sessions) + self._setting_up,
                                  free_ports=self.ports.free, loop_lag=self.loop_lag.current(time.monotonic()))
            if refusal is not None:
                self._refuse(msg, reply, refusal)
                return
            status, timer_headers = negotiate(msg, min_se=self.config.min_session_expires)
            if status is not None:
                self._respond(msg, reply, status, "Session Interval Too Small", headers=timer_headers)
                return
            self.tx.cache[key] = (time.monotonic(), None)
            reply.send(sip.make_response(msg, 100, "Trying").to_bytes())
            self._setting_up += 1
            task = asyncio.get_running_loop().create_task(self._new_call(msg, reply, key, timer_headers))
            self._finishing.add(task)
            task.add_done_callback(self._finishing.discard)
            return
        if call is None or (to_tag and to_tag != call.local_tag):
            if method in ("INVITE", "UPDATE", "BYE", "INFO"):
                self._respond(msg, reply, 481, "Call/Transaction Does Not Exist")
            else:
                self._respond(msg, reply, 405, "Method Not Allowed", headers=[("Allow", ALLOW)])
            return
        call.last_activity = time.monotonic()
        if method in ("INVITE", "UPDATE"):
            self._on_offer_in_dialog(call, msg, reply)
        elif method == "BYE":
            self._on_bye(call, msg, reply)
        elif method == "INFO":
            self._respond(msg, reply, 200, "OK", to_tag=call.local_tag)
        else:
            self._respond(msg, reply, 405, "Method Not Allowed", headers=[("Allow", ALLOW)], to_tag=call.local_tag)

    def _refuse(self, msg: sip.SipMessage, reply: Reply, refusal: Refusal) -> None:
        """Answer a new INVITE we will not record (503 at capacity, 488 nothing recordable), and count it."""
        if refusal.status == 503:
            self.stats.refused_capacity += 1
        else:
            self.stats.refused_media += 1
        log.warning("call %s refused with %d: %s", msg.call_id, refusal.status, refusal.warning)
        self._respond(msg, reply, refusal.status, refusal.reason, headers=refusal.headers())

    def _capabilities(self) -> list[tuple[str, str]]:
        return [("Allow", ALLOW), ("Supported", "siprec"), ("Accept", "application/sdp, application/rs-metadata+xml,"
                                                                      " application/rs-metadata, multipart/mixed")]

    def _contact(self, reply: Reply) -> str:
        transport = reply.transport or ("tcp" if reply.reliable else "udp")
        if transport == "tls" and self.config.tls_port is not None:
            # Requests to us in this dialog must come back over TLS, to the TLS port (RFC 3261 §26.2).
            return f"<sip:srs@{self._advertise}:{self.config.tls_port};transport=tls>;+sip.srs"
        return f"<sip:srs@{self._advertise}:{self.config.port};transport={transport}>;+sip.srs"

    def _respond(self, msg: sip.SipMessage, reply: Reply, status: int, reason: str, *,
                 headers: list[tuple[str, str]] | None = None, body: bytes = b"", to_tag: str | None = None,
                 dialog: bool = False) -> None:
        extra = list(headers or [])
        if dialog:
            extra += [("Contact", self._contact(reply)), ("Allow", ALLOW), ("Supported", "siprec")]
        extra.append(("Server", "callvault-srs"))
        resp = sip.make_response(msg, status, reason, to_tag=to_tag or (secrets.token_hex(6) if status >= 200
                                 and msg.method == "INVITE" else None), headers=extra, body=body)
        data = resp.to_bytes()
        key = (msg.branch or f"{msg.call_id}:{msg.get('CSeq')}", msg.method or "")
        if status >= 200:
            self.tx.cache[key] = (time.monotonic(), data)
        reply.send(data)
        if status >= 200 and msg.method == "INVITE" and not reply.reliable:
            num, _ = msg.cseq
            self.tx.start_retransmit(data, reply, (msg.call_id, num))

    def _on_ack(self, msg: sip.SipMessage) -> None:
        try:
            num, _ = msg.cseq
        except ValueError:
            return
        self.tx.stop_retransmit((msg.call_id, num))
        call = self.sessions.get(msg.call_id)
        if call is not None:
            call.last_activity = time.monotonic()

    def _on_cancel(self, msg: sip.SipMessage, reply: Reply) -> None:
        key = (msg.branch, "INVITE")
        entry = self.tx.cache.get(key)
        if entry is None:
            self._respond(msg, reply, 481, "Call/Transaction Does Not Exist")
            return
        self._respond(msg, reply, 200, "OK")
        if entry[1] is None:  # still setting up: it will answer 487
            self._cancelled.add(key)

    # -- new calls -------------------------------------------------------------------------------
    async def _new_call(self, msg: sip.SipMessage, reply: Reply, key: tuple[str, str],
                        timer_headers: list[tuple[str, str]]) -> None:
        try:
            await self._set_up(msg, reply, key, timer_headers)
        finally:
            self._setting_up -= 1

    async def _set_up(self, msg: sip.SipMessage, reply: Reply, key: tuple[str, str],
                      timer_headers: list[tuple[str, str]]) -> None:
        loop = asyncio.get_running_loop()
        try:
            parts = sip.body_parts(msg.get("Content-Type") or "", msg.body)
        except sip.SipParseError as exc:
            self._respond(msg, reply, 400, f"Bad Request - {exc}"[:120])
            return
        sdp_part = next((p for p in parts if p.content_type == "application/sdp"), None)
        meta_part = next((p for p in parts if p.content_type in METADATA_TYPES), None)
        if sdp_part is None:
            self._respond(msg, reply, 488, "Not Acceptable Here",
                          headers=[("Warning", '399 callvault "an SDP offer is required in the INVITE"')])
            return
        try:
            offer = parse_sdp(sdp_part.body)
        except SdpError as exc:
            self._respond(msg, reply, 488, "Not Acceptable Here", headers=[("Warning", f'399 callvault "{exc}"')])
            return
        refusal = unrecordable(offer, free_ports=self.ports.free, retry_after=self.config.retry_after)
        if refusal is not None:
            self._refuse(msg, reply, refusal)
            return
        metadata = None
        if meta_part is not None:
            try:
                metadata = parse_recording_metadata(meta_part.body)
            except MetadataError as exc:
                # Unusable metadata does not stop recording (pjsip learned that); it is logged.
                log.warning("call %s: metadata ignored: %s", msg.call_id, exc)
        labels = [m.label for m in offer.media]
        try:
            policy = await loop.run_in_executor(self._setup_pool, self.policy)
            facts = None
            if metadata is not None:
                derived = derive_facts(metadata, scope=policy.recording_scope,
                                       default_region=self.runtime.settings.default_region, labels=labels,
                                       local_numbers=policy.consent.standing_numbers)
                user = await loop.run_in_executor(self._setup_pool, lookup_agent, self.runtime, derived.extension)
                facts = (derived, facts_from(derived, user))
            if facts is not None:
                in_scope, why, clauses = scope_decision(policy, facts[1], final=False)
                if in_scope is False:
                    self.stats.calls_refused += 1
                    await loop.run_in_executor(self._setup_pool, self._audit_refusal, msg.call_id, why, clauses)
                    self._respond(msg, reply, 403, "Forbidden",
                                  headers=[("Warning", '399 callvault "call is outside the recording scope"')])
                    return
            # 16 kHz when any stream's codec is wideband (G.722, Opus), else 8 kHz.
            planned = plan_answer(offer, [0] * len(offer.media))
            rate = max((c.sample_rate for m in planned for c in m.codecs[:1]), default=8000)
            call = CallSession(call_id=msg.call_id, local_tag=secrets.token_hex(8), started_at=self.runtime.clock.now(),
                               t0=time.monotonic(), rate=rate, runtime=self.runtime, channels=channel_count(offer),
                               node=str(self.node))
            call.labels = labels
            call.metadata = metadata
            if facts is not None:
                call.facts = facts[1]
                call.channel_labels = (facts[0].caller_label, facts[0].agent_label)
            await loop.run_in_executor(self._setup_pool, lambda: call.open_storage(policy=policy,
                                                                       clock_now=self.runtime.clock.now()))
        except Conflict:
            self._respond(msg, reply, 403, "Forbidden", headers=[("Warning", '399 callvault "call already recorded"')])
            return
        except Exception:
            log.exception("call %s: cannot start recording", msg.call_id)
            self._respond(msg, reply, 500, "Server Internal Error", headers=[("Retry-After", "5")])
            return
        if key in self._cancelled:
            self._cancelled.discard(key)
            self._respond(msg, reply, 487, "Request Terminated")
            await self._finish(call, "cancelled")
            return
        self.sessions[msg.call_id] = call
        try:
            answer = await self._apply_offer(call, offer)
        except OSError as exc:  # no RTP port could be bound
            log.error("call %s: %s", msg.call_id, exc)
            self.stats.refused_capacity += 1
            self._respond(msg, reply, 503, "Service Unavailable",
                          headers=[("Retry-After", str(self.config.retry_after))])
            call.state = "active"
            await self._finish(call, "no media ports")
            return
        call.state = "active"
        self.stats.calls_started += 1
        now = time.monotonic()
        interval = agreed_interval(timer_headers)
        self.timers[call.call_id] = CallTimers(
            media_seen=now, session=SessionTimer(interval, now) if interval is not None else None)
        self.live.call_started(call)
        self._respond(msg, reply, 200, "OK", body=answer, to_tag=call.local_tag, dialog=True, headers=timer_headers)

    def _audit_refusal(self, call_id: str, why: str, clauses: tuple[str, ...]) -> None:
        with self.runtime.db.unit_of_work() as session:
            audit.append(session, audit.AuditEvent(
                actor=ACTOR, action="capture.refused", decision="deny", object_type="call",
                object_id=catalog_call_id(call_id)[:64], reason=why, clauses=clauses,
            ), clock=self.runtime.clock)

    async def _apply_offer(self, call: CallSession, offer: SessionDescription) -> bytes:
        """Bind/keep ports, pause/resume streams, and build the answer."""
        ports: list[int | None] = []
        for i, _m in enumerate(offer.media):
            existing = call.streams[i] if i < len(call.streams) else None
            ports.append(existing.port if existing is not None and existing.port else self.ports.take())
        plans = plan_answer(offer, ports)
        if not call.streams and any(p.reason == "no receive port available" for p in plans):
            for port in ports:  # a new call that cannot record all its streams is refused (503), not half-kept
                self.ports.release(port)
            raise OSError("not enough free RTP ports")
        for i, plan in enumerate(plans):
            existing = call.streams[i] if i < len(call.streams) else None
            if existing is None:
                stream = StreamRuntime(plan=plan, timer=StreamTimer(plan.codecs, call.rate), channel=None)
                call.streams.append(stream)
                if plan.accepted:
                    stream.transport, stream.port = await bind(
                        self.ports, self.config.host, call, i, plan.local_port, receiver(plan, stream))
                    plans[i] = stream.plan = dataclasses.replace(plan, local_port=stream.port)
                elif ports[i] is not None:
                    self.ports.release(ports[i])
                if not plan.active:
                    stream.timer.pause()
                    if plan.accepted:
                        call.mark("pause", stream=plan.label, source="sdp")
                continue
            was_active = existing.plan.active
            existing.plan = plan
            if plan.accepted:
                existing.timer.set_codecs(plan.codecs)
                if existing.transport is None:
                    existing.transport, existing.port = await bind(
                        self.ports, self.config.host, call, i, plan.local_port, receiver(plan, existing))
                else:
                    rekey(existing)
                    plans[i] = existing.plan = dataclasses.replace(plan, local_port=existing.port)
            elif existing.transport is None and ports[i] is not None:
                self.ports.release(ports[i])
            if was_active and not plan.active:
                existing.timer.pause()
                call.mark("pause", stream=plan.label, source="sdp")
            elif plan.active and not was_active:
                if not call.control_paused:
                    existing.timer.resume()
                call.mark("resume", stream=plan.label, source="sdp")
        call.labels = [m.label for m in offer.media]
        call.assign_channels()
        call.sdp_version += 1
        call.last_answer = build_answer(offer, plans, address=self._advertise,
                                        session_id=abs(hash(call.local_tag)) % 10**9, version=call.sdp_version)
        return call.last_answer

    # -- in dialog ---------------------------------------------------------------------------------
    def _on_offer_in_dialog(self, call: CallSession, msg: sip.SipMessage, reply: Reply) -> None:
        try:
            parts = sip.body_parts(msg.get("Content-Type") or "", msg.body)
        except sip.SipParseError as exc:
            log.warning("call %s: in-dialog body ignored: %s", call.call_id, exc)
            parts = []
        meta_part = next((p for p in parts if p.content_type in METADATA_TYPES), None)
        sdp_part = next((p for p in parts if p.content_type == "application/sdp"), None)
        if meta_part is not None:
            self._update_metadata(call, meta_part.body)
        offer = None
        if sdp_part is not None:
            try:
                offer = parse_sdp(sdp_part.body)
            except SdpError as exc:
                log.warning("call %s: re-offer ignored: %s", call.call_id, exc)
        loop = asyncio.get_running_loop()

        refresh = self._refresh_session(call, msg)

        async def answer() -> None:
            body = call.last_answer if msg.method == "INVITE" else b""
            if offer is not None:
                body = await self._apply_offer(call, offer)
            elif meta_part is not None:
                call.assign_channels()
            self._respond(msg, reply, 200, "OK", body=body, to_tag=call.local_tag, dialog=True, headers=refresh)

        task = loop.create_task(answer())
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)

    def _refresh_session(self, call: CallSession, msg: sip.SipMessage) -> list[tuple[str, str]]:
        """An in-dialog INVITE/UPDATE refreshes the session timer (RFC 4028 §10); the 2xx's headers.

        Never refused in dialog (no 422: SRCs tear calls down on a 4xx to a re-INVITE): an interval
        under the minimum keeps the one agreed; one the SRC drops or cannot refresh ends the timer.
        """
        timers = self.timers.get(call.call_id)
        if timers is None:
            return []
        status, headers = negotiate(msg, min_se=self.config.min_session_expires)
        interval = agreed_interval(headers) if status is None else None
        now = time.monotonic()
        if interval is not None:
            timers.session = SessionTimer(interval, now)
        elif status is not None and timers.session is not None:
            timers.session.refreshed = now
            return [("Session-Expires", f"{timers.session.interval};refresher=uac"), ("Require", "timer")]
        else:
            timers.session = None
        return headers

    def _update_metadata(self, call: CallSession, body: bytes) -> None:
        try:
            update = parse_recording_metadata(body)
        except MetadataError as exc:
            log.warning("call %s: metadata update ignored: %s", call.call_id, exc)
            return
        call.metadata = update if call.metadata is None else call.metadata.merge(update)
        policy = self._policy[1] if self._policy else None
        if policy is None:
            return
        derived = derive_facts(call.metadata, scope=policy.recording_scope,
                               default_region=self.runtime.settings.default_region, labels=call.labels,
                               local_numbers=policy.consent.standing_numbers)
        user = lookup_agent(self.runtime, derived.extension)
        call.facts = facts_from(derived, user)
        call.channel_labels = (derived.caller_label, derived.agent_label)
        call.assign_channels()
        call.mark("metadata", mode=update.datamode)
        in_scope, why, clauses = scope_decision(policy, call.facts, final=False)
        if in_scope is False and call.discard_reason is None:
            call.discard_reason, call.discard_clauses = f"out of the recording scope: {why}", clauses
            call.mark("out_of_scope")

    def _on_bye(self, call: CallSession, msg: sip.SipMessage, reply: Reply) -> None:
        try:
            parts = sip.body_parts(msg.get("Content-Type") or "", msg.body)
        except sip.SipParseError:
            parts = []
        meta_part = next((p for p in parts if p.content_type in METADATA_TYPES), None)
        if meta_part is not None:
            self._update_metadata(call, meta_part.body)
        self._respond(msg, reply, 200, "OK", to_tag=call.local_tag)
        task = asyncio.get_running_loop().create_task(self._finish(call, "bye"))
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)

    async def _finish(self, call: CallSession, reason: str) -> str | None:
        if call.state in ("ending", "ended"):
            return None
        end_pos = call.now_pos()
        ended_at = self.runtime.clock.now()
        call.state = "ending"
        self.sessions.pop(call.call_id, None)
        self.timers.pop(call.call_id, None)
        self.live.call_ended(call, reason)
        for stream in call.streams:
            self.stats.srtp_auth_failures += stream.timer.stats.srtp_auth_failures
            self.stats.srtp_replays += stream.timer.stats.srtp_replays
            self.stats.packets += stream.timer.stats.packets
            self.stats.lost += stream.timer.stats.lost
            if stream.transport is not None:
                stream.transport.close()
            self.ports.release(stream.port or None)
        loop = asyncio.get_running_loop()
        try:
            policy = await loop.run_in_executor(self._finish_pool, self.policy)
            rec_id = await loop.run_in_executor(
                self._finish_pool,
                lambda: call.finish(policy=policy, ended_at=ended_at, end_pos=end_pos, reason=reason))
        except Exception:
            log.exception("call %s: could not be stored", call.call_id)
            rec_id = None
        call.state = "ended"
        if rec_id is None:
            self.stats.calls_discarded += 1
        else:
            self.stats.calls_stored += 1
            log.info("call %s stored as recording %s", call.call_id, rec_id)
        return rec_id

    # -- housekeeping -------------------------------------------------------------------------------
    async def housekeeping(self) -> None:
        """Flush mixers, expire caches and idle dialogs, write stats; forever."""
        last_stats = 0.0
        last_beat = last_sweep = time.monotonic()
        loop = asyncio.get_running_loop()
        while True:
            self.loop_lag.sleeping(time.monotonic(), HOUSEKEEPING_SECONDS)
            await asyncio.sleep(HOUSEKEEPING_SECONDS)
            now = time.monotonic()
            self.loop_lag.woke(now)
            if now - last_beat >= HEARTBEAT_SECONDS:
                last_beat = now
                self._background(loop.run_in_executor(None, heartbeat, self.runtime, self.node))
            if now - last_sweep >= SWEEP_SECONDS:
                last_sweep = now
                self._background(loop.run_in_executor(None, fail_orphaned_calls, self.runtime, self.node))
            for call in list(self.sessions.values()):
                call.flush(now)
                why = "timeout" if now - call.last_activity > self.config.session_timeout else None
                timers = self.timers.get(call.call_id)
                if why is None and timers is not None and call.state == "active":
                    why = expired(call, timers, now, rtp_timeout=self.config.rtp_timeout)
                if why is not None:
                    log.warning("call %s ended without a BYE: %s", call.call_id, why)
                    self.stats.ended_by_timer[why] = self.stats.ended_by_timer.get(why, 0) + 1
                    task = asyncio.get_running_loop().create_task(self._finish(call, why))
                    self._finishing.add(task)
                    task.add_done_callback(self._finishing.discard)
            if len(self.tx.cache) > 0 and int(now * 4) % 20 == 0:
                self.tx.expire(now)
            if self.config.stats_file is not None and now - last_stats >= 1.0:
                last_stats = now
                self.write_stats()

    @staticmethod
    def _background(fut: asyncio.Future[Any]) -> None:
        """Log the failure of fire-and-forget database work (a heartbeat, a sweep); the next one retries."""
        def done(f: asyncio.Future[Any]) -> None:
            if not f.cancelled() and f.exception() is not None:
                log.error("capture node bookkeeping failed: %s", f.exception())

        fut.add_done_callback(done)

    def snapshot(self) -> dict[str, Any]:
        packets, lost, late = self.stats.packets, self.stats.lost, 0
        auth_failures, replays = self.stats.srtp_auth_failures, self.stats.srtp_replays
        for call in self.sessions.values():
            late += call.mixer.late_samples
            for s in call.streams:
                packets += s.timer.stats.packets
                lost += s.timer.stats.lost
                auth_failures += s.timer.stats.srtp_auth_failures
                replays += s.timer.stats.srtp_replays
        usage = os.times()
        return {"pid": os.getpid(), "active_calls": len(self.sessions), "packets": packets, "lost": lost,
                "loop_lag": round(self.loop_lag.current(time.monotonic()), 3),
                "late_samples": late, "cpu_seconds": usage.user + usage.system, "time": time.time(),
                "started": self.stats.calls_started, "stored": self.stats.calls_stored,
                "discarded": self.stats.calls_discarded, "refused": self.stats.calls_refused,
                "parse_errors": self.stats.parse_errors, "srtp_auth_failures": auth_failures,
                "refused_capacity": self.stats.refused_capacity, "refused_media": self.stats.refused_media,
                "ended_by_timer": dict(self.stats.ended_by_timer),
                "srtp_replays": replays}

    def write_stats(self) -> None:
        assert self.config.stats_file is not None
        tmp = self.config.stats_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.snapshot()))
        tmp.replace(self.config.stats_file)

    async def drain(self) -> bool:
        """Refuse new calls (503), wait ``drain_timeout`` for calls to end, then store what is left at once.

        The remaining calls are stored in parallel (``DRAIN_THREADS``) for at most ``store_timeout``;
        calls not stored by then are left ``pending`` under this node, and the next capture start marks
        them failed (``capture.siprec.nodes``). Returns True when every call was stored or discarded.
        """
        self.draining = True
        deadline = time.monotonic() + self.config.drain_timeout
        while self.sessions and time.monotonic() < deadline:  # noqa: ASYNC110 - polling a dict, rarely
            await asyncio.sleep(0.2)
        narrow, self._finish_pool = self._finish_pool, ThreadPoolExecutor(
            DRAIN_THREADS, thread_name_prefix="siprec-drain")
        narrow.shutdown(wait=False)  # work already queued there still runs
        left = list(self.sessions.values())
        if left:
            log.info("shutdown: storing %d call(s) still in progress", len(left))
        loop = asyncio.get_running_loop()
        for call in left:
            task = loop.create_task(self._finish(call, "shutdown"))
            self._finishing.add(task)
            task.add_done_callback(self._finishing.discard)
        store_deadline = time.monotonic() + self.config.store_timeout
        while self._finishing and time.monotonic() < store_deadline:
            await asyncio.wait(list(self._finishing), timeout=max(0.0, store_deadline - time.monotonic()))
        complete = not self._finishing
        if not complete:
            log.error("shutdown: %d call(s) not stored within %.0f s; the next capture start marks them failed",
                      len(self._finishing), self.config.store_timeout)
            for task in list(self._finishing):
                task.cancel()
        self._setup_pool.shutdown(wait=complete, cancel_futures=not complete)
        self._finish_pool.shutdown(wait=complete, cancel_futures=not complete)
        return complete
