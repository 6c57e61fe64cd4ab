"""Misuse detection (B12) and the compliance report (A4), over audit entries written at chosen times."""

from __future__ import annotations

import io
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from callvault.audit import service as audit
from callvault.capture.ingest import ingest_recording
from callvault.cli.main import app
from callvault.core.clock import FixedClock
from callvault.notify.models import OutboxMail
from callvault.oversight import reports
from callvault.oversight.detection import run_detection
from callvault.oversight.models import MisuseReport
from callvault.policy import service as policy_service
from tests.support.audio import metadata, wav_bytes
from tests.support.env import CallvaultEnv

TORONTO = ZoneInfo("America/Toronto")  # policy A's misuse.detection.timezone


def _at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=TORONTO)


def _log(env: CallvaultEnv, when: datetime, *, actor: str, action: str = "recording.play", decision: str = "allow",
         object_id: str = "rec-1", role: str = "support_lead") -> int:
    with env.runtime.db.unit_of_work() as session:
        entry = audit.append(session, audit.AuditEvent(
            actor=actor, actor_role=role, action=action, decision=decision, object_type="recording",
            object_id=object_id, purpose="spot_check"), clock=FixedClock(when))
        return entry.seq


def _detect(env: CallvaultEnv, day: date) -> list[MisuseReport]:
    clock = FixedClock(_at(day, 23, 59))
    with env.runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session)
        raised = run_detection(session, policy=policy, clock=clock)
        for r in raised:
            session.expunge(r)
    return raised


def _rules(reports_: list[MisuseReport], user: str) -> dict[str, list[int]]:
    return {r.rule or "": r.evidence for r in reports_ if r.subject_user == user}


def test_content_reached_at_night_raises_one_report_with_the_entry_as_evidence(env: CallvaultEnv) -> None:
    day = date(2025, 2, 4)
    in_hours = _log(env, _at(day, 10), actor="night_owl")
    late = _log(env, _at(day, 23, 30), actor="night_owl")
    raised = _rules(_detect(env, day), "night_owl")
    assert raised == {"outside_hours": [late]}
    assert in_hours not in raised["outside_hours"]
    assert _detect(env, day) == [], "the same hit is never reported twice"


def test_a_weekend_play_counts_as_outside_working_hours(env: CallvaultEnv) -> None:
    saturday = date(2025, 2, 8)
    seq = _log(env, _at(saturday, 11), actor="weekender")
    assert _rules(_detect(env, saturday), "weekender") == {"outside_hours": [seq]}


def test_many_more_plays_than_usual_raise_unusual_volume_but_a_steady_habit_does_not(env: CallvaultEnv) -> None:
    day = date(2025, 2, 12)
    with env.runtime.db.unit_of_work() as session:
        for back in range(1, 29):  # "steady" plays 25 a day for four weeks
            audit.append_many(session, [audit.AuditEvent(actor="steady", action="recording.play", decision="allow",
                                                         object_type="recording", object_id=f"s{back}-{i}")
                                        for i in range(25)], clock=FixedClock(_at(day - timedelta(days=back), 11)))
        audit.append_many(session, [audit.AuditEvent(actor="steady", action="recording.play", decision="allow",
                                                     object_type="recording", object_id=f"s0-{i}")
                                    for i in range(25)], clock=FixedClock(_at(day, 11)))
        audit.append_many(session, [audit.AuditEvent(actor="binger", action="recording.play", decision="allow",
                                                     object_type="recording", object_id=f"b-{i}")
                                    for i in range(25)], clock=FixedClock(_at(day, 11)))
    raised = _detect(env, day)
    assert set(_rules(raised, "binger")) == {"unusual_volume"}
    assert len(_rules(raised, "binger")["unusual_volume"]) == 25
    assert _rules(raised, "steady") == {}


def test_a_few_plays_of_the_same_recording_are_not_unusual_volume(env: CallvaultEnv) -> None:
    day = date(2025, 2, 18)
    for minute in range(30):  # range requests while listening: many entries, one recording
        _log(env, _at(day, 10, minute), actor="listener", object_id="one-call")
    assert _rules(_detect(env, day), "listener") == {}


def test_repeated_denials_raise_a_report_at_the_policy_threshold(env: CallvaultEnv) -> None:
    day = date(2025, 2, 24)
    seqs = [_log(env, _at(day, 9, i), actor="guesser", decision="deny") for i in range(5)]
    for i in range(4):
        _log(env, _at(day, 9, i), actor="unlucky", decision="deny")
    raised = _detect(env, day)
    assert _rules(raised, "guesser") == {"repeated_denials": seqs}
    assert _rules(raised, "unlucky") == {}


def test_a_specialist_probing_other_extensions_is_reported(env: CallvaultEnv) -> None:
    day = date(2025, 3, 4)
    ids = []
    for ext in ("2002", "2003"):
        result = ingest_recording(db=env.runtime.db, store=env.runtime.store, keyring=env.runtime.keyring,
                                  audio=io.BytesIO(wav_bytes(1.0, seed=int(ext))),
                                  metadata=metadata(extension=ext, agent=None), actor="test")
        ids.append(result.recording_id)
    seqs = [_log(env, _at(day, 10, i), actor="alice", role="specialist", decision="deny", object_id=rid)
            for i, rid in enumerate(ids)]
    raised = _rules(_detect(env, day), "alice")
    assert raised == {"extension_probing": seqs}


