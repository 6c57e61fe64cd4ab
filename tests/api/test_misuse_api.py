"""Misuse reports over HTTP (B12): anyone files, the policy's roles are mailed and handle them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from callvault.audit.models import AuditEntry
from callvault.identity import service as identity
from callvault.notify import service as notify
from callvault.notify.models import OutboxMail
from callvault.policy import service as policy_service
from tests.support.env import PASSWORD, CallvaultEnv, LiveServer
from tests.support.smtp import MailSink, smtp_server

SECOND_EXEC = "exec2"


@pytest.fixture(scope="module")
def second_executive(env: CallvaultEnv) -> str:
    """Policy A routes misuse reports to executives: a second one, so 'one mail per recipient' means something."""
    with env.runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session)
        identity.create_user(session, actor="test", policy=policy, username=SECOND_EXEC, role="executive",
                             password=PASSWORD)
    return SECOND_EXEC


@pytest.fixture()
def mail() -> Iterator[MailSink]:
    with smtp_server() as sink:
        yield sink


def _file(server: LiveServer, username: str, **body: object) -> dict[str, object]:
    with server.client(username) as client:
        resp = client.post("/api/v1/misuse-reports", json={"summary": "colleague replays calls", **body})
    assert resp.status_code == 201, resp.text
    data: dict[str, object] = resp.json()
    return data


def _audit(env: CallvaultEnv, action: str, object_id: str) -> list[AuditEntry]:
    with env.runtime.db.unit_of_work() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action,
                                                             AuditEntry.object_id == object_id)))


def _mails_about(sink: MailSink, report_id: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in sink.received:
        if report_id in str(item.message.get_payload()):
            for rcpt in item.recipients:
                counts[rcpt] = counts.get(rcpt, 0) + 1
    return counts


def test_a_specialist_can_file_a_report_and_it_is_audited_without_its_text(server: LiveServer,
                                                                          env: CallvaultEnv) -> None:
    report = _file(server, "alice", description="bob listened to my calls at night", subject_user="bob")
    assert report["status"] == "open" and report["reporter"] == "alice" and report["source"] == "person"
    entries = _audit(env, "misuse.reported", str(report["id"]))
    assert len(entries) == 1
    assert entries[0].actor == "alice" and "B12" in entries[0].clauses
    assert "at night" not in str(entries[0].details) + entries[0].reason


def test_a_report_is_mailed_exactly_once_to_each_recipient(server: LiveServer, env: CallvaultEnv,
                                                           second_executive: str, mail: MailSink) -> None:
    report_id = str(_file(server, "bob", summary="shared login suspected")["id"])
    assert notify.send_due(env.runtime.db, mail.settings, clock=env.runtime.clock) >= 2
    assert notify.send_due(env.runtime.db, mail.settings, clock=env.runtime.clock) == 0, \
        "a second run sends nothing again"
    assert _mails_about(mail, report_id) == {"exec@localhost": 1, f"{second_executive}@localhost": 1}
    with env.runtime.db.unit_of_work() as session:
        rows = list(session.scalars(select(OutboxMail).where(OutboxMail.dedup_key.like(f"misuse:{report_id}:%"))))
    assert {(r.state, r.attempts) for r in rows} == {("sent", 1)}


def test_a_failed_delivery_is_retried_and_the_outbox_counts_the_tries(server: LiveServer, env: CallvaultEnv,
                                                                      mail: MailSink) -> None:
    notify.send_due(env.runtime.db, mail.settings, clock=env.runtime.clock)  # anything queued by earlier tests
    report_id = str(_file(server, "alice", summary="printout of call list found")["id"])
    mail.fail_next = 1
    notify.send_due(env.runtime.db, mail.settings, clock=env.runtime.clock)
    with env.runtime.db.unit_of_work() as session:
        failed = session.scalar(select(OutboxMail).where(OutboxMail.state == "pending",
                                                         OutboxMail.dedup_key.like(f"misuse:{report_id}:%")))
        assert failed is not None and failed.attempts == 1 and "451" in failed.last_error
        failed.next_attempt_at = failed.created_at  # due again now, rather than after the backoff
    notify.send_due(env.runtime.db, mail.settings, clock=env.runtime.clock)
    assert set(_mails_about(mail, report_id).values()) == {1}
    with env.runtime.db.unit_of_work() as session:
        retried = session.get(OutboxMail, failed.id)
        assert retried is not None and (retried.state, retried.attempts) == ("sent", 2)


def test_recipients_list_reports_and_everyone_else_sees_only_their_own(server: LiveServer) -> None:
    report_id = _file(server, "alice", summary="only alice and executives see this")["id"]
    with server.client("exec") as exec_client:
        assert report_id in {r["id"] for r in exec_client.get("/api/v1/misuse-reports").json()}
    with server.client("alice") as alice:
        mine = alice.get("/api/v1/misuse-reports").json()
    assert report_id in {r["id"] for r in mine} and {r["reporter"] for r in mine} == {"alice"}
    with server.client("bob") as bob:
        assert report_id not in {r["id"] for r in bob.get("/api/v1/misuse-reports").json()}


def test_a_colleague_cannot_read_someone_elses_report_and_the_attempt_is_audited(server: LiveServer,
                                                                                   env: CallvaultEnv) -> None:
    report_id = str(_file(server, "alice")["id"])
    with server.client("bob") as bob:
        resp = bob.get(f"/api/v1/misuse-reports/{report_id}")
    assert resp.status_code == 404
    denials = _audit(env, "misuse.read", report_id)
    assert [(d.actor, d.decision) for d in denials] == [("bob", "deny")]


def test_a_recipient_moves_a_report_along_and_each_move_is_audited(server: LiveServer, env: CallvaultEnv) -> None:
    report_id = str(_file(server, "alice")["id"])
    with server.client("exec") as exec_client:
        for status in ("investigating", "closed"):
            resp = exec_client.post(f"/api/v1/misuse-reports/{report_id}/status",
                                    json={"status": status, "note": f"now {status}"})
            assert resp.status_code == 200, resp.text
            assert resp.json()["status"] == status
        resp = exec_client.post(f"/api/v1/misuse-reports/{report_id}/status", json={"status": "open"})
        assert resp.status_code == 409
        assert "closed report cannot become open" in resp.json()["message"]
    moves = _audit(env, "misuse.status_changed", report_id)
    assert [(m.actor, m.details["from"], m.details["to"]) for m in moves] == [
        ("exec", "open", "investigating"), ("exec", "investigating", "closed")]


def test_someone_outside_the_recipient_roles_cannot_change_a_status(server: LiveServer, env: CallvaultEnv) -> None:
    report_id = str(_file(server, "alice")["id"])
    with server.client("lead") as lead:
        resp = lead.post(f"/api/v1/misuse-reports/{report_id}/status", json={"status": "closed"})
    assert resp.status_code == 403
    denial = _audit(env, "misuse.status_changed", report_id)
    assert [(d.actor, d.decision) for d in denial] == [("lead", "deny")]
    with server.client("alice") as alice:
        assert alice.get(f"/api/v1/misuse-reports/{report_id}").json()["status"] == "open"


def test_a_report_about_a_recipient_is_neither_mailed_nor_shown_to_them(server: LiveServer, env: CallvaultEnv,
                                                                        second_executive: str,
                                                                        mail: MailSink) -> None:
    notify.send_due(env.runtime.db, mail.settings, clock=env.runtime.clock)
    report_id = str(_file(server, "alice", summary="an executive downloads calls", subject_user="exec")["id"])
    notify.send_due(env.runtime.db, mail.settings, clock=env.runtime.clock)
    assert _mails_about(mail, report_id) == {f"{second_executive}@localhost": 1}
    with server.client("exec") as exec_client:
        assert report_id not in {r["id"] for r in exec_client.get("/api/v1/misuse-reports").json()}
        assert exec_client.get(f"/api/v1/misuse-reports/{report_id}").status_code == 404
        resp = exec_client.post(f"/api/v1/misuse-reports/{report_id}/status", json={"status": "closed"})
        assert resp.status_code == 403


def test_a_report_without_a_summary_is_refused_naming_the_field(server: LiveServer) -> None:
    with server.client("alice") as alice:
        resp = alice.post("/api/v1/misuse-reports", json={"description": "no summary"})
    assert resp.status_code == 422
    assert "summary" in resp.text


def test_filing_a_report_needs_a_sign_in(server: LiveServer) -> None:
    with server.client() as anonymous:
        assert anonymous.post("/api/v1/misuse-reports", json={"summary": "x"}).status_code == 401


def test_administrators_see_who_has_not_acknowledged_the_policy(server: LiveServer) -> None:
    with server.client("admin") as admin:
        resp = admin.get("/api/v1/policy/acknowledgements")
    assert resp.status_code == 200, resp.text
    pending = {p["username"] for p in resp.json()["pending"]}
    assert "newhire" in pending and "alice" not in pending


def test_a_specialist_cannot_list_acknowledgements_and_the_attempt_is_audited(server: LiveServer,
                                                                               env: CallvaultEnv) -> None:
    with server.client("alice") as alice:
        assert alice.get("/api/v1/policy/acknowledgements").status_code == 403
    with env.runtime.db.unit_of_work() as session:
        last = session.scalars(select(AuditEntry).where(AuditEntry.action == "policy.acknowledgements_read")
                               .order_by(AuditEntry.seq.desc())).first()
    assert last is not None and (last.actor, last.decision) == ("alice", "deny")


def test_a_recipient_assigns_a_report_to_another_recipient_and_it_is_audited(
        server: LiveServer, env: CallvaultEnv, second_executive: str) -> None:
    report_id = str(_file(server, "alice")["id"])
    with server.client("exec") as exec_client:
        resp = exec_client.post(f"/api/v1/misuse-reports/{report_id}/assignee", json={"assignee": second_executive})
        assert resp.status_code == 200, resp.text
        assert resp.json()["assignee"] == second_executive
        assert exec_client.get(f"/api/v1/misuse-reports/{report_id}").json()["assignee"] == second_executive
    moves = _audit(env, "misuse.assigned", report_id)
    assert [(m.actor, m.decision, m.details["from"], m.details["to"]) for m in moves] == [
        ("exec", "allow", None, second_executive)]


def test_a_report_cannot_be_assigned_outside_the_recipient_roles_nor_to_its_subject(
        server: LiveServer, env: CallvaultEnv, second_executive: str) -> None:
    report_id = str(_file(server, "alice", subject_user=second_executive)["id"])
    with server.client("exec") as exec_client:
        for who in ("lead", second_executive, "nobody"):
            resp = exec_client.post(f"/api/v1/misuse-reports/{report_id}/assignee", json={"assignee": who})
            assert resp.status_code == 422, (who, resp.text)
            assert "assignee" in resp.text
    with server.client("lead") as lead:
        resp = lead.post(f"/api/v1/misuse-reports/{report_id}/assignee", json={"assignee": "exec"})
    assert resp.status_code == 403
    assert [(d.actor, d.decision) for d in _audit(env, "misuse.assigned", report_id)] == [("lead", "deny")]


def test_closing_a_report_needs_a_note_which_the_report_then_shows(server: LiveServer) -> None:
    report_id = str(_file(server, "alice")["id"])
    with server.client("exec") as exec_client:
        resp = exec_client.post(f"/api/v1/misuse-reports/{report_id}/status", json={"status": "closed"})
        assert resp.status_code == 422 and "note" in resp.text
        resp = exec_client.post(f"/api/v1/misuse-reports/{report_id}/status",
                                json={"status": "closed", "note": "Played for a QA review; no misuse."})
        assert resp.status_code == 200, resp.text
        assert resp.json()["closing_note"] == "Played for a QA review; no misuse."
