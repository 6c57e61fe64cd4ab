"""Issue 28, point 1: in mandatory scope a call that was refused, failed or never arrived is an incident.

Under the FCA example policy (``recording_scope.mandatory``, teams rates/equities/fx), what a compliance
officer would notice: the PBX's call records show calls callvault never stored, and nothing said so. Each
test runs on SQLite and PostgreSQL with the product's clock fixed.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from callvault.audit.models import AuditEntry
from callvault.capture import call_records, incidents
from callvault.capture.admission import NotRecordable
from callvault.capture.ingest import fail_recording, ingest_recording
from callvault.capture.metadata import parse_metadata
from callvault.capture.models import CaptureIncident
from callvault.capture.reconcile import Reconciliation, reconcile
from callvault.cli.commands import initialise
from callvault.core.clock import FixedClock
from callvault.core.errors import InvalidInput
from callvault.core.settings import load_settings
from callvault.identity import service as identity
from callvault.notify.models import OutboxMail
from callvault.oversight import reports
from callvault.policy import service as policy_service
from callvault.recordings.models import Recording
from callvault.runtime import build_runtime
from tests.conftest import SHIPPED_POLICY_A, fresh_database
from tests.support.audio import wav_bytes
from tests.support.capture import reserve_as_captured, store_with_gaps
from tests.support.retention import PASSWORD, World

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"
FCA = EXAMPLES / "policy-finance-fca.yaml"
NOW = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
"""The product's clock: the morning after the calls."""
CALLS = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
CLIENT = "+44 20 7946 0958"
DESK = "+44 20 7946 0000"
HEADER = "call_id,start,duration,direction,caller,called,extension\n"


def _cdr(*lines: str) -> bytes:
    return (HEADER + "".join(f"{line}\n" for line in lines)).encode()


def _line(call_id: str, start: datetime, *, extension: str = "4001", direction: str = "inbound",
          seconds: int = 180) -> str:
    caller, called = (CLIENT, DESK) if direction == "inbound" else (DESK, CLIENT)
    return f"{call_id},{start.isoformat()},{seconds},{direction},{caller},{called},{extension}"


def _world(request: pytest.FixtureRequest, tmp_path: Path, policy_file: Path) -> Iterator[World]:
    (tmp_path / "db").mkdir()
    with fresh_database(request.config.getoption("--db"), tmp_path / "db") as url:
        settings = load_settings(tmp_path / "data", env={"CALLVAULT_DATABASE_URL": url,
                                                         "CALLVAULT_DEFAULT_REGION": "GB"})
        initialise(settings, policy_file=policy_file, admin_user="admin", admin_password=PASSWORD)
        clock = FixedClock(NOW)
        runtime = build_runtime(settings, clock=clock)
        with runtime.db.unit_of_work() as session:
            policy = policy_service.current_policy(session, clock=clock)
            for username, role, extension, team in (("cora", "compliance", None, None),
                                                    ("tom", "trader", "4001", "rates"),
                                                    ("tia", "trader", "4002", "equities"),
                                                    ("otto", "trader", "4009", "operations")):
                if role in policy.roles:
                    identity.create_user(session, actor="test", policy=policy, username=username, role=role,
                                         password=PASSWORD, extension=extension, team=team)
        world = World(settings=settings, runtime=runtime, clock=clock, policy="fca")
        try:
            yield world
        finally:
            world.close()