def test_bulk_downloads_in_a_short_window_are_reported_but_spread_out_ones_are_not(env: CallvaultEnv) -> None:
    day = date(2025, 3, 11)
    burst = [_log(env, _at(day, 10, i * 5), actor="hoarder", action="recording.download", object_id=f"h-{i}")
             for i in range(10)]
    for i in range(10):
        _log(env, _at(day, 8 + i, 0), actor="diligent", action="recording.download", object_id=f"d-{i}")
    raised = _detect(env, day)
    assert _rules(raised, "hoarder") == {"bulk_download": burst}
    assert _rules(raised, "diligent") == {}


def test_a_detection_is_mailed_to_the_recipients_but_never_to_its_subject(env: CallvaultEnv) -> None:
    day = date(2025, 3, 18)
    _log(env, _at(day, 3), actor="exec", role="executive")
    raised = _detect(env, day)
    report = next(r for r in raised if r.subject_user == "exec")
    with env.runtime.db.unit_of_work() as session:
        mails = list(session.scalars(select(OutboxMail).where(OutboxMail.dedup_key.like(f"misuse:{report.id}:%"))))
    assert report.source == "detection" and report.reporter == "system"
    assert "exec" not in {m.recipient_user for m in mails}


def test_the_detection_job_runs_from_the_worker(env: CallvaultEnv) -> None:
    result = CliRunner().invoke(app, ["worker", "--once", "--job", "oversight.detect_misuse",
                                      "--data-dir", str(env.data_dir)], env=env.cli_env)
    assert result.exit_code == 0, result.output


# ------------------------------------------------------------------------------------------ report
@pytest.fixture(scope="module")
def report_period(env: CallvaultEnv) -> tuple[datetime, datetime]:
    """Two weeks of activity: a recording, plays for two purposes, a denial, a quarantine-like event."""
    start = datetime(2025, 5, 5, tzinfo=TORONTO)
    for i, purpose in enumerate(["spot_check", "spot_check", "complaint_investigation"]):
        with env.runtime.db.unit_of_work() as session:
            audit.append(session, audit.AuditEvent(actor="lead", actor_role="support_lead", action="recording.play",
                                                   decision="allow", object_id=f"r{i}", purpose=purpose),
                         clock=FixedClock(start + timedelta(days=1 + 6 * i)))
    with env.runtime.db.unit_of_work() as session:
        audit.append(session, audit.AuditEvent(actor="bob", actor_role="specialist", action="recording.play",
                                               decision="deny", object_id="r0", purpose="spot_check",
                                               reason="role specialist may not use purpose spot_check"),
                     clock=FixedClock(start + timedelta(days=2)))
        audit.append(session, audit.AuditEvent(actor="system", action="retention.destroyed", object_id="r9"),
                     clock=FixedClock(start + timedelta(days=3)))
    return start, start + timedelta(days=14)


def test_the_compliance_report_counts_accesses_by_user_purpose_and_decision(env: CallvaultEnv,
                                                                            report_period: tuple[datetime, datetime]
                                                                            ) -> None:
    start, end = report_period
    with env.runtime.db.unit_of_work() as session:
        data = reports.build_report(session, start=start, end=end)
    assert data.accessed[("lead", "support_lead", "play", "spot_check", "allow")] == 2
    assert data.accessed[("bob", "specialist", "play", "spot_check", "deny")] == 1
    assert data.denied[("recording.play", "role specialist may not use purpose spot_check")] == 1
    assert data.lifecycle["retention.destroyed"] == 1
    assert data.per_week == {(date(2025, 5, 5), "spot_check"): 1, (date(2025, 5, 12), "spot_check"): 1,
                             (date(2025, 5, 12), "complaint_investigation"): 1}


def test_the_compliance_report_as_csv_and_html_from_the_cli(env: CallvaultEnv, report_period: tuple[datetime, datetime],
                                                           tmp_path: object) -> None:
    runner = CliRunner()
    csv_out = runner.invoke(app, ["report", "compliance", "--from", "2025-05-05", "--to", "2025-05-18",
                                  "--data-dir", str(env.data_dir)], env=env.cli_env)
    assert csv_out.exit_code == 0, csv_out.output
    assert "accessed,,,,lead,support_lead,play,spot_check,allow,,,2" in csv_out.output
    html_out = runner.invoke(app, ["report", "compliance", "--from", "2025-05-05", "--to", "2025-05-18",
                                   "--format", "html", "--data-dir", str(env.data_dir)], env=env.cli_env)
    assert html_out.exit_code == 0
    assert "<svg" in html_out.output and "<script" not in html_out.output
    assert "complaint_investigation" in html_out.output


def test_the_compliance_report_refuses_a_bad_period_naming_the_option(env: CallvaultEnv) -> None:
    result = CliRunner().invoke(app, ["report", "compliance", "--from", "last tuesday",
                                      "--data-dir", str(env.data_dir)], env=env.cli_env)
    assert result.exit_code == 2
    assert "--from" in result.output
