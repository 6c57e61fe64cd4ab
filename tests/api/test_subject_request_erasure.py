"""A caller's erasure request is carried out when it is approved: where the policy's notice promises deletion
(``notice.caller_requests: [copy, erasure]``), releasing such a request destroys the reviewed recordings
(crypto-shred, a destruction record with rule ``caller_erasure``), keeps those that are evidence (a legal
hold, an open case, the retention minimum) with the reason, and tells the caller what was deleted and what is
kept and why. Before, approving an erasure request mailed the caller a *download link* to the very recordings
they had asked to have deleted, and deleted nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from callvault.audit.models import AuditEntry
from callvault.recordings.models import Recording, RecordingState
from callvault.retention.models import DestructionRecord
from tests.support.audio import metadata, upload, wav_bytes
from tests.support.env import CallvaultEnv, LiveServer, served
from tests.support.policies import policy_a_with_erasure
from tests.support.sms import PhoneDouble, PhoneServer
from tests.support.smtp import MailSink, smtp_server

CALLER = "+14165550177"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[
        tuple[LiveServer, CallvaultEnv, MailSink, PhoneServer]]:
    """Policy A whose caller notice also promises deletion, a phone provider double and a mail sink."""
    tmp = tmp_path_factory.mktemp("erasure")
    policy = policy_a_with_erasure(tmp)
    with PhoneServer(PhoneDouble()) as phone, smtp_server() as mail, \
            served(request.config.getoption("--db"), tmp, policy, phone.env()) as (live, environment):
        yield live, environment, mail, phone


def _mails(env: CallvaultEnv, mail: MailSink, to: str) -> list[Any]:
    from callvault.notify import service as notify

    notify.send_due(env.runtime.db, mail.settings, clock=env.runtime.clock, keyring=env.runtime.keyring)
    return [r.message for r in mail.to(to)]


def _text(message: Any) -> str:
    payload = message.get_payload(decode=True)
    return payload.decode() if isinstance(payload, bytes) else str(payload)


def _store(server: LiveServer, seed: int, caller: str = CALLER) -> str:
    with server.client("admin") as admin:
        resp = upload(admin, wav_bytes(0.5, seed=seed), metadata(remote_number=caller))
    assert resp.status_code == 201, resp.text
    rec_id: str = resp.json()["id"]
    return rec_id


def _verified_erasure(server: LiveServer, env: CallvaultEnv, mail: MailSink, phone: PhoneServer, email: str,
                      caller: str = CALLER) -> str:
    from tests.api.test_subject_requests import _verified_request

    return _verified_request(server, env, mail, email, caller, phone, asks_for="erasure")


def test_approving_an_erasure_request_destroys_the_callers_recordings_and_keeps_evidence_with_the_reason(
        world: tuple[LiveServer, CallvaultEnv, MailSink, PhoneServer]) -> None:
    server, env, mail, phone = world
    erasable, held = _store(server, 701), _store(server, 702)
    with server.client("exec") as ex:
        hold = ex.post("/api/v1/retention/holds", json={
            "recording_id": held, "reason": "regulator inquiry", "owner": "exec",
            "review_date": (env.runtime.clock.now().date() + timedelta(days=30)).isoformat()})
        assert hold.status_code == 201, hold.text
    email = "erase.me@example.org"
    request_id = _verified_erasure(server, env, mail, phone, email)
    with server.client("lead") as lead:
        reviewed = lead.post(f"/api/v1/subject-requests/{request_id}/review",
                             json={"recording_ids": [erasable, held]})
        assert reviewed.status_code == 200, reviewed.text
        server.step_up(lead, "lead")  # approving needs a fresh code
        done = lead.post(f"/api/v1/subject-requests/{request_id}/approve", json={})
        assert done.status_code == 200, done.text
        shown = done.json()
        assert shown["status"] == "sent"
        assert shown["erasure"]["destroyed"] == [erasable]
        assert [k["recording_id"] for k in shown["erasure"]["kept"]] == [held]
        assert "legal hold" in shown["erasure"]["kept"][0]["reason"]
        assert lead.get(f"/api/v1/recordings/{erasable}/audio", params={"purpose": "spot_check"}).status_code in (
            404, 410)
        assert lead.get(f"/api/v1/recordings/{held}/audio", params={"purpose": "spot_check"}).status_code == 200
    with env.runtime.db.unit_of_work() as session:
        gone = session.get(Recording, erasable)
        assert gone is not None and gone.state == RecordingState.DESTROYED and gone.remote_number is None
        assert session.get(Recording, held).state == RecordingState.AVAILABLE  # type: ignore[union-attr]
        record = session.scalars(select(DestructionRecord).where(DestructionRecord.recording_id == erasable)).one()
        assert record.rule == "caller_erasure" and request_id in record.reason
        assert not env.runtime.store.exists(gone.blob_key)
        [event] = session.scalars(select(AuditEntry).where(AuditEntry.action == "subject_request.erased",
                                                           AuditEntry.object_id == request_id)).all()
        assert event.actor == "lead" and event.details["destroyed"] == 1 and event.details["kept"] == 1
    [answer] = [m for m in _mails(env, mail, email) if "code" not in str(m["Subject"])
                and "received" not in str(m["Subject"]).lower()]
    body = _text(answer)
    assert "/s/" not in body, "an erasure request is never answered with a download link"
    assert "deleted 1 recording" in body and "1 recording is kept" in body and "legal hold" in body


def test_an_erasure_request_with_nothing_to_delete_is_answered_without_a_link(
        world: tuple[LiveServer, CallvaultEnv, MailSink, PhoneServer]) -> None:
    server, env, mail, phone = world
    email = "nothing.held@example.org"
    request_id = _verified_erasure(server, env, mail, phone, email)
    with server.client("lead") as lead:
        assert lead.post(f"/api/v1/subject-requests/{request_id}/review", json={"recording_ids": []}).status_code == 200
        server.step_up(lead, "lead")  # approving needs a fresh code
        done = lead.post(f"/api/v1/subject-requests/{request_id}/approve", json={})
        assert done.status_code == 200, done.text
        assert done.json()["erasure"] == {"destroyed": [], "kept": []}
    body = _text([m for m in _mails(env, mail, email) if "code" not in str(m["Subject"])
                  and "received" not in str(m["Subject"]).lower()][-1])
    assert "/s/" not in body and "hold no recordings" in body


def test_on_the_request_page_staff_delete_instead_of_release_and_see_what_was_kept(
        world: tuple[LiveServer, CallvaultEnv, MailSink, PhoneServer]) -> None:
    import httpx

    from tests.api.test_auth_web import _csrf, web_sign_in

    server, env, mail, phone = world
    erasable = _store(server, 703)
    email = "erase.on.page@example.org"
    request_id = _verified_erasure(server, env, mail, phone, email)
    with server.client("lead") as lead:
        assert lead.post(f"/api/v1/subject-requests/{request_id}/review",
                         json={"recording_ids": [erasable]}).status_code == 200
    with httpx.Client(base_url=server.base_url, timeout=30, headers={"Accept": "text/html"}) as browser:
        web_sign_in(browser, env, "lead")
        page = browser.get(f"/requests/{request_id}")
        assert "Delete the caller's recordings" in page.text and "Delete the chosen recordings" in page.text
        assert "The link works for" not in page.text, "no download link is offered for an erasure request"
        assert 'name="step_up_code"' in page.text, "destroying recordings asks for the one-time code in place"
        # Without a fresh code (a browser left signed in): nothing is destroyed, and the page says what to do.
        refused = browser.post(f"/requests/{request_id}/approve", data={"csrf_token": _csrf(page.text)})
        assert refused.status_code == 403 and "needs your one-time code" in refused.text
        with env.runtime.db.unit_of_work() as session:
            assert session.get(Recording, erasable).state == RecordingState.AVAILABLE  # type: ignore[union-attr]
        done = browser.post(f"/requests/{request_id}/approve", data={"csrf_token": _csrf(page.text),
                                                                     "step_up_code": env.otp("lead")})
        assert done.status_code == 303 and done.headers["location"].endswith("?done=erased")
        after = browser.get(done.headers["location"])
        assert "Erasure carried out" in after.text and "1 recording destroyed" in after.text
    with env.runtime.db.unit_of_work() as session:
        assert session.get(Recording, erasable).state == RecordingState.DESTROYED  # type: ignore[union-attr]


def test_the_cli_carries_out_an_erasure_request_as_a_named_staff_member(
        world: tuple[LiveServer, CallvaultEnv, MailSink, PhoneServer]) -> None:
    from typer.testing import CliRunner

    from callvault.cli.main import app as cli_app

    server, env, mail, phone = world
    caller = "+14165550179"
    rec = _store(server, 705, caller=caller)
    request_id = _verified_erasure(server, env, mail, phone, "erase.by.cli@example.org", caller=caller)
    cli_env = {**env.cli_env, "CALLVAULT_PUBLIC_URL": server.base_url}
    done = CliRunner().invoke(cli_app, ["requests", "approve", request_id, "--as", "lead", "--recording", rec,
                                        "--data-dir", str(env.data_dir)], env=cli_env)
    assert done.exit_code == 0, done.output
    assert "1 recording(s) destroyed, 0 kept" in " ".join(done.output.split())
    with env.runtime.db.unit_of_work() as session:
        gone = session.get(Recording, rec)
        assert gone is not None and gone.state == RecordingState.DESTROYED
        assert not env.runtime.store.exists(gone.blob_key)


def test_an_approver_the_policy_does_not_let_act_deletes_nothing_and_the_refusal_is_audited(
        world: tuple[LiveServer, CallvaultEnv, MailSink, PhoneServer]) -> None:
    """The same authority as a release: a new policy version the approver has not acknowledged yet (A10) keeps
    them from acting on anyone's recordings, so nothing is deleted; once acknowledged, the erasure goes ahead.
    (Last in this module: it moves the policy to a new version.)"""
    from callvault.policy import service as policy_service

    server, env, mail, phone = world
    rec = _store(server, 704, caller="+14165550178")
    request_id = _verified_erasure(server, env, mail, phone, "erase.after.ack@example.org", caller="+14165550178")
    with server.client("lead") as lead:
        assert lead.post(f"/api/v1/subject-requests/{request_id}/review",
                         json={"recording_ids": [rec]}).status_code == 200
    with env.runtime.db.unit_of_work() as session:
        current = policy_service.current_policy(session)
        doc = yaml.safe_load(current.model_dump_json())
    doc["version"] = f"{current.version}-erasure-test"
    with env.runtime.db.unit_of_work() as session:
        policy_service.load_policy(session, text=yaml.safe_dump(doc), source="test", actor="test")
    with server.client("lead") as lead:
        server.step_up(lead, "lead")  # approving needs a fresh code
        refused = lead.post(f"/api/v1/subject-requests/{request_id}/approve", json={})
        assert refused.status_code == 403 and "has not acknowledged" in refused.text, refused.text
    # Past the edges' staff gate (every edge has one), the service decides each recording itself.
    from callvault.identity import service as identity
    from callvault.subject_requests import service as subject

    with env.runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session)
        actor = identity.actor_for(session, identity.get_user(session, "lead"), policy)
        outcome = subject.approve(session, policy=policy, actor=actor, request_id=request_id, public_url="http://x",
                                  keyring=env.runtime.keyring, clock=env.runtime.clock)
        assert [rid for rid, _ in outcome.denials] == [rec] and outcome.pending == []
        assert outcome.request.erasure_outcome is None and outcome.request.status == "ready"
    with env.runtime.db.unit_of_work() as session:
        assert session.get(Recording, rec).state == RecordingState.AVAILABLE  # type: ignore[union-attr]
        denied = session.scalars(select(AuditEntry).where(AuditEntry.action == "subject_request.erase_refused",
                                                          AuditEntry.object_id == rec)).all()
        assert [(e.actor, e.decision) for e in denied] == [("lead", "deny")]
        assert "acknowledged" in (denied[0].reason or "")
    with server.client("lead") as lead:
        assert lead.post("/api/v1/me/acknowledge-policy").status_code == 204
        server.step_up(lead, "lead")  # approving needs a fresh code
        done = lead.post(f"/api/v1/subject-requests/{request_id}/approve", json={})
        assert done.status_code == 200, done.text
        assert done.json()["erasure"]["destroyed"] == [rec]
