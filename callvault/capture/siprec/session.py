"""One recorded call: its streams, metadata, pause timeline and encrypted audio, from INVITE to recording.

Storage contract (the ingest pipeline's, shared through ``reserve_recording``/``finalise_recording``):
the ``pending`` row is committed when the call is answered, before any audio is written; audio
then goes, as it arrives, through the mixer into a **streaming encrypted blob** (format v2, fresh
data key held only in memory) at the row's blob key. No plaintext touches the disk. At BYE the
WAV file (two channels: left = remote party, right = agent; or one channel when the SRC sends a
single mixed stream, which cannot be split; PCM16 at 8 or 16 kHz) is produced by
decrypting that spool and encrypting the WAV (format v1, a second fresh key, the one that is
wrapped and kept) into the same key; then the row becomes ``available`` with an audit entry. A
crash leaves a pending row whose blob is unreadable (its key died with the process); the reaper
removes both, as for any interrupted ingest.

Discarded calls (out of the recording scope, a personal call, a stop before any audio) leave
nothing: spool and row are deleted, and an audit entry says why, without content.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, BinaryIO, Literal

from pydantic import ValidationError
from sqlalchemy import select

from callvault.audit import service as audit
from callvault.capture import consent_check
from callvault.capture.admission import Admission, mark_applied
from callvault.capture.audio import AudioInfo
from callvault.capture.audioedit import AudioEdit
from callvault.capture.ingest import (
    discard_recording,
    fail_recording,
    finalise_recording,
    raise_storage_alarm,
    reserve_recording,
)
from callvault.capture.metadata import CallMetadata, ConsentEvidence
from callvault.capture.models import RecordingControl
from callvault.capture.siprec.admit import admit_call, edit_stream, kept_frames
from callvault.capture.siprec.metadata import CallFacts, RecordingMetadata
from callvault.capture.siprec.rtp import Mixer, RtpError, StreamTimer, parse_rtp
from callvault.capture.siprec.sdp import StreamPlan
from callvault.identity import service as identity
from callvault.identity.models import User
from callvault.live.tap import LiveFeed
from callvault.policy.schema import PolicyDocument
from callvault.recordings.models import Recording
from callvault.retention.models import RetentionRule
from callvault.retention.shred import Doomed, destroy_now
from callvault.retention.shred import finish as finish_destruction
from callvault.runtime import Runtime
from callvault.storage.blobstore import FlushFailed
from callvault.storage.crypto import (
    EncryptedBlobReader,
    StreamingEncryptor,
    encrypt_stream,
    new_data_key,
)

log = logging.getLogger("callvault.siprec")

CHUNK_SIZE = 64 * 1024
REORDER_SECONDS = 1.0
GAP_SECONDS = 2.0
"""No packet at all (audio, comfort noise, DTMF, on any stream) for this long is a media gap: SBCs send
media at once and keep sending through silence (every 20 ms, or a comfort-noise/DTX packet at least
every few hundred ms), so a longer silence on the wire is blocked or lost media, not a quiet caller."""
ACTOR = "siprec"
ControlAction = Literal["pause", "resume", "stop", "personal"]
_CALL_ID_BAD = re.compile(r"[^A-Za-z0-9._:@+=/-]")


def catalog_call_id(sip_call_id: str) -> str:
    """The catalog's call id for a SIP Call-ID (only the characters the catalog accepts)."""
    return ("siprec:" + _CALL_ID_BAD.sub("_", sip_call_id))[:200]


@dataclass
class StreamRuntime:
    plan: StreamPlan
    timer: StreamTimer
    channel: int | None
    """0 = remote party (left), 1 = agent (right), None = not kept (a third stream, a refused one)."""
    transport: Any = None
    port: int = 0


@dataclass
class Facts:
    direction: str = "inbound"
    extension: str | None = None
    agent: str | None = None
    team: str | None = None
    remote_number: str | None = None
    local_number: str | None = None
    consent: dict[str, str] = field(default_factory=dict)
    mapping: str = "none"


def facts_from(call: CallFacts, user: User | None) -> Facts:
    return Facts(direction=call.direction, extension=call.extension, agent=user.username if user else None,
                 team=user.team if user else None, remote_number=call.remote_number,
                 local_number=call.local_number, consent=dict(call.consent), mapping=call.mapping)


