"""Prometheus metrics (docs/operations.md lists each one).

Two kinds, on purpose:
- Cluster-wide facts are computed from the database at scrape time (recordings ingested, ingests in
  flight, queue depths, retention sweep progress), so every node reports the same numbers and a
  restarted node loses nothing.
- Per-process facts are counted in the process: HTTP request counts and latency (the request SLA),
  and, read from the SIPREC servers' stats files on this host, active capture calls and RTP loss.

No label ever carries personal data: routes are templates (``/api/v1/recordings/{recording_id}``),
never paths with ids, numbers or names; queues and states are fixed vocabularies.
"""

from __future__ import annotations

import glob
import json
import logging
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from callvault.access.models import AccessRequest
from callvault.audit import alarm
from callvault.capture.models import CaptureIncident, IncidentKind
from callvault.core.clock import Clock, system_clock
from callvault.core.db import Database
from callvault.identity.counters import Counters, CountersUnavailable
from callvault.notify.models import OutboxMail, OutboxState
from callvault.oversight.models import MisuseReport
from callvault.recordings.models import Recording, RecordingState
from callvault.retention.models import KeyDestruction
from callvault.subject_requests.models import RequestStatus, SubjectRequest
from callvault.transcription.models import Transcript, TranscriptStatus

log = logging.getLogger("callvault.metrics")

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Seconds; 0.2 is the p99 target in REQUIREMENTS (see docs/performance.md)."""
SIPREC_STATS_MAX_AGE = 30.0
"""A stats file older than this belongs to a stopped capture process: not counted as active."""


class DatabaseCollector(Collector):
    """Cluster-wide gauges and counters read from the database at each scrape (a few COUNT queries)."""

    def __init__(self, db: Database, clock: Clock = system_clock) -> None:
        self.db = db
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        up = GaugeMetricFamily("callvault_database_up", "1 when the database answered this scrape")
        try:
            families = list(self._families())
        except Exception as exc:  # a scrape must still answer: say the database is down
            log.warning("metrics: database unavailable: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families
        took = GaugeMetricFamily("callvault_metrics_database_seconds", "time spent computing database metrics")
        took.add_metric([], time.perf_counter() - started)
        yield took

    def _families(self) -> Iterable[Metric]:
        now = self.clock.now()
        with self.db.read_only() as session:
            by_state = dict(session.execute(select(Recording.state, func.count()).group_by(Recording.state)).all())
            ingested = CounterMetricFamily("callvault_recordings_ingested",
                                           "recordings ever stored (available or since destroyed)")
            ingested.add_metric([], sum(n for s, n in by_state.items() if s != RecordingState.PENDING))
            yield ingested
            states = GaugeMetricFamily("callvault_recordings", "recordings by state", labels=["state"])
            for state in RecordingState:
                states.add_metric([state.value], by_state.get(state.value, 0))
            yield states
            in_flight = GaugeMetricFamily(
                "callvault_capture_ingests_in_progress",
                "recordings reserved but not yet finalised, cluster-wide: uploads and SIPREC calls being captured")
            in_flight.add_metric([], by_state.get(RecordingState.PENDING.value, 0))
            yield in_flight
            gapped, missing = session.execute(
                select(func.count(), func.coalesce(func.sum(Recording.missing_seconds), 0.0))
                .where(Recording.missing_seconds > 0)).one()
            with_gaps = GaugeMetricFamily(
                "callvault_recordings_with_media_gaps",
                "stored recordings in which capture received no media for a while (flagged incomplete)")
            with_gaps.add_metric([], gapped)
            yield with_gaps
            missing_total = GaugeMetricFamily(
                "callvault_recordings_missing_media_seconds", "seconds of calls without media, over all recordings")
            missing_total.add_metric([], float(missing))
            yield missing_total

            queues = GaugeMetricFamily("callvault_queue_depth", "work waiting in each database queue",
                                       labels=["queue"])
            counts = {
                "mail_outbox": select(func.count()).select_from(OutboxMail).where(
                    OutboxMail.state.in_([OutboxState.PENDING, OutboxState.SENDING])),
                "transcription": select(func.count()).select_from(Transcript).where(
                    Transcript.status == TranscriptStatus.PENDING),
                "access_requests": select(func.count()).select_from(AccessRequest).where(
                    AccessRequest.status == "pending"),
                "subject_requests": select(func.count()).select_from(SubjectRequest).where(
                    SubjectRequest.status.in_([RequestStatus.AWAITING_VERIFICATION, RequestStatus.TO_REVIEW])),
                "misuse_reports": select(func.count()).select_from(MisuseReport).where(MisuseReport.status == "open"),
                "key_shredding": select(func.count()).select_from(KeyDestruction).where(
                    KeyDestruction.completed_at.is_(None)),
            }
            for name, stmt in counts.items():
                queues.add_metric([name], session.scalar(stmt) or 0)
            yield queues

            due = GaugeMetricFamily("callvault_retention_due_recordings",
                                    "recordings past their destruction date and not on hold: the sweep's backlog")
            due.add_metric([], session.scalar(select(func.count()).select_from(Recording).where(
                Recording.state == RecordingState.AVAILABLE, Recording.on_hold.is_(False),
                Recording.destroy_after <= now)) or 0)
            yield due
            held = GaugeMetricFamily("callvault_retention_on_hold_recordings", "recordings under a legal hold")
            held.add_metric([], session.scalar(select(func.count()).select_from(Recording).where(
                Recording.state == RecordingState.AVAILABLE, Recording.on_hold.is_(True))) or 0)
            yield held
            destroyed = CounterMetricFamily("callvault_retention_destroyed_recordings",
                                            "recordings destroyed by retention or request")
            destroyed.add_metric([], by_state.get(RecordingState.DESTROYED.value, 0))
            yield destroyed
            last = session.scalar(select(func.max(Recording.destroyed_at)).where(
                Recording.state == RecordingState.DESTROYED))  # the state index narrows it to destroyed rows
            last_sweep = GaugeMetricFamily("callvault_retention_last_destruction_timestamp_seconds",
                                           "when a recording was last destroyed (0: never)")
            last_sweep.add_metric([], last.timestamp() if last else 0)
            yield last_sweep
            raised = CounterMetricFamily(
                "callvault_capture_incidents",
                "recording incidents ever raised (recording_scope.mandatory): calls missing, failed, gapped or refused",
                labels=["kind"])
            open_now = GaugeMetricFamily("callvault_capture_incidents_open", "recording incidents not yet resolved",
                                         labels=["kind"])
            by_kind: dict[str, list[int]] = {k.value: [0, 0] for k in IncidentKind}
            for kind, status, count in session.execute(
                    select(CaptureIncident.kind, CaptureIncident.status, func.count())
                    .group_by(CaptureIncident.kind, CaptureIncident.status)):
                by_kind.setdefault(kind, [0, 0])[0] += count
                if status == "open":
                    by_kind[kind][1] += count
            for kind, (total, still_open) in sorted(by_kind.items()):
                raised.add_metric([kind], total)
                open_now.add_metric([kind], still_open)
            yield raised
            yield open_now
            tamper = GaugeMetricFamily("callvault_audit_alarm",
                                       "1 while an audit tamper alarm is raised (checkpoint signing stopped)")
            tamper.add_metric([], 1 if alarm.open_alarm(session) is not None else 0)
            yield tamper


class SiprecStatsCollector(Collector):
    """Live capture counters from the SIPREC servers on this host (``callvault capture siprec
    --stats-file``), named by ``CALLVAULT_SIPREC_STATS`` (a glob: one file per capture process)."""

    def __init__(self, pattern: str | None) -> None:
        self.pattern = pattern

    def collect(self) -> Iterator[Metric]:
        active = GaugeMetricFamily("callvault_capture_calls_active", "SIPREC calls being recorded now (this host)")
        packets = CounterMetricFamily("callvault_capture_rtp_packets", "RTP packets received in active calls")
        lost = CounterMetricFamily("callvault_capture_rtp_packets_lost", "RTP packets lost in active calls")
        refused = CounterMetricFamily("callvault_capture_calls_refused", "SIPREC calls refused since start")
        rejected = CounterMetricFamily("callvault_capture_calls_rejected",
                                       "SIPREC INVITEs refused so the SBC fails over: 503 at capacity, 488 nothing "
                                       "recordable", labels=["reason"])
        timed_out = CounterMetricFamily("callvault_capture_calls_ended_without_bye",
                                        "SIPREC calls ended by a timer (rtp timeout, session expired, timeout)",
                                        labels=["reason"])
        totals = {"active_calls": 0.0, "packets": 0.0, "lost": 0.0, "refused": 0.0,
                  "refused_capacity": 0.0, "refused_media": 0.0}
        ended: dict[str, float] = {}
        now = time.time()
        for name in sorted(glob.glob(self.pattern)) if self.pattern else []:
            try:
                snapshot = json.loads(Path(name).read_text(encoding="utf-8"))
                if now - float(snapshot.get("time", 0)) > SIPREC_STATS_MAX_AGE:
                    continue
                for key in totals:
                    totals[key] += float(snapshot.get(key, 0))
                for why, count in dict(snapshot.get("ended_by_timer") or {}).items():
                    ended[str(why)] = ended.get(str(why), 0.0) + float(count)
            except (OSError, ValueError, TypeError, AttributeError) as exc:
                log.warning("metrics: SIPREC stats file %s unreadable: %s", name, exc)
        active.add_metric([], totals["active_calls"])
        packets.add_metric([], totals["packets"])
        lost.add_metric([], totals["lost"])
        refused.add_metric([], totals["refused"])
        rejected.add_metric(["capacity"], totals["refused_capacity"])
        rejected.add_metric(["media"], totals["refused_media"])
        for why, count in sorted(ended.items()):
            timed_out.add_metric([why], count)
        yield from (active, packets, lost, refused, rejected, timed_out)


class CountersCollector(Collector):
    """Whether the rate-limit store answers (Redis when ``CALLVAULT_REDIS_URL`` is set): while it does not,
    sign-in is refused everywhere, so alert on ``callvault_rate_limit_store_up == 0``."""

    def __init__(self, counters: Counters) -> None:
        self.counters = counters

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("callvault_rate_limit_store_up",
                               "1 when the rate-limit counter store answered this scrape", labels=["backend"])
        try:
            self.counters.ping()
            up.add_metric([self.counters.backend], 1)
        except CountersUnavailable:  # already logged by the store
            up.add_metric([self.counters.backend], 0)
        yield up


class HttpMetrics:
    """Request counts and latency histograms in this process, by method, route template and status class."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("callvault_http_requests", "HTTP requests answered",
                                ["method", "route", "status"], registry=registry)
        self.latency = Histogram("callvault_http_request_duration_seconds", "time to answer an HTTP request",
                                 ["method", "route"], buckets=LATENCY_BUCKETS, registry=registry)

    def observe(self, *, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS") else "OTHER"
        self.requests.labels(method, route, f"{status // 100}xx").inc()
        self.latency.labels(method, route).observe(seconds)


def build_registry(db: Database, *, siprec_stats: str | None, clock: Clock = system_clock,
                   counters: Counters | None = None) -> tuple[CollectorRegistry, HttpMetrics]:
    """A registry per app (no module-level global: tests build many apps in one process)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(db, clock))
    if counters is not None:
        registry.register(CountersCollector(counters))
    registry.register(SiprecStatsCollector(siprec_stats))
    return registry, HttpMetrics(registry)
