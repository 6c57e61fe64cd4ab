"""Issue 28 point 4 over real HTTP and the CLI: a caller's request extended once in writing (HIPAA
164.524(b)(2): 30 days + 30), a personal representative recorded with a proof the policy lists (164.502(g)),
a written denial, each refused for the wrong role (audited) or the wrong state; and misuse/breach reports
past their deadline (164.404(b): 60 days) shown overdue on /misuse and in the compliance report, and mailed to
the recipients exactly once however often the worker's job runs.

The policy is policy A with the HIPAA example's deadline, representatives and report deadline: the same rules
as ``examples/policies/policy-health-hipaa.yaml`` with policy A's team (support leads handle requests,
executives receive misuse reports)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from callvault.audit.models import AuditEntry
from callvault.cli.main import app as cli_app
from callvault.core.clock import FixedClock
from callvault.jobs.registry import all_jobs
from callvault.notify.models import OutboxMail
from callvault.oversight import service as oversight
from callvault.policy import service as policy_service
from tests.api.test_auth_web import _csrf, web_sign_in
from tests.conftest import POLICY_A, fresh_database
from tests.support.env import CallvaultEnv, LiveServer, make_env

PROOFS = ("healthcare_power_of_attorney", "parent_of_minor")


def hipaa_like(text: str) -> str:
    """Policy A with calendar-day deadlines and one 30-day extension, representatives, a 60-day report deadline."""
    out = text.replace("  deadline_working_days: 15\n",
                       "  deadline: {calendar_days: 30, extension_days: 30}\n"
                       f"  representatives:\n    allowed: true\n    proof_kinds: [{', '.join(PROOFS)}]\n")
    out = out.replace("misuse:\n  report_to_roles: [executive]\n",
                      "misuse:\n  report_to_roles: [executive]\n  report_deadline_days: 60\n")
    assert "extension_days: 30" in out and "report_deadline_days: 60" in out
    return out


@pytest.fixture(scope="module")
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CallvaultEnv]:
    tmp = tmp_path_factory.mktemp("deadlines")
    policy = tmp / "policy.yaml"
    policy.write_text(hipaa_like(Path(POLICY_A).read_text()))
    with fresh_database(request.config.getoption("--db"), tmp) as url:
        environment = make_env(tmp / "data", url, policy)
        yield environment
        environment.close()


def _own_request(server: LiveServer, who: str = "alice") -> dict[str, object]:
    """An operator's request for their own recordings: verified by their account, so its deadline runs."""
    with server.client(who) as client:
        resp = client.post("/api/v1/me/subject-requests", json={"description": "my calls last week"})
    assert resp.status_code == 201, resp.text
    out: dict[str, object] = resp.json()
    return out


def _audit(env: CallvaultEnv, action: str, object_id: str) -> list[AuditEntry]:
    with env.runtime.db.unit_of_work() as session:
        rows = list(session.scalars(select(AuditEntry).where(AuditEntry.action == action,
                                                             AuditEntry.object_id == object_id)))
        for r in rows:
            session.expunge(r)
    return rows


def _outbox(env: CallvaultEnv, dedup_prefix: str) -> list[OutboxMail]:
    with env.runtime.db.unit_of_work() as session:
        rows = list(session.scalars(select(OutboxMail).where(OutboxMail.dedup_key.like(f"{dedup_prefix}%"))))
        for r in rows:
            session.expunge(r)
    return rows


def test_extend_once_in_writing_moves_the_deadline_30_days_mails_and_audits(server: LiveServer,
                                                                            env: CallvaultEnv) -> None:
    row = _own_request(server)
    rid, due_before = str(row["id"]), str(row["due_on"])
    with server.client("lead") as lead:
        short = lead.post(f"/api/v1/subject-requests/{rid}/extend", json={"reason": "busy"})
        assert short.status_code == 422 and "reason" in short.text
        ok = lead.post(f"/api/v1/subject-requests/{rid}/extend",
                       json={"reason": "We must retrieve calls from the archive store, which takes time."})
        assert ok.status_code == 200, ok.text
        body = ok.json()
        assert date.fromisoformat(body["due_on"]) - date.fromisoformat(due_before) == timedelta(days=30)
        assert body["extended_by"] == "lead" and "archive" in body["extension_reason"]
        again = lead.post(f"/api/v1/subject-requests/{rid}/extend",
                          json={"reason": "Still retrieving the calls from the archive store."})
        assert again.status_code == 409 and "one extension" in again.text
    (mail,) = _outbox(env, f"subject:{rid}:extended")
    assert body["due_on"] in mail.subject and "archive" in mail.body, "the new date and the reason, in writing"
    (event,) = _audit(env, "subject_request.extended", rid)
    assert event.actor == "lead" and event.details["to"] == body["due_on"]