@pytest.fixture()
def fca(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    yield from _world(request, tmp_path, FCA)


@pytest.fixture()
def policy_a(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    yield from _world(request, tmp_path, SHIPPED_POLICY_A)


def _meta(call_id: str, start: datetime, *, extension: str = "4001", team: str = "rates",
          seconds: float = 2.0) -> dict[str, Any]:
    return {"call_id": call_id, "direction": "inbound", "started_at": start.isoformat(),
            "ended_at": (start + timedelta(seconds=seconds)).isoformat(), "extension": extension, "team": team,
            "remote_number": CLIENT, "local_number": DESK,
            "consent": {"announcement_played_at": start.isoformat(), "announcement_version": "1"}}


def _store(world: World, call_id: str, start: datetime, **kw: Any) -> str:
    result = ingest_recording(db=world.runtime.db, store=world.runtime.store, keyring=world.runtime.keyring,
                              audio=io.BytesIO(wav_bytes(2.0)), metadata=_meta(call_id, start, **kw), actor="test",
                              actor_role="admin", default_region="GB", clock=world.clock)
    return result.recording_id


def _fail(world: World, call_id: str, start: datetime) -> str:
    """What SIPREC capture does with a call whose media never arrived: reserve it, then mark it failed."""
    meta = parse_metadata(_meta(call_id, start), default_region="GB")
    rec_id, blob_key = reserve_as_captured(world.runtime, meta, wav_bytes(2.0), world.clock)
    assert fail_recording(world.runtime.db, world.runtime.store, rec_id, blob_key,
                          reason="no media received (RTP timeout)", actor="siprec", clock=world.clock)
    return rec_id


def _reconcile(world: World, data: bytes, fmt: str = "generic") -> Reconciliation:
    records = call_records.read_records(data, fmt=fmt, region="GB", tz=None)
    with world.runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=world.clock)
        return reconcile(session, policy=policy, records=records, actor="cli:officer", clock=world.clock)


def _incidents(world: World) -> list[CaptureIncident]:
    with world.runtime.db.unit_of_work() as session:
        rows = list(session.scalars(select(CaptureIncident).order_by(CaptureIncident.kind)))
        session.expunge_all()
        return rows


def _mails(world: World) -> list[OutboxMail]:
    with world.runtime.db.unit_of_work() as session:
        rows = list(session.scalars(select(OutboxMail).where(OutboxMail.dedup_key.like("capture-incident:%"))))
        session.expunge_all()
        return rows


def _audit(world: World, action: str) -> list[AuditEntry]:
    with world.runtime.db.unit_of_work() as session:
        rows = list(session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)))
        session.expunge_all()
        return rows


# --------------------------------------------------------------------------------- the three-call file
def test_a_missing_and_a_failed_call_in_mandatory_scope_are_incidents_mailed_audited_and_reported(
        fca: World) -> None:
    recorded = _store(fca, "c-recorded", CALLS)
    failed = _fail(fca, "c-failed", CALLS + timedelta(minutes=20))
    cdr = _cdr(_line("c-recorded", CALLS), _line("c-missing", CALLS + timedelta(minutes=10), extension="4002"),
               _line("c-failed", CALLS + timedelta(minutes=20)))

    result = _reconcile(fca, cdr)

    assert result.mandatory and dict(result.counts) == {"recorded": 1, "missing": 1, "failed": 1}
    found = {f.record.call_id: f for f in result.findings}
    assert found["c-recorded"].recording_id == recorded and found["c-failed"].recording_id == failed
    rows = _incidents(fca)
    assert [(r.kind, r.call_id, r.status) for r in rows] == [("failed", "c-failed", "open"),
                                                             ("missing", "c-missing", "open")]
    missing = rows[1]
    assert (missing.extension, missing.team, missing.agent, missing.direction) == ("4002", "equities", "tia", "inbound")
    assert missing.clause == "FCA COBS 11.8.5" and missing.started_at == CALLS + timedelta(minutes=10)
    assert missing.remote_number == "+442079460958" and missing.duration_seconds == 180
    assert rows[0].source == "capture"  # raised when capture failed it, before any call records came
    assert "1 new incident(s) raised (FCA COBS 11.8.5); 1 already on record" in result.summary()

    mails = _mails(fca)
    assert sorted((m.recipient_user, m.subject.split(":")[0]) for m in mails) == [
        ("cora", "[callvault] Recording incident (failed)"), ("cora", "[callvault] Recording incident (missing)")]
    assert all(CLIENT.replace(" ", "") not in m.body and "7946 0958" not in m.body for m in mails)
    raised = _audit(fca, "capture.incident_raised")
    assert sorted(e.details["kind"] for e in raised) == ["failed", "missing"]
    assert all(e.decision == "alarm" and "FCA COBS 11.8.5" in e.clauses for e in raised)
    assert all("0958" not in json.dumps(e.details) for e in raised)
    runs = _audit(fca, "capture.reconciled")
    assert len(runs) == 1 and runs[0].details["raised"] == 1 and runs[0].details["missing"] == 1

    with fca.runtime.db.unit_of_work() as session:
        report = reports.build_report(session, start=CALLS - timedelta(days=1), end=NOW)
    assert report.incidents == {("failed", "open"): 1, ("missing", "open"): 1}
    assert {i.call_id for i in report.open_incidents} == {"c-failed", "c-missing"}
    assert "recording_incidents" in reports.to_csv(report)
    assert "Recording incidents" in reports.to_html(report) and "c-missing" in reports.to_html(report)


