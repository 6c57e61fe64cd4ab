"""The worker reconciles the PBX's call records by itself, every hour (``capture.reconcile_call_records``).

Why: reconciliation is what finds a call that never reached callvault (``missing``); run only on demand it finds
nothing on the days nobody remembers to run it, which is the silent loss it exists to catch. A deployment names
its call-record files once and the worker reads them each hour:

* ``CALLVAULT_RECONCILE_CDR``: ``FORMAT:/path/to/cdr.csv`` entries separated by ``;`` (``FORMAT`` one of
  ``call_records.FORMATS``); local times in ``CALLVAULT_PBX_TIMEZONE``.
* ``CALLVAULT_RECONCILE_SETTLE_MINUTES`` (default 60): calls that ended more recently are not judged yet (a PBX
  import waits for its file to be quiet and its CDR row; SIPREC stores at the BYE). Set it above those delays.
* ``CALLVAULT_RECONCILE_LOOKBACK_DAYS`` (default 7): older records are left (they were judged on earlier runs;
  a CDR file that only grows stays cheap to read).

Each run is ``capture.reconcile`` as ``worker:reconcile``: idempotent (an incident is raised once per call and
kind, however many runs or worker nodes find it), audited ``capture.reconciled``. A file that cannot be read or
is malformed is never skipped in silence: each run audits ``capture.reconcile_failed`` (decision ``alarm``, the
problems named by line and field) and the compliance roles are mailed once a day per file.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from callvault.audit import service as audit
from callvault.capture import call_records
from callvault.capture.reconcile import reconcile
from callvault.core.errors import CallvaultError, ConfigurationError, InvalidInput
from callvault.notify import service as notify
from callvault.oversight import service as oversight
from callvault.policy import service as policy_service

if TYPE_CHECKING:
    from callvault.runtime import Runtime

log = logging.getLogger("callvault.capture.reconcile")
ACTOR = "worker:reconcile"


@dataclass(frozen=True)
class ScheduledFile:
    fmt: str
    path: Path


@dataclass(frozen=True)
class ReconcileSchedule:
    files: tuple[ScheduledFile, ...] = ()
    settle: timedelta = timedelta(minutes=60)
    lookback: timedelta = timedelta(days=7)


def _whole(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ConfigurationError(f"{name} must be a whole number from {low} to {high} (got {raw!r})")
    return int(raw)


def schedule_from(env: Mapping[str, str]) -> ReconcileSchedule:
    """The files and windows from the environment; ConfigurationError naming the variable otherwise."""
    files = []
    for item in (part.strip() for part in (env.get("CALLVAULT_RECONCILE_CDR") or "").split(";")):
        if not item:
            continue
        fmt, _, path = item.partition(":")
        if fmt not in call_records.FORMATS or not path or not Path(path).is_absolute():
            raise ConfigurationError(f"CALLVAULT_RECONCILE_CDR entry {item!r}: write FORMAT:/absolute/path.csv with "
                                     f"FORMAT one of {', '.join(call_records.FORMATS)}")
        files.append(ScheduledFile(fmt, Path(path)))
    return ReconcileSchedule(
        files=tuple(files),
        settle=timedelta(minutes=_whole(env, "CALLVAULT_RECONCILE_SETTLE_MINUTES", 60, 0, 7 * 24 * 60)),
        lookback=timedelta(days=_whole(env, "CALLVAULT_RECONCILE_LOOKBACK_DAYS", 7, 1, 366)))


def _read(runtime: Runtime, item: ScheduledFile) -> call_records.CallRecords:
    from callvault.capture.imports.settings import pbx_settings

    try:
        data = item.path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read the call records {item.path}: {exc.strerror or exc}") from None
    return call_records.read_records(data, fmt=item.fmt, region=runtime.settings.default_region,
                                     tz=pbx_settings(runtime.settings.env).timezone)


def _failed(runtime: Runtime, item: ScheduledFile, exc: CallvaultError) -> None:
    reason = f"{item.path}: {exc.message}"  # InvalidInput's message names each problem by line and field
    log.error("scheduled reconciliation of %s failed: %s", item.path, reason)
    now = runtime.clock.now()
    with runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=runtime.clock)
        audit.append(session, audit.AuditEvent(
            actor=ACTOR, action="capture.reconcile_failed", decision="alarm", object_type="call_records",
            object_id=str(item.path)[:200], reason=reason[:300], details={"format": item.fmt, "error": reason[:2000]},
        ), clock=runtime.clock)
        tag = hashlib.sha256(str(item.path).encode()).hexdigest()[:16]
        for user in oversight.recipients(session, policy):
            notify.enqueue(
                session, to=getattr(user, "email", None) or "", recipient_user=user.username, clock=runtime.clock,
                subject=f"[callvault] Call records could not be reconciled: {item.path.name}"[:300],
                body=(f"The worker could not reconcile the call records in {item.path} ({item.fmt}), so calls that "
                      f"never reached callvault are not being found.\n\nWhat is wrong:\n{reason}\n\n"
                      "Fix the file or CALLVAULT_RECONCILE_CDR; the worker tries again every hour (audited "
                      "capture.reconcile_failed). You receive this because the policy routes compliance reports "
                      f"to the role {user.role}.\n"),
                dedup_key=f"reconcile-failed:{tag}:{now:%Y-%m-%d}:{user.username}")


def run(runtime: Runtime) -> int:
    """Reconcile each configured file's settled records; returns how many records were judged."""
    schedule = schedule_from(runtime.settings.env)
    judged = 0
    for item in schedule.files:
        try:
            records = _read(runtime, item)
        except CallvaultError as exc:
            _failed(runtime, item, exc)
            continue
        now = runtime.clock.now()
        due = [r for r in records.records if now - schedule.lookback <= r.started_at
               and r.started_at + timedelta(seconds=r.duration_seconds) <= now - schedule.settle]
        if not due:
            continue
        with runtime.db.unit_of_work() as session:
            policy = policy_service.current_policy(session, clock=runtime.clock)
            result = reconcile(session, policy=policy, records=call_records.CallRecords(due), actor=ACTOR,
                               actor_role="worker", clock=runtime.clock)
        log.info("scheduled reconciliation of %s: %s", item.path, result.summary())
        judged += len(due)
    return judged