def test_a_wrong_role_is_refused_and_audited_for_extend_and_representative(server: LiveServer,
                                                                          env: CallvaultEnv) -> None:
    rid = str(_own_request(server)["id"])
    with server.client("bob") as bob:
        refused = bob.post(f"/api/v1/subject-requests/{rid}/extend",
                           json={"reason": "We need more time to look for the calls."})
        assert refused.status_code == 403, refused.text
        rep = bob.post(f"/api/v1/subject-requests/{rid}/representative",
                       json={"name": "Pat Doe", "relationship": "parent", "proof_kind": "parent_of_minor"})
        assert rep.status_code == 403
    denials = [e for e in _audit(env, "subject_request.extend", rid) + _audit(env, "subject_request.representative",
                                                                               rid) if e.decision == "deny"]
    assert {e.actor for e in denials} == {"bob"} and len(denials) == 2
    with server.client("lead") as lead:
        assert lead.get(f"/api/v1/subject-requests/{rid}").json()["extended_at"] is None


def test_a_representative_is_recorded_with_a_listed_proof_and_refused_with_another(server: LiveServer,
                                                                                  env: CallvaultEnv) -> None:
    rid = str(_own_request(server)["id"])
    with server.client("lead") as lead:
        bad = lead.post(f"/api/v1/subject-requests/{rid}/representative",
                        json={"name": "Pat Doe", "relationship": "neighbour", "proof_kind": "a_signed_note"})
        assert bad.status_code == 422 and "proof_kind" in bad.text and "parent_of_minor" in bad.text
        ok = lead.post(f"/api/v1/subject-requests/{rid}/representative",
                       json={"name": "Pat Doe", "relationship": "parent", "proof_kind": "parent_of_minor"})
        assert ok.status_code == 200, ok.text
        assert ok.json()["representative"]["proof_kind"] == "parent_of_minor"
        assert ok.json()["representative"]["checked_by"] == "lead"
    (event,) = _audit(env, "subject_request.representative", rid)
    assert event.decision != "deny" and event.details["proof_kind"] == "parent_of_minor"


def test_a_written_denial_closes_the_request_and_then_it_cannot_be_extended(server: LiveServer,
                                                                           env: CallvaultEnv) -> None:
    rid = str(_own_request(server)["id"])
    with server.client("lead") as lead:
        refused = lead.post(f"/api/v1/subject-requests/{rid}/refuse",
                            json={"reason": "These recordings were already released to you on request 12."})
        assert refused.status_code == 200 and refused.json()["status"] == "refused"
        late = lead.post(f"/api/v1/subject-requests/{rid}/extend",
                         json={"reason": "We need more time to look for the calls."})
        assert late.status_code == 409 and "open request" in late.text
        rep = lead.post(f"/api/v1/subject-requests/{rid}/representative",
                        json={"name": "Pat Doe", "relationship": "parent", "proof_kind": "parent_of_minor"})
        assert rep.status_code == 409


def test_the_cli_extends_records_a_representative_and_refuses_and_refuses_a_wrong_role(server: LiveServer,
                                                                                     env: CallvaultEnv) -> None:
    rid = str(_own_request(server)["id"])
    run = CliRunner()
    base = ["--data-dir", str(env.data_dir)]
    wrong = run.invoke(cli_app, ["requests", "extend", rid, "--as", "bob", "--reason",
                                 "We need more time to look for the calls.", *base], env=env.cli_env)
    assert wrong.exit_code != 0 and "may not handle subject requests" in wrong.output
    assert any(e.actor == "bob" and e.decision == "deny" for e in _audit(env, "subject_request.extend", rid))
    ok = run.invoke(cli_app, ["requests", "extend", rid, "--as", "lead", "--reason",
                              "We must retrieve calls from the archive store.", *base], env=env.cli_env)
    assert ok.exit_code == 0, ok.output
    rep = run.invoke(cli_app, ["requests", "representative", rid, "--as", "lead", "--name", "Pat Doe",
                               "--relationship", "attorney", "--proof-kind", "healthcare_power_of_attorney", *base],
                     env=env.cli_env)
    assert rep.exit_code == 0, rep.output
    refuse = run.invoke(cli_app, ["requests", "refuse", rid, "--as", "lead", "--reason",
                                  "You asked for recordings we never made; nothing to give.", *base],
                        env=env.cli_env)
    assert refuse.exit_code == 0, refuse.output
    with server.client("lead") as lead:
        shown = lead.get(f"/api/v1/subject-requests/{rid}").json()
    assert shown["status"] == "refused" and shown["extended_by"] == "lead"
    assert shown["representative"]["relationship"] == "attorney"