def test_reconciling_the_same_file_twice_raises_nothing_new(fca: World) -> None:
    _store(fca, "c-recorded", CALLS)
    cdr = _cdr(_line("c-recorded", CALLS), _line("c-missing", CALLS + timedelta(minutes=10)))
    assert _reconcile(fca, cdr).raised == 1
    fca.at(NOW + timedelta(days=1))

    again = _reconcile(fca, cdr)

    assert again.raised == 0 and dict(again.counts) == {"recorded": 1, "missing": 1}
    assert "0 new incident(s) raised" in again.summary() and "1 already on record" in again.summary()
    assert len(_incidents(fca)) == 1 and len(_mails(fca)) == 1
    assert len(_audit(fca, "capture.incident_raised")) == 1


# ---------------------------------------------------------------------- raised by capture, no CDR needed
def test_capture_failing_a_call_in_mandatory_scope_raises_an_incident_at_once(fca: World) -> None:
    rec_id = _fail(fca, "c-nomedia", CALLS)

    rows = _incidents(fca)
    assert [(r.kind, r.call_id, r.recording_id, r.source) for r in rows] == [("failed", "c-nomedia", rec_id, "capture")]
    assert "no media received" in rows[0].detail
    assert [m.recipient_user for m in _mails(fca)] == ["cora"]


def test_an_incident_capture_raises_is_delivered_at_the_deployments_mail_domain(fca: World) -> None:
    """Capture has no mail settings where it fails a call; the officer's address is settled when the mail is
    sent, with the sending node's ``CALLVAULT_MAIL_DOMAIN``. Before, it went to ``cora@localhost``."""
    import dataclasses

    from callvault.notify import service as notify
    from tests.support.smtp import smtp_server

    _fail(fca, "c-nomedia-mail", CALLS)
    with smtp_server() as sink:
        smtp = dataclasses.replace(sink.settings, mail_domain="bank.example")
        assert notify.send_due(fca.runtime.db, smtp, clock=fca.clock, keyring=fca.runtime.keyring) == 1
        assert [str(m.message["Subject"]).split(":")[0] for m in sink.to("cora@bank.example")] == [
            "[callvault] Recording incident (failed)"]
        assert sink.to("cora@localhost") == []


def test_a_call_in_scope_refused_at_admission_is_an_incident_and_reconcile_names_the_refusal(fca: World) -> None:
    too_old = NOW - timedelta(days=365 * 8)  # past the 84-month cap: admission refuses to store it
    with pytest.raises(NotRecordable):
        _store(fca, "c-expired", too_old)
    rows = _incidents(fca)
    assert [(r.kind, r.call_id, r.source) for r in rows] == [("refused", "c-expired", "capture")]
    assert "retention ended" in rows[0].detail

    result = _reconcile(fca, _cdr(_line("c-expired", too_old)))

    assert [f.outcome for f in result.findings] == ["refused"] and result.raised == 0
    assert "retention ended" in result.findings[0].detail
    assert len(_incidents(fca)) == 1


def test_a_refusal_under_another_call_id_is_found_by_extension_and_start(fca: World) -> None:
    """The SBC's call id (what capture refused) is not the PBX's (what its CDR says): the refusal is still
    found, by extension, direction and start, as a stored recording is. Before, the call was reported
    "missing: no refusal on record" and raised a second incident for the same call."""
    too_old = NOW - timedelta(days=365 * 8)  # past the 84-month cap: admission refuses to store it
    with pytest.raises(NotRecordable):
        _store(fca, "sbc-expired", too_old)
    other_desk = _line("pbx-other-desk", too_old, extension="4002")  # same moment, another trader: not refused

    result = _reconcile(fca, _cdr(_line("pbx-expired", too_old + timedelta(seconds=40)), other_desk))

    assert [(f.record.call_id, f.outcome, f.call_id) for f in result.findings] == [
        ("pbx-expired", "refused", "sbc-expired"), ("pbx-other-desk", "missing", "pbx-other-desk")]
    assert "retention ended" in result.findings[0].detail
    assert sorted((r.kind, r.call_id, r.source) for r in _incidents(fca)) == [
        ("missing", "pbx-other-desk", "reconcile"), ("refused", "sbc-expired", "capture")]