def scope_decision(policy: PolicyDocument, facts: Facts, *, final: bool) -> tuple[bool | None, str, tuple[str, ...]]:
    """(in scope?, reason, clauses). ``None`` = not decidable yet (metadata may still arrive)."""
    scope = policy.recording_scope
    if facts.extension is None and (scope.extensions or scope.teams) and not final:
        return None, "no agent extension in the metadata yet", ()
    check = scope.check(direction=facts.direction, team=facts.team, extension=facts.extension,
                        trunk_number=facts.local_number)
    return check.in_scope, check.reason, check.clauses


class CallSession:
    """State of one SIPREC dialog. Methods run on the event loop unless they say otherwise."""

    def __init__(self, *, call_id: str, local_tag: str, started_at: datetime, t0: float, rate: int,
                 runtime: Runtime, channels: int = 2, node: str | None = None) -> None:
        self.call_id = call_id
        self.local_tag = local_tag
        self.started_at = started_at
        self.t0 = t0
        self.rate = rate
        self.runtime = runtime
        self.channels = channels
        """2: remote party left, agent right; 1: the SRC sent one mixed stream (one m-line), stored as it came."""
        self.frame_bytes = 2 * channels
        self.node = node
        """The capture process (``capture.siprec.nodes``) named on the pending row, so a restart can fail it."""
        self.metadata: RecordingMetadata | None = None
        self.facts = Facts()
        self.labels: list[str | None] = []
        self.streams: list[StreamRuntime] = []
        self.sdp_version = 1
        self.last_answer = b""
        self.timeline: list[dict[str, Any]] = []
        self.state: Literal["starting", "active", "ending", "ended"] = "starting"
        self.discard_reason: str | None = None
        self.discard_clauses: tuple[str, ...] = ()
        self.control_paused = False
        self.stopped = False
        self.last_activity = time.monotonic()
        self.rec_id: str | None = None
        self.blob_key: str | None = None
        self._stack = ExitStack()
        self._encryptor: StreamingEncryptor | None = None
        self.mixer = Mixer(rate, self._write, channels=channels)
        self.write_error: str | None = None
        self._flush_failed: FlushFailed | None = None
        """Set when the blob store fail-stopped under this call (its fsync failed): alarmed at close."""
        self.muted: list[list[int | None]] = []
        """[start, end) timeline spans paused by recording control (end None: still paused)."""
        self.stop_pos: int | None = None
        """Nothing from this timeline position on is kept (recording control ``stop``)."""
        self.frames_written = 0
        self.applied_controls: dict[str, str] = {}
        """Control event id -> what applying it did; marked on the event rows when the call is stored."""
        self.feed = LiveFeed(rate, int(started_at.timestamp() * 1000))
        self.personal_by: str | None = None
        self.heard_pos: int | None = None
        """Timeline position of the last RTP packet received (None: none yet), for media gaps."""
        self.expect_from = 0
        """Media is expected from here on when nothing has been heard (moved on while every stream is paused)."""
        self.gaps: list[tuple[int, int]] = []
        """[start, end) timeline spans longer than ``GAP_SECONDS`` in which no media arrived."""
        self._storage_lock = threading.Lock()
        """``finish`` and ``destroy_personal`` run in worker threads; one at a time, each idempotent."""
        """Live listeners of this call (``callvault.live.tap``); ended on pause, stop, personal and BYE."""

    # -- timeline ----------------------------------------------------------------------------
    def now_pos(self, now: float | None = None) -> int:
        return int(((now if now is not None else time.monotonic()) - self.t0) * self.rate)

    def mark(self, event: str, **details: Any) -> None:
        self.timeline.append({"t": round(self.now_pos() / self.rate, 3), "event": event, **details})

    # -- storage -----------------------------------------------------------------------------
    def open_storage(self, *, policy: PolicyDocument, clock_now: datetime) -> None:
        """Reserve the pending row and open the encrypted spool. Blocking: run in a worker thread."""
        rt = self.runtime
        meta = self._catalog_metadata(ended_at=clock_now)
        info = AudioInfo(audio_format="wav", sample_rate=self.rate, channels=self.channels, frames=0)
        with rt.db.unit_of_work() as session:
            reserved = reserve_recording(session, policy=policy, meta=meta, info=info, actor=ACTOR, store=rt.store,
                                         clock=rt.clock, stale_after=timedelta(hours=12))
            if not isinstance(reserved, Recording):
                from callvault.core.errors import Conflict

                raise Conflict(f"call {meta.call_id} is already recorded")
            reserved.capture_node = self.node
            self.rec_id, self.blob_key = reserved.id, reserved.blob_key
        sink: BinaryIO = self._stack.enter_context(rt.store.writer(self.blob_key))
        self._spool_key = new_data_key()
        self._encryptor = StreamingEncryptor(sink, data_key=self._spool_key, context=self.rec_id.encode(),
                                             chunk_size=CHUNK_SIZE)

    def _write(self, data: bytes) -> None:
        """The mixer's sink: ``data`` starts at timeline position ``mixer.base`` (the mixer advances it after)."""
        if self._encryptor is None or self.write_error is not None or self.stopped or self.discard_reason:
            return
        start = self.mixer.base
        fb = self.frame_bytes
        n = len(data) // fb
        if self.stop_pos is not None and start + n > self.stop_pos:
            n = max(0, self.stop_pos - start)
            data = data[: n * fb]
        if not n:
            return
        data = self._silence_paused(data, start)
        try:
            self._encryptor.write(data)
            self.frames_written += n
        except Exception as exc:  # disk full, store gone: the call is lost, but the server lives
            self.write_error = f"{type(exc).__name__}: {exc}"
            self._flush_failed = self._flush_failed or (exc if isinstance(exc, FlushFailed) else None)
            log.error("call %s: cannot write audio: %s", self.call_id, self.write_error)

    def _silence_paused(self, data: bytes, start: int) -> bytes:
        """Zero the frames of ``data`` (interleaved PCM16 from ``start``) inside a control pause span."""
        fb = self.frame_bytes
        end = start + len(data) // fb
        hits = [(max(a or 0, start), min(end if b is None else b, end)) for a, b in self.muted]
        hits = [(a, b) for a, b in hits if b > a]
        if not hits:
            return data
        out = bytearray(data)
        for a, b in hits:
            out[(a - start) * fb:(b - start) * fb] = bytes((b - a) * fb)
        return bytes(out)

    # -- media ------------------------------------------------------------------------------
    def on_rtp(self, index: int, data: bytes) -> None:
        stream = self.streams[index] if index < len(self.streams) else None
        if stream is None or stream.channel is None or self.state != "active":
            return
        try:
            pkt = parse_rtp(data)
        except RtpError:
            stream.timer.stats.ignored += 1
            return
        now = time.monotonic()
        self.last_activity = now
        self._heard(self.now_pos(now))
        if self.stopped:
            stream.timer.stats.paused_dropped += 1
            return
        placed = stream.timer.on_packet(pkt, self.now_pos(now))
        if placed is not None and not self.discard_reason:
            # During a control pause audio still goes into the (in-memory) mixer window, where the pause
            # span is zeroed before anything is written; so a pause or resume takes effect at its own
            # instant even though capture learns of it up to a poll later. Listeners get nothing.
            self.mixer.put(stream.channel, placed[0], placed[1])
            if not self.control_paused:
                self.feed.publish(stream.channel, placed[0], placed[1])

    def flush(self, now: float) -> None:
        if self.state == "active":
            pos = self.now_pos(now)
            self.mixer.flush(pos - int(REORDER_SECONDS * self.rate))
            if self.stopped or not any(s.channel is not None and not s.timer.paused for s in self.streams):
                # Paused by SDP (a=inactive, hold) or stopped: no media is expected, none is missing.
                self.expect_from = pos
                if self.heard_pos is not None:
                    self.heard_pos = pos

    def _heard(self, pos: int) -> None:
        """Media arrived at ``pos``: a silence on the wire before it longer than ``GAP_SECONDS`` is a gap."""
        since = self.heard_pos if self.heard_pos is not None else self.expect_from
        if pos - since > GAP_SECONDS * self.rate:
            self.gaps.append((since, pos))
        self.heard_pos = max(pos, since)

    def media_gaps(self, end_pos: int) -> list[list[float]]:
        """The gaps in seconds from the INVITE, the silence between the last packet and ``end_pos`` included."""
        gaps = list(self.gaps)
        if self.heard_pos is not None and end_pos - self.heard_pos > GAP_SECONDS * self.rate:
            gaps.append((self.heard_pos, end_pos))
        return [[round(a / self.rate, 3), round(b / self.rate, 3)] for a, b in gaps]

    def assign_channels(self) -> None:
        """Left = remote party's stream, right = agent's, by label from the metadata mapping.

        A mono call (one mixed stream) has one channel: every accepted stream goes into it (the mixer
        adds them), since a stream a re-offer adds later has nowhere else to go without losing it.
        """
        if self.channels == 1:
            for s in self.streams:
                s.channel = 0 if s.plan.accepted else None
            return
        caller_label, agent_label = self.channel_labels
        used: set[int] = set()
        for s in self.streams:
            s.channel = None
        for channel, label in ((0, caller_label), (1, agent_label)):
            for i, s in enumerate(self.streams):
                if label is not None and s.plan.label == label and s.plan.accepted and i not in used:
                    s.channel = channel
                    used.add(i)
                    break
        # Streams the metadata does not tie to anyone: free channels in m-line order (last resort).
        free = [c for c in (0, 1) if c not in {s.channel for s in self.streams}]
        for i, s in enumerate(self.streams):
            if s.plan.accepted and i not in used and free:
                s.channel = free.pop(0)
                used.add(i)

    channel_labels: tuple[str | None, str | None] = (None, None)
    """(remote party's stream label, agent's stream label) from the metadata (``derive_facts``)."""

    # -- control hook -------------------------------------------------------------------------
    def position_of(self, at: datetime | None) -> int:
        """The timeline position of a wall-clock instant (now when None; never in the future)."""
        now = self.now_pos()
        if at is None:
            return now
        return max(0, min(now, int((at - self.started_at).total_seconds() * self.rate)))

    def apply_control(self, action: ControlAction, *, actor: str, at: datetime | None = None) -> str:
        """Apply a recording-control action (pause/resume/stop/personal) at ``at`` (default: now).

        Pause silences the timeline from ``at`` until the resume's ``at``: audio in the 1 s reorder
        window is zeroed before it is written (anything older is zeroed when the WAV is made);
        stop keeps nothing from ``at`` on; personal discards the call (the caller destroys the spool
        at once with ``destroy_personal``). Pause, stop and personal end every live listener.
        Returns the call's new state.
        """
        pos = self.position_of(at)
        if action == "pause":
            if not self.control_paused and not self.stopped:
                self.control_paused = True
                self.muted.append([pos, None])
                self.mark("pause", source="control", actor=actor)
                self.feed.end("paused")
            return "paused" if not self.stopped else "stopped"
        if action == "resume":
            if self.control_paused and not self.stopped:
                self.control_paused = False
                if self.muted and self.muted[-1][1] is None:
                    self.muted[-1][1] = max(pos, self.muted[-1][0] or 0)
                for s in self.streams:
                    if s.plan.active:
                        s.timer.resume()
                self.mark("resume", source="control", actor=actor)
            return "recording" if not self.stopped else "stopped"
        if action == "stop":
            if not self.stopped:
                self.stop_pos = pos
                self.mixer.flush(max(self.now_pos(), self.mixer.base))
                self.stopped = True
                self.mark("stop", source="control", actor=actor)
                self.feed.end("stopped")
            return "stopped"
        if self.discard_reason is None:
            self.discard_reason = "the call was marked personal; nothing of it is kept"
            self.discard_clauses = ("A14", "B4")
            self.personal_by = actor
            self.mark("personal", source="control", actor=actor)
        self.feed.end("personal")
        return "discarded"

    def destroy_personal(self, *, actor: str, reason: str) -> None:
        """A personal call: close and destroy the partial spool now, under the retention rules.

        Blocking: run in a worker thread. The spool's key dies with this object (it was never
        stored); the blob is deleted and the pending row becomes a ``destroyed`` recording with a
        destruction record (rule ``personal_call``), so the call id can never be stored again.
        """
        with self._storage_lock:
            self._destroy_personal(actor=actor, reason=reason)

    def _destroy_personal(self, *, actor: str, reason: str) -> None:
        rt = self.runtime
        if self._encryptor is not None:
            with contextlib.suppress(Exception):
                self._encryptor.close()
            with contextlib.suppress(Exception):
                self._stack.close()
            self._encryptor = None
        self._spool_key = None
        if self.rec_id is None:
            return
        rec_id = self.rec_id
        with rt.db.unit_of_work() as session:
            row = session.get(Recording, rec_id)
            pending = []
            if row is not None and row.state == "pending":
                pending = destroy_now(session, keyring=rt.keyring, doomed=[Doomed.of(
                    row, RetentionRule.PERSONAL_CALL.value, reason)], actor=actor, clock=rt.clock)
            audit.append(session, audit.AuditEvent(
                actor=ACTOR, action="capture.discarded", decision="info", object_type="call",
                object_id=catalog_call_id(self.call_id)[:64], reason=self.discard_reason or reason,
                details={"timeline": self.timeline[:200], "recording_id": rec_id}, clauses=self.discard_clauses,
            ), clock=rt.clock)
            self._mark_controls(session, recording_id=rec_id)
        finish_destruction(rt.db, rt.store, rt.keyring, pending, clock=rt.clock)
        self.rec_id = self.blob_key = None

    def _mark_controls(self, session: Any, *, recording_id: str | None) -> None:
        """Record on the control events that capture applied them (so nothing applies them again), and
        link them to the recording once there is one."""
        if not self.applied_controls:
            return
        for control in session.scalars(select(RecordingControl).where(
                RecordingControl.id.in_(list(self.applied_controls)))):
            if control.applied_at is None:
                control.applied_at = self.runtime.clock.now()
                control.outcome = self.applied_controls[control.id]
            if recording_id is not None:
                control.recording_id = recording_id

    # -- the end -------------------------------------------------------------------------------
    def finish(self, *, policy: PolicyDocument, ended_at: datetime, end_pos: int, reason: str) -> str | None:
        """Turn the spool into a recording, or discard it. Blocking: run in a worker thread.

        Returns the recording id, or None when nothing was kept.
        """
        with self._storage_lock:
            if self.personal_by is not None:
                self._destroy_personal(actor=self.personal_by, reason=f"call marked personal by {self.personal_by}")
                return None
            return self._finish(policy=policy, ended_at=ended_at, end_pos=end_pos, reason=reason)

    def _finish(self, *, policy: PolicyDocument, ended_at: datetime, end_pos: int, reason: str) -> str | None:
        rt = self.runtime
        in_scope, why, clauses = scope_decision(policy, self.facts, final=True)
        if self.discard_reason is None and not in_scope:
            self.discard_reason, self.discard_clauses = f"out of the recording scope: {why}", clauses
        if self.discard_reason is None and self.write_error is not None:
            self.discard_reason = f"audio could not be written ({self.write_error})"
        frames = 0
        if self._encryptor is not None:
            if not self.stopped and self.discard_reason is None:
                self.mixer.finish(max(end_pos, self.mixer.high))
            frames = self.frames_written if self.stop_pos is None else min(self.frames_written, self.stop_pos)
            try:
                self._encryptor.close()
                self._stack.close()
            except Exception as exc:
                self.discard_reason = self.discard_reason or f"audio could not be written ({exc})"
                self._flush_failed = self._flush_failed or (exc if isinstance(exc, FlushFailed) else None)
            self._encryptor = None
        if self._flush_failed is not None:  # the fsync-gate alarm, as for any other ingest (RELIABILITY 3)
            raise_storage_alarm(rt.db, self._flush_failed, call_id=catalog_call_id(self.call_id)[:64], actor=ACTOR,
                                clock=rt.clock)
        if self.rec_id is None or self.blob_key is None:
            return None  # nothing reserved, or a personal call already destroyed
        if self.heard_pos is None and self.discard_reason is None:
            self._fail_no_media(ended_at=ended_at)
            return None
        if self.applied_controls:
            # Events capture applied live are marked applied now, so that ingest's admission below (which
            # honours the call's *unapplied* events) cannot apply them a second time.
            with rt.db.unit_of_work() as session:
                self._mark_controls(session, recording_id=None)
        admission = None
        if self.discard_reason is None and frames > 0:
            # Ingest's admission rules (announcement A14, filed control events): capture/siprec/admit.py.
            admission = admit_call(rt, policy=policy, meta=self._catalog_metadata(ended_at=ended_at),
                                   channels=self.channels,
                                   rate=self.rate, frames=frames, actor=ACTOR)
            if admission.refusal is not None:
                self.discard_reason = admission.refusal.problems[0].message if admission.refusal.problems \
                    else str(admission.refusal)
                self.discard_clauses = ("A14",)
        if self.discard_reason is not None or frames == 0:
            reason_text = self.discard_reason or "no audio was received"
            failed = frames == 0 or self.write_error is not None or reason_text.startswith("audio could not be")
            discard_recording(rt.db, rt.store, self.rec_id, self.blob_key, clock=rt.clock,
                              failure=reason_text[:300] if failed else None)
            with rt.db.unit_of_work() as session:
                audit.append(session, audit.AuditEvent(
                    actor=ACTOR, action="capture.discarded", decision="info", object_type="call",
                    object_id=catalog_call_id(self.call_id)[:64], reason=reason_text,
                    details={"timeline": self.timeline[:200]}, clauses=self.discard_clauses,
                ), clock=rt.clock)
                self._mark_controls(session, recording_id=None)
            return None
        return self._store_recording(policy=policy, ended_at=ended_at, frames=frames, reason=reason,
                                     admission=admission)

    def _fail_no_media(self, *, ended_at: datetime) -> None:
        """Not one RTP packet arrived: a ``failed`` row (never an "available" recording of silence)."""
        assert self.rec_id is not None and self.blob_key is not None
        rt = self.runtime
        auth = sum(s.timer.stats.srtp_auth_failures for s in self.streams)
        reason = ("no media was received: every SRTP packet failed authentication (wrong key?)" if auth else
                  "no media was received (media blocked, or sent to another address or port than answered)")
        fail_recording(rt.db, rt.store, self.rec_id, self.blob_key, reason=reason, actor=ACTOR, ended_at=ended_at,
                       details={"source": "siprec", "timeline": self.timeline[:200], "streams": self._stream_stats()},
                       clock=rt.clock)
        if self.applied_controls:
            with rt.db.unit_of_work() as session:
                self._mark_controls(session, recording_id=self.rec_id)
        log.warning("call %s: %s", self.call_id, reason)

    def _stream_stats(self) -> dict[str, dict[str, Any]]:
        return {f"stream{i}": {"label": s.plan.label, "channel": s.channel, "packets": s.timer.stats.packets,
                               "lost": s.timer.stats.lost, "duplicates": s.timer.stats.duplicates,
                               "ignored": s.timer.stats.ignored, "ssrc_changes": s.timer.stats.ssrc_changes,
                               "srtp_auth_failures": s.timer.stats.srtp_auth_failures}
                for i, s in enumerate(self.streams)}

    def _store_recording(self, *, policy: PolicyDocument, ended_at: datetime, frames: int, reason: str,
                         admission: Admission | None = None) -> str:
        rt = self.runtime
        assert self.rec_id is not None and self.blob_key is not None
        spool_key = self.blob_key
        # The spool's key lives only in this object; read it back through the v2 reader.
        spool_reader = self._spool_reader
        assert spool_reader is not None
        edit = admission.edit if admission is not None else AudioEdit()
        # Live control first (paused spans zeroed, nothing after a stop), then admission's edit (announcement).
        chunks = edit_stream(self._kept_audio(spool_reader.iter_all(), frames), edit, rate=self.rate, frames=frames,
                             frame_bytes=self.frame_bytes)
        frames = kept_frames(edit, rate=self.rate, frames=frames)
        wav_header = _wav_header(frames, self.rate, self.channels)
        source = _ChainReader([wav_header], chunks)
        data_key = new_data_key()
        size = len(wav_header) + frames * self.frame_bytes
        with rt.store.writer(spool_key) as sink:
            result = encrypt_stream(source, size, sink, data_key=data_key, context=self.rec_id.encode(),
                                    chunk_size=CHUNK_SIZE)
        meta = self._catalog_metadata(ended_at=ended_at)
        if admission is not None:  # with consent evidence filed through the control API
            meta = admission.applied_to(meta)
        stats = self._stream_stats()
        gaps = self.media_gaps(self.stop_pos if self.stop_pos is not None else self.frames_written)
        layout = ["remote", "agent"] if self.channels == 2 else ["mixed"]
        with rt.db.unit_of_work() as session:
            row = session.get(Recording, self.rec_id)
            assert row is not None
            row.ended_at = meta.ended_at
            row.direction = meta.direction
            row.extension, row.agent, row.team = meta.extension, meta.agent, meta.team
            row.remote_number, row.local_number = meta.remote_number, meta.local_number
            row.consent = meta.consent.model_dump(mode="json", exclude_none=True) if meta.consent else {}
            row.consent_state, row.consent_source = meta.consent_state, meta.consent_source
            row.quarantine_reason = consent_check.quarantine_reason(policy, meta)
            row.quarantined = row.quarantine_reason is not None
            row.consent_flag = consent_check.flag_reason(policy, meta)
            row.duration_seconds = frames / self.rate
            row.sample_rate, row.channels, row.audio_format = self.rate, self.channels, "wav"
            row.media_gaps = gaps
            row.missing_seconds = round(sum(b - a for a, b in gaps), 3)
            finalise_recording(session, rec_id=self.rec_id, result=result, data_key=data_key, keyring=rt.keyring,
                               chunk_size=CHUNK_SIZE, actor=ACTOR, call_id=meta.call_id,
                               consent_state=meta.consent_state, clock=rt.clock, action="recording.captured",
                               details={"source": "siprec", "end": reason, "channels": layout,
                                        "mapping": self.facts.mapping, "timeline": self.timeline[:200],
                                        "streams": stats, "media_gaps": gaps,
                                        "admission": admission.notes if admission else []})
            self._mark_controls(session, recording_id=self.rec_id)
            if admission is not None:
                mark_applied(session, admission=admission, recording_id=self.rec_id, clock=rt.clock)
        return self.rec_id

    def _kept_audio(self, spool: Iterator[bytes], frames: int) -> Iterator[bytes]:
        """The spool's first ``frames`` frames with control pauses silenced (again: some may predate them)."""
        pos = 0
        for chunk in spool:
            n = min(len(chunk) // self.frame_bytes, frames - pos)
            if n <= 0:
                break
            yield self._silence_paused(chunk[: n * self.frame_bytes], pos)
            pos += n

    @property
    def _spool_reader(self) -> EncryptedBlobReader | None:
        if self.rec_id is None or self.blob_key is None or self._spool_key is None:
            return None
        key = self.blob_key
        store = self.runtime.store
        return EncryptedBlobReader(store.ranged_reader(key), data_key=self._spool_key,
                                   context=self.rec_id.encode(), blob_size=store.size(key))

    _spool_key: bytes | None = None

    def _catalog_metadata(self, *, ended_at: datetime) -> CallMetadata:
        f = self.facts
        consent = None
        if f.consent:
            try:
                consent = ConsentEvidence.model_validate(f.consent)
            except ValidationError:
                consent = None  # unusable evidence counts as none: the recording is quarantined
        return CallMetadata.model_construct(
            call_id=catalog_call_id(self.call_id),
            direction="outbound" if f.direction == "outbound" else "inbound", started_at=self.started_at,
            ended_at=max(ended_at, self.started_at), extension=f.extension, agent=f.agent, team=f.team,
            remote_number=f.remote_number, local_number=f.local_number, consent=consent, case_ref=None,
            crm_ref=None,
        )


def lookup_agent(runtime: Runtime, extension: str | None) -> User | None:
    """The active user with this extension (their username is the agent, their team the team)."""
    return identity.user_with_extension(runtime.db, extension)


def _wav_header(frames: int, rate: int, channels: int) -> bytes:
    data_len = frames * channels * 2
    return (b"RIFF" + struct.pack("<I", 36 + data_len) + b"WAVE" + b"fmt " +
            struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * channels * 2, channels * 2, 16) +
            b"data" + struct.pack("<I", data_len))


class _ChainReader(io.RawIOBase):
    """A readable stream over some bytes followed by an iterator of bytes (no copy to disk)."""

    def __init__(self, head: list[bytes], rest: Iterator[bytes]) -> None:
        self._pieces = iter([*head])
        self._rest = rest
        self._current = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._current:
            nxt = next(self._pieces, None)
            if nxt is None:
                nxt = next(self._rest, None)
            if nxt is None:
                return 0
            self._current = memoryview(nxt)
        n = min(len(target), len(self._current))
        target[:n] = self._current[:n]
        self._current = self._current[n:]
        return n