@pytest.fixture(scope="module")
def lead_page(server: LiveServer, env: CallvaultEnv) -> Iterator[httpx.Client]:
    client = httpx.Client(base_url=server.base_url, timeout=30, headers={"Accept": "text/html"})
    web_sign_in(client, env, "lead")
    yield client
    client.close()


def test_the_request_page_extends_and_records_a_representative_with_banners(server: LiveServer, env: CallvaultEnv,
                                                                           lead_page: httpx.Client) -> None:
    rid = str(_own_request(server)["id"])
    page = lead_page.get(f"/requests/{rid}")
    assert page.status_code == 200 and 'id="extend"' in page.text and 'id="represent"' in page.text
    # The time left counts as the deadline does: calendar days here, not B7's working days.
    left = re.search(r"<strong>(\d+) days left</strong>", page.text)
    assert left is not None and 29 <= int(left.group(1)) <= 31 and "working day" not in page.text
    queue = lead_page.get("/requests")
    assert re.search(r"<td>\d+ days</td>", queue.text) and "working day" not in queue.text
    assert "30 days" in page.text and "parent of minor" in page.text
    bad = lead_page.post(f"/requests/{rid}/representative", data={
        "name": "Pat Doe", "relationship": "friend", "proof_kind": "a_signed_note", "csrf_token": _csrf(page.text)})
    assert bad.status_code == 422 and "proof_kind" in bad.text
    done = lead_page.post(f"/requests/{rid}/representative", data={
        "name": "Pat Doe", "relationship": "parent", "proof_kind": "parent_of_minor", "csrf_token": _csrf(page.text)})
    assert done.status_code == 303 and done.headers["location"] == f"/requests/{rid}?done=representative"
    ext = lead_page.post(f"/requests/{rid}/extend", data={
        "reason": "We must retrieve calls from the archive store.", "csrf_token": _csrf(page.text)})
    assert ext.status_code == 303 and ext.headers["location"] == f"/requests/{rid}?done=extended"
    after = lead_page.get(ext.headers["location"])
    assert 'role="status"' in after.text and "Deadline extended" in after.text
    assert 'id="extension"' in after.text and "Acting for the caller: Pat Doe" in after.text
    assert 'id="extend"' not in after.text, "one extension: the form is gone"
    again = lead_page.post(f"/requests/{rid}/extend", data={
        "reason": "Still retrieving the calls from the archive.", "csrf_token": _csrf(page.text)})
    assert again.status_code == 409 and "one extension" in again.text


def test_a_report_61_days_old_under_60_days_is_overdue_shown_and_mailed_exactly_once(server: LiveServer,
                                                                                    env: CallvaultEnv) -> None:
    now = env.runtime.clock.now()
    with env.runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=env.runtime.clock)
        late = oversight.file_report(session, policy=policy, reporter=oversight.Reporter("alice", "specialist"),
                                     summary="Someone listened to a patient's calls", clock=FixedClock(
                                         now - timedelta(days=61)))
        recent = oversight.file_report(session, policy=policy, reporter=oversight.Reporter("alice", "specialist"),
                                       summary="A colleague exported a call", clock=FixedClock(
                                           now - timedelta(days=59)))
        assert late is not None and recent is not None
        late_id, recent_id = late.id, recent.id
    job = all_jobs()["oversight.overdue_misuse_reports"]
    assert job.run(env.runtime) == 1, "one recipient (exec), one overdue report"
    assert job.run(env.runtime) == 0, "a second run mails nothing again"
    (mail,) = _outbox(env, f"misuse:{late_id}:overdue:")
    assert mail.recipient_user == "exec" and "OVERDUE" in mail.subject
    assert _outbox(env, f"misuse:{recent_id}:overdue:") == []
    assert len(_audit(env, "misuse.overdue", late_id)) == 1
    client = httpx.Client(base_url=server.base_url, timeout=30, headers={"Accept": "text/html"})
    try:
        web_sign_in(client, env, "exec")
        page = client.get("/misuse")
        assert page.status_code == 200
        card = page.text[page.text.index("Someone listened"):][:600]
        assert "OVERDUE" in card
        other = page.text[page.text.index("A colleague exported"):][:300]
        assert "OVERDUE" not in other
        report = client.get("/reports/compliance")
        assert "No report is past its deadline" not in report.text and late_id in report.text
        csv_text = client.get("/reports/compliance.csv").text
        assert f"report {late_id}" in csv_text and "misuse_overdue" in csv_text and recent_id not in csv_text
        assert client.get("/reports/compliance.pdf").status_code == 200
    finally:
        client.close()


def test_the_public_request_form_states_the_calendar_deadline(server: LiveServer) -> None:
    with httpx.Client(base_url=server.base_url) as anyone:
        form = anyone.get("/request")
    assert form.status_code == 200 and "we answer within\n30 calendar days" in form.text
    assert "None working days" not in form.text