def test_a_call_outside_the_recording_scope_is_no_incident_when_refused_or_reconciled(fca: World) -> None:
    with pytest.raises(NotRecordable):
        _store(fca, "c-ops", CALLS, extension="4009", team="operations")
    result = _reconcile(fca, _cdr(_line("c-ops-missing", CALLS, extension="4009")))

    assert [f.outcome for f in result.findings] == ["out_of_scope"]
    assert "operations is not a recorded team" in result.findings[0].detail
    assert _incidents(fca) == [] and _mails(fca) == []


def test_a_recording_with_media_gaps_is_a_gap_incident(fca: World) -> None:
    rec_id = _store(fca, "c-gappy", CALLS)
    with fca.runtime.db.unit_of_work() as session:  # as SIPREC capture records a span without RTP
        row = session.get(Recording, rec_id)
        assert row is not None
        row.media_gaps, row.missing_seconds = [[0.5, 1.5]], 1.0

    result = _reconcile(fca, _cdr(_line("c-gappy", CALLS)))

    assert [(f.outcome, f.detail) for f in result.findings] == [("gap", "1 s of the call have no media")]
    assert [(r.kind, r.recording_id) for r in _incidents(fca)] == [("gap", rec_id)]


def test_a_recording_under_another_call_id_is_found_by_extension_and_start(fca: World) -> None:
    _store(fca, "sbc-7f3a", CALLS + timedelta(seconds=40))
    far = _line("pbx-2", CALLS + timedelta(hours=1))
    result = _reconcile(fca, _cdr(_line("pbx-1", CALLS), far))

    assert [(f.record.call_id, f.outcome, f.call_id) for f in result.findings] == [
        ("pbx-1", "recorded", "sbc-7f3a"), ("pbx-2", "missing", "pbx-2")]


# ------------------------------------------------------------------------------ Asterisk's Master.csv
def test_asterisk_master_csv_is_read_answered_calls_only_with_direction_from_the_channels(fca: World) -> None:
    master = (
        b'"","+442079460958","+442079460000","from-trunk","""Client"" <+442079460958>","PJSIP/trunk-00000001",'
        b'"PJSIP/4001-00000002","Dial","PJSIP/4001","2026-03-02 14:00:00","2026-03-02 14:00:05",'
        b'"2026-03-02 14:03:05",185,180,"ANSWERED","DOCUMENTATION","1772460000.1"\n'
        b'"","4002","+442079460958","from-internal","""Tia"" <4002>","PJSIP/4002-00000003","PJSIP/trunk-00000004",'
        b'"Dial","PJSIP/trunk/+442079460958","2026-03-02 15:00:00","2026-03-02 15:00:09","2026-03-02 15:02:09",'
        b'129,120,"ANSWERED","DOCUMENTATION","1772463600.3"\n'
        b'"","4001","+442079460958","from-internal","","PJSIP/4001-00000005","","Dial","","2026-03-02 16:00:00",'
        b'"","2026-03-02 16:00:30",30,0,"NO ANSWER","DOCUMENTATION","1772467200.5"\n'
    )
    _store(fca, "asterisk:1772460000.1", CALLS)

    records = call_records.read_records(master, fmt="asterisk", region="GB", tz=None)
    assert records.not_answered == 1
    assert [(r.call_id, r.direction, r.extension, r.duration_seconds) for r in records.records] == [
        ("1772460000.1", "inbound", "4001", 180.0), ("1772463600.3", "outbound", "4002", 120.0)]
    result = _reconcile(fca, master, fmt="asterisk")
    assert [f.outcome for f in result.findings] == ["recorded", "missing"]
    assert "1 unanswered call record(s) skipped" in result.summary()


# ------------------------------------------------------------------------- scheduled reconciliation
def _scheduled(world: World, tmp: Path, data: bytes, fmt: str = "generic") -> int:
    import dataclasses

    from callvault.capture.jobs import reconcile_call_records

    cdr = tmp / f"cdr-{fmt}.csv"
    cdr.write_bytes(data)
    world.runtime.settings = dataclasses.replace(world.runtime.settings, env={
        **world.runtime.settings.env, "CALLVAULT_RECONCILE_CDR": f"{fmt}:{cdr}",
        "CALLVAULT_RECONCILE_SETTLE_MINUTES": "60", "CALLVAULT_RECONCILE_LOOKBACK_DAYS": "7"})
    return reconcile_call_records(world.runtime)


def test_the_worker_reconciles_the_configured_call_records_on_its_own(fca: World, tmp_path: Path) -> None:
    """Nobody has to remember to run it: the worker reads the PBX's call records every hour. Calls that ended
    within the settle time (an import may still be on its way) and calls older than the look-back are left."""
    settled, recent = NOW - timedelta(hours=3), NOW - timedelta(minutes=20)
    _store(fca, "s-recorded", settled)
    cdr = _cdr(_line("s-recorded", settled), _line("s-missing", settled + timedelta(minutes=5), extension="4002"),
               _line("s-too-recent", recent, seconds=60), _line("s-too-old", NOW - timedelta(days=30)))

    assert _scheduled(fca, tmp_path, cdr) == 2
    assert [(r.kind, r.call_id, r.source) for r in _incidents(fca)] == [("missing", "s-missing", "reconcile")]
    [run] = _audit(fca, "capture.reconciled")
    assert run.actor == "worker:reconcile" and run.details["missing"] == 1 and run.details["recorded"] == 1
    assert _scheduled(fca, tmp_path, cdr) == 2  # the next hour: the same calls, nothing raised twice
    assert len(_incidents(fca)) == 1 and len(_mails(fca)) == 1


def test_a_configured_call_record_file_that_cannot_be_read_is_an_alarm_not_a_silence(
        fca: World, tmp_path: Path) -> None:
    bad = _cdr(_line("s-1", NOW - timedelta(hours=3)),
               "s-2,yesterday,60,inbound,+44 20 7946 0958,+44 20 7946 0000,4001")

    assert _scheduled(fca, tmp_path, bad) == 0
    [failed] = _audit(fca, "capture.reconcile_failed")
    assert failed.decision == "alarm" and "start (line 3)" in failed.reason and failed.actor == "worker:reconcile"
    assert _incidents(fca) == []
    with fca.runtime.db.unit_of_work() as session:
        mails = [(m.recipient_user, m.subject) for m in session.scalars(
            select(OutboxMail).where(OutboxMail.dedup_key.like("reconcile-failed:%")))]
    assert [user for user, _ in mails] == ["cora"] and "could not be reconciled" in mails[0][1]
    assert _scheduled(fca, tmp_path, bad) == 0  # still broken an hour later: audited again, mailed once a day
    assert len(_audit(fca, "capture.reconcile_failed")) == 2
    with fca.runtime.db.unit_of_work() as session:
        failures = select(OutboxMail).where(OutboxMail.dedup_key.like("reconcile-failed:%"))
        assert len(session.scalars(failures).all()) == 1


# ---------------------------------------------------------------------- FreeSWITCH's mod_cdr_csv
FS_INBOUND_A = "a1f0c3de-0000-4000-8000-000000000001"
FS_INBOUND_B = "b2e1d4cf-0000-4000-8000-000000000002"
FS_OUTBOUND = "c3d2e5a0-0000-4000-8000-000000000003"
FS_UNANSWERED = "d4c3f6b1-0000-4000-8000-000000000004"


def _fs(caller: str, dest: str, start: str, answer: str, end: str, duration: int, billsec: int, cause: str,
        uuid: str, bleg: str = "") -> str:
    """One line of the stock template: name, number, destination, context, stamps, duration, billsec, hangup
    cause, uuid, bleg_uuid, accountcode, read and write codecs."""
    return (f'"Client","{caller}","{dest}","public","{start}","{answer}","{end}","{duration}","{billsec}",'
            f'"{cause}","{uuid}","{bleg}","","PCMA","PCMA"\n')


def test_freeswitch_cdr_csv_is_read_a_legs_only_with_the_agent_from_the_b_leg(fca: World) -> None:
    """legs="ab": the inbound call's A leg rang the DID; its B leg (same conversation, not a second call) names
    the agent's extension. The outbound call comes from extension 4002. The unanswered call is counted only."""
    master = (
        _fs("+442079460958", "+442079460000", "2026-03-02 14:00:00", "2026-03-02 14:00:05", "2026-03-02 14:03:05",
            185, 180, "NORMAL_CLEARING", FS_INBOUND_A, FS_INBOUND_B)
        + _fs("+442079460958", "4001", "2026-03-02 14:00:01", "2026-03-02 14:00:05", "2026-03-02 14:03:05", 184, 180,
              "NORMAL_CLEARING", FS_INBOUND_B)
        + _fs("4002", "+442079460958", "2026-03-02 15:00:00", "2026-03-02 15:00:09", "2026-03-02 15:02:09", 129, 120,
              "NORMAL_CLEARING", FS_OUTBOUND)
        + _fs("4001", "+442079460958", "2026-03-02 16:00:00", "", "2026-03-02 16:00:30", 30, 0, "NO_ANSWER",
              FS_UNANSWERED)
    ).encode()
    _store(fca, f"freeswitch:{FS_INBOUND_A}", CALLS)

    records = call_records.read_records(master, fmt="freeswitch", region="GB", tz=None)
    assert records.not_answered == 1
    assert [(r.call_id, r.direction, r.extension, r.duration_seconds, r.remote_number) for r in records.records] == [
        (FS_INBOUND_A, "inbound", "4001", 180.0, "+442079460958"),
        (FS_OUTBOUND, "outbound", "4002", 120.0, "+442079460958")]
    result = _reconcile(fca, master, fmt="freeswitch")
    assert [(f.record.call_id, f.outcome) for f in result.findings] == [(FS_INBOUND_A, "recorded"),
                                                                         (FS_OUTBOUND, "missing")]


def test_a_freeswitch_line_of_another_template_is_refused_naming_the_line() -> None:
    good = _fs("+442079460958", "4001", "2026-03-02 14:00:00", "2026-03-02 14:00:05", "2026-03-02 14:03:05", 185,
               180, "NORMAL_CLEARING", FS_INBOUND_A)
    bad_time = good.replace("2026-03-02 14:00:00", "02/03/2026 14:00").replace(FS_INBOUND_A, FS_OUTBOUND)
    with pytest.raises(InvalidInput) as caught:
        call_records.read_records((good + '"a","b","c"\n' + bad_time).encode(), fmt="freeswitch", region="GB")
    assert {(p.line, p.location) for p in caught.value.problems} == {(2, "line"), (3, "start_stamp")}
    assert "writes 15 (or 16" in str(caught.value)


# ------------------------------------------------------------------------------------------ bad input
def test_malformed_lines_are_named_by_line_and_field_and_nothing_is_reconciled(fca: World) -> None:
    bad = _cdr(_line("c-1", CALLS), "c-2,2026-03-02 14:10:00,60,inbound,+44 20 7946 0958,+44 20 7946 0000,4001",
               "c-3,2026-03-02T14:20:00Z,sixty,sideways,not-a-number,+44 20 7946 0000,4001", "c-4,only,three")

    with pytest.raises(InvalidInput) as caught:
        call_records.read_records(bad, fmt="generic", region="GB")

    problems = {(p.line, p.location) for p in caught.value.problems}
    assert problems == {(3, "start"), (4, "duration"), (4, "caller"), (4, "direction"), (5, "line")}
    assert "has no time zone" in str(caught.value) and "3 line(s) are wrong" in caught.value.message
    code, output = fca.cli("capture", "reconcile", "--cdr", str(_file(fca, bad)))
    assert code == 2 and "line 3" in output and "start (line 3)" in output and "Traceback" not in output
    assert _incidents(fca) == [] and _audit(fca, "capture.reconciled") == []


def test_a_file_without_the_columns_is_refused_naming_them(fca: World) -> None:
    with pytest.raises(InvalidInput) as caught:
        call_records.read_records(b"id,when\n1,2\n", fmt="generic", region="GB")
    assert {p.location for p in caught.value.problems} >= {"call_id", "start", "direction"}
    with pytest.raises(InvalidInput, match=r"Master\.csv lines have 17"):
        call_records.read_records(b"a,b,c\n", fmt="asterisk", region="GB")


def _file(world: World, data: bytes) -> Path:
    path = world.settings.data_dir.parent / "cdr.csv"
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------------------------------- the CLI
def test_the_cli_reconciles_lists_and_resolves_with_a_note(fca: World) -> None:
    cdr = _file(fca, _cdr(_line("c-missing", CALLS)))
    code, output = fca.cli("capture", "reconcile", "--cdr", str(cdr))
    assert code == 0, output
    assert "1 missing" in output and "1 new incident(s) raised" in output and "line 2: call c-missing" in output

    code, output = fca.cli("capture", "incidents", "--status", "open", "--kind", "missing", "--json")
    assert code == 0, output
    listed = json.loads(output)
    assert [(i["call_id"], i["kind"]) for i in listed] == [("c-missing", "missing")]
    code, output = fca.cli("capture", "resolve-incident", listed[0]["id"], "--note", "   ")
    assert code == 2 and "note" in output
    code, output = fca.cli("capture", "resolve-incident", listed[0]["id"], "--note",
                           "PBX trunk outage 14:00-14:05; the desk confirmed the order in writing")
    assert code == 0, output
    assert [r.status for r in _incidents(fca)] == ["resolved"]
    resolved = _audit(fca, "capture.incident_resolved")
    assert len(resolved) == 1 and resolved[0].details["call_id"] == "c-missing"
    code, output = fca.cli("capture", "incidents", "--status", "open", "--json")
    assert json.loads(output) == []
    code, output = fca.cli("capture", "incidents", "--since", "2026-13-01")
    assert code == 2 and "--since" in output


def test_only_the_compliance_roles_may_handle_incidents(fca: World) -> None:
    with fca.runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=fca.clock)
        assert incidents.check_officer(session, policy=policy, who=incidents.Officer("cora", "compliance"),
                                       action="capture.incidents_read") is None
        refused = incidents.check_officer(session, policy=policy, who=incidents.Officer("tom", "trader"),
                                          action="capture.incidents_read")
    assert refused is not None
    denials = _audit(fca, "capture.incidents_read")
    assert [(d.actor, d.decision) for d in denials] == [("tom", "deny")]


# -------------------------------------------------------------------------- a non-mandatory policy
def test_under_a_policy_that_makes_nothing_mandatory_reconcile_reports_but_raises_nothing(policy_a: World) -> None:
    cdr = (HEADER.replace("\n", ",team\n") +
           "a-1,2026-03-02T14:00:00+00:00,60,inbound,+1 416 555 0142,+1 416 591 1668,2001,customer_support\n").encode()
    records = call_records.read_records(cdr, fmt="generic", region="CA")
    with policy_a.runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=policy_a.clock)
        assert not policy.recording_scope.mandatory
        result = reconcile(session, policy=policy, records=records, actor="cli:officer", clock=policy_a.clock)
    assert result.raised == 0 and not result.mandatory and dict(result.counts) == {"missing": 1}
    assert "does not make recording mandatory" in result.summary() and "no incidents were raised" in result.summary()
    assert _incidents(policy_a) == [] and _mails(policy_a) == []
    code, output = policy_a.cli("capture", "reconcile", "--cdr", str(_file(policy_a, cdr)))
    assert code == 0 and "no incidents were raised" in output


def test_a_withheld_number_and_a_dialplan_s_extension_are_unknown_not_errors() -> None:
    master = (b'"","","s","from-trunk","""Anonymous"" <anonymous>","PJSIP/trunk-00000009","PJSIP/4001-0000000a",'
              b'"Dial","PJSIP/4001","2026-03-02 17:00:00","2026-03-02 17:00:04","2026-03-02 17:01:04",64,60,'
              b'"ANSWERED","DOCUMENTATION","1772470800.9"\n')
    (record,) = call_records.read_records(master, fmt="asterisk", region="GB").records
    assert (record.direction, record.extension, record.caller, record.called) == ("inbound", "4001", "", "")
    generic = _cdr("g-1,2026-03-02T17:00:00Z,60,inbound,anonymous,+44 20 7946 0000,4001")
    (withheld,) = call_records.read_records(generic, fmt="generic", region="GB").records
    assert withheld.remote_number == "" and withheld.local_number == "+442079460000"


def test_a_captured_call_with_media_gaps_is_a_gap_incident_at_once(fca: World) -> None:
    """As SIPREC capture stores a call during which no RTP arrived for a second: no call records needed."""
    meta = parse_metadata(_meta("c-live-gap", CALLS), default_region="GB")
    rec_id = store_with_gaps(fca.runtime, meta, wav_bytes(2.0), [[0.5, 1.5]], fca.clock)

    assert [(r.kind, r.call_id, r.recording_id, r.source) for r in _incidents(fca)] == [
        ("gap", "c-live-gap", rec_id, "capture")]
    assert _reconcile(fca, _cdr(_line("c-live-gap", CALLS))).raised == 0
