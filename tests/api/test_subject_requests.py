"""Callers' and operators' requests for their own recordings (B7, B10) over real HTTP and real SMTP:
submit → code by mail → verify → code to the phone → staff review and release → link by mail → zip of
exactly their calls. A phone provider is configured here (a loopback double, ``tests.support.sms``); the
path without one (facts a reviewer confirms) is in ``test_subject_request_proof``."""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from callvault.audit.models import AuditEntry
from callvault.cli.main import app as cli_app
from callvault.core.clock import FixedClock
from callvault.notify import service as notify
from callvault.subject_requests import jobs as subject_jobs
from callvault.subject_requests import service as subject
from callvault.subject_requests.models import SubjectRequest, SubjectRequestRecording
from tests.conftest import POLICY_A
from tests.support.audio import CALL_START, metadata, upload, wav_bytes
from tests.support.env import CallvaultEnv, LiveServer, make_env
from tests.support.sms import PhoneDouble, PhoneServer
from tests.support.smtp import MailSink, smtp_server

CALLER_1, CALLER_2 = "+14165550101", "+14165550202"


@pytest.fixture(scope="module")
def phone() -> Iterator[PhoneServer]:
    """The phone provider: a loopback HTTP double that keeps the texts it is asked to send."""
    with PhoneServer(PhoneDouble()) as provider:
        yield provider


@pytest.fixture(scope="module")
def env(database_url: str, tmp_path_factory: pytest.TempPathFactory, phone: PhoneServer) -> Iterator[CallvaultEnv]:
    """Policy A with ``CALLVAULT_SMS_URL`` / ``_TOKEN`` pointing at the double."""
    environment = make_env(tmp_path_factory.mktemp("data"), database_url, POLICY_A, extra_env=phone.env())
    yield environment
    environment.close()


@pytest.fixture(scope="module")
def mail() -> Iterator[MailSink]:
    with smtp_server() as sink:
        yield sink


@pytest.fixture(autouse=True)
def _fresh_limits(env: CallvaultEnv) -> None:
    """Every test comes from 127.0.0.1; start each with the public form's counters at zero."""
    with env.runtime.db.unit_of_work() as session:
        env.runtime.counters.clear_prefix(session, "subject-")


@pytest.fixture(scope="module")
def recs(server: LiveServer) -> dict[str, tuple[str, bytes]]:
    """Two calls with caller 1 (in and out), one with caller 2; all on alice's extension."""
    made = {}
    with server.client("admin") as admin:
        for name, number, direction, seed in (("in1", CALLER_1, "inbound", 501), ("out1", CALLER_1, "outbound", 502),
                                              ("in2", CALLER_2, "inbound", 503)):
            audio = wav_bytes(0.5, seed=seed)
            meta = metadata(remote_number=number, direction=direction)
            if direction == "outbound":
                meta.pop("consent")
                meta["consent"] = {"agent_notice_at": meta["started_at"]}
            resp = upload(admin, audio, meta)
            assert resp.status_code == 201, resp.text
            made[name] = (resp.json()["id"], audio)
    return made


def _mails(mail: MailSink, env: CallvaultEnv, to: str) -> list[Any]:
    notify.send_due(env.runtime.db, mail.settings, clock=env.runtime.clock, keyring=env.runtime.keyring)
    return [r.message for r in mail.to(to)]


def _body(message: Any) -> str:
    payload = message.get_payload(decode=True)
    return payload.decode(message.get_content_charset() or "utf-8") if isinstance(payload, bytes) else str(payload)


def _code(mail: MailSink, env: CallvaultEnv, to: str) -> str:
    subjects = [str(m["Subject"]) for m in _mails(mail, env, to) if "verification code" in str(m["Subject"])]
    found = re.search(r"(\d{6})", subjects[-1])
    assert found
    return found.group(1)


def _submit(client: httpx.Client, email: str, numbers: list[str], **extra: Any) -> httpx.Response:
    return client.post("/api/v1/subject-requests", json={"phone_numbers": numbers, "email": email, **extra})


def _verified_request(server: LiveServer, env: CallvaultEnv, mail: MailSink, email: str, number: str,
                      phone: PhoneServer | None = None, **extra: Any) -> str:
    """Submitted (with ``extra`` fields, e.g. ``asks_for``), its email code confirmed, and (given the ``phone``
    provider) the number proven with the code texted to it: what an honest caller does."""
    with server.client() as public:
        resp = _submit(public, email, [number], description="my calls about an invoice", **extra)
        assert resp.status_code == 202, resp.text
        request_id: str = resp.json()["id"]
        ok = public.post(f"/api/v1/subject-requests/{request_id}/verify", json={"code": _code(mail, env, email)})
        assert ok.status_code == 200, ok.text
        if phone is not None:
            (e164,) = ok.json()["phone_codes_sent"]
            before = len(phone.double.texts_to(e164)) - 1
            proven = public.post(f"/api/v1/subject-requests/{request_id}/verify-phone",
                                 json={"phone_number": e164, "code": phone.double.code_for(e164, after=before)})
            assert proven.status_code == 200, proven.text
    return request_id


def _release(server: LiveServer, env: CallvaultEnv, mail: MailSink, request_id: str, rec_ids: list[str],
             email: str, **approve: Any) -> str:
    with server.client("lead") as lead:
        assert lead.post(f"/api/v1/subject-requests/{request_id}/review",
                         json={"recording_ids": rec_ids}).status_code == 200
        server.step_up(lead, "lead")  # approving needs a fresh code
        resp = lead.post(f"/api/v1/subject-requests/{request_id}/approve", json=approve)
        assert resp.status_code == 200, resp.text
    links = [re.search(r"(http\S+/s/\S+)", _body(m)) for m in _mails(mail, env, email)
             if str(m["Subject"]) == "Your call recordings"]
    found = links[-1]
    assert found
    return found.group(1)


def test_a_caller_receives_exactly_their_recordings_by_an_emailed_link(
        server: LiveServer, env: CallvaultEnv, mail: MailSink, recs: dict[str, tuple[str, bytes]],
        phone: PhoneServer) -> None:
    email = "caller.one@example.org"
    request_id = _verified_request(server, env, mail, email, "+1 (416) 555-0101", phone)
    ack = [m for m in _mails(mail, env, email) if "received your request" in str(m["Subject"])]
    assert ack and "We will answer by" in _body(ack[0])
    with server.client("lead") as lead:
        queue = lead.get("/api/v1/subject-requests").json()
        mine = next(r for r in queue if r["id"] == request_id)
        assert mine["status"] == "to_review" and mine["due_on"] and mine["region"] == "CA-ON"
        candidates = lead.get(f"/api/v1/subject-requests/{request_id}/candidates").json()
        assert {c["id"] for c in candidates} == {recs["in1"][0], recs["out1"][0]}
        assert {c["party"] for c in candidates} == {"caller", "callee"}
    link = _release(server, env, mail, request_id, [recs["in1"][0], recs["out1"][0]], email)
    with httpx.Client(timeout=30) as anyone:
        resp = anyone.get(link)
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(resp.content))
    manifest = json.loads(archive.read("manifest.json"))
    by_id = {row["recording_id"]: row for row in manifest["recordings"]}
    assert set(by_id) == {recs["in1"][0], recs["out1"][0]}
    for key in ("in1", "out1"):
        rec_id, audio = recs[key]
        assert archive.read(by_id[rec_id]["file"]) == audio, "the audio is the original, byte for byte"
        assert by_id[rec_id]["duration_seconds"] == pytest.approx(0.5)
    assert by_id[recs["in1"][0]]["your_party"] == "caller" and by_id[recs["out1"][0]]["your_party"] == "callee"
    assert "manifest.csv" in archive.namelist()
    with env.runtime.db.unit_of_work() as session:
        actions = [(e.action, e.decision, e.purpose) for e in session.scalars(
            select(AuditEntry).where(AuditEntry.object_id.in_([recs["in1"][0], recs["out1"][0]])))]
        assert ("recording.export", "allow", "subject_access") in actions
        assert ("recording.download", "allow", "subject_access") in actions
        assert subject.get(session, request_id).status == "sent"


def test_a_used_up_expired_or_revoked_link_is_refused(
        server: LiveServer, env: CallvaultEnv, mail: MailSink, recs: dict[str, tuple[str, bytes]],
        phone: PhoneServer) -> None:
    email = "caller.reuse@example.org"
    request_id = _verified_request(server, env, mail, email, CALLER_1, phone)
    link = _release(server, env, mail, request_id, [recs["in1"][0]], email, max_downloads=1, link_days=2)
    with httpx.Client(timeout=30) as anyone:
        assert anyone.get(link).status_code == 200
        assert anyone.get(link).status_code == 410, "one download only"
    request_id = _verified_request(server, env, mail, email, CALLER_1, phone)
    link = _release(server, env, mail, request_id, [recs["in1"][0]], email, max_downloads=3, link_days=2)
    real = env.runtime.clock
    env.runtime.clock = FixedClock(real.now() + timedelta(days=2, minutes=1))
    try:
        with httpx.Client(timeout=30) as anyone:
            assert anyone.get(link).status_code == 410, "expired"
    finally:
        env.runtime.clock = real
    with server.client("lead") as lead:
        assert lead.post(f"/api/v1/subject-requests/{request_id}/revoke-links").json() == {"revoked": 1}
    with httpx.Client(timeout=30) as anyone:
        assert anyone.get(link).status_code == 410, "revoked"
        assert anyone.get(link.rsplit("/", 1)[0] + "/" + "x" * 43).status_code == 410, "made-up token"


def test_one_requesters_link_never_serves_another_requesters_recording(
        server: LiveServer, env: CallvaultEnv, mail: MailSink, recs: dict[str, tuple[str, bytes]],
        phone: PhoneServer) -> None:
    email = "caller.two@example.org"
    request_id = _verified_request(server, env, mail, email, CALLER_2, phone)
    with server.client("lead") as lead:
        wrong = lead.post(f"/api/v1/subject-requests/{request_id}/review", json={"recording_ids": [recs["in1"][0]]})
        assert wrong.status_code == 422 and "recording_ids[0]" in wrong.text
    link = _release(server, env, mail, request_id, [recs["in2"][0]], email)
    # Even if the selection were tampered with after release, the download refuses someone else's call.
    with env.runtime.db.unit_of_work() as session:
        session.add(SubjectRequestRecording(request_id=request_id, recording_id=recs["in1"][0], party="caller",
                                            added_by="tamper", added_at=env.runtime.clock.now()))
    with httpx.Client(timeout=30) as anyone:
        resp = anyone.get(link)
    assert resp.status_code == 410 and recs["in1"][0] not in resp.text
    with env.runtime.db.unit_of_work() as session:
        denial = session.scalars(select(AuditEntry).where(AuditEntry.action == "subject_request.download",
                                                          AuditEntry.decision == "deny")).all()
        assert any("does not belong" in e.reason for e in denial)


def test_the_verification_code_cannot_be_brute_forced(server: LiveServer, env: CallvaultEnv, mail: MailSink) -> None:
    email = "guesser@example.org"
    with server.client() as public:
        request_id = _submit(public, email, [CALLER_1]).json()["id"]
        code = _code(mail, env, email)
        wrong = f"{(int(code) + 1) % 10**6:06d}"
        answers = [public.post(f"/api/v1/subject-requests/{request_id}/verify", json={"code": wrong})
                   for _ in range(subject.MAX_CODE_ATTEMPTS)]
        assert all(a.status_code == 422 for a in answers)
        assert "submit the request again" in answers[-1].json()["message"]
        late = public.post(f"/api/v1/subject-requests/{request_id}/verify", json={"code": code})
        assert late.status_code == 422, "after 5 wrong guesses even the right code is refused"
        # And guessing across many requests from one address is cut off.
        statuses = [public.post(f"/api/v1/subject-requests/{request_id}/verify", json={"code": wrong}).status_code
                    for _ in range(30)]
        assert statuses[-1] == 429
    with env.runtime.db.unit_of_work() as session:
        row = subject.get(session, request_id)
        assert row.status == "awaiting_verification" and row.code_sha256 is None


def test_the_public_form_is_rate_limited_and_traps_robots(
        server: LiveServer, env: CallvaultEnv, mail: MailSink) -> None:
    with env.runtime.db.unit_of_work() as session:
        before = len(session.scalars(select(SubjectRequest)).all())
    with server.client() as public:
        trapped = _submit(public, "robot@example.org", [CALLER_1], website="http://spam.example")
        assert trapped.status_code == 202
        assert _mails(mail, env, "robot@example.org") == []
        with env.runtime.db.unit_of_work() as session:
            assert len(session.scalars(select(SubjectRequest)).all()) == before, "nothing stored for a robot"
        assert _submit(public, "x@example.org", ["+1416555010" + str(i) for i in range(6)]).status_code == 422
        assert _submit(public, "x@example.org", [CALLER_1], description="x" * 5000).status_code == 422
        bad = _submit(public, "not-an-address", ["hello"])
        assert bad.status_code == 422
        assert {"email", "phone_numbers[0]"} <= {p["location"] for p in bad.json()["problems"]}
        codes = [_submit(public, "flood@example.org", [CALLER_1]).status_code for _ in range(4)]
        assert codes == [202, 202, 202, 429], "at most 3 requests an hour name one email address"
        assert "retry-after" in {k.lower() for k in _submit(public, "flood@example.org", [CALLER_1]).headers}


def test_an_operator_requests_their_own_recordings_through_their_account(
        server: LiveServer, env: CallvaultEnv, mail: MailSink, recs: dict[str, tuple[str, bytes]]) -> None:
    with server.client("alice") as alice:
        resp = alice.post("/api/v1/me/subject-requests", json={"description": "all my calls"})
        assert resp.status_code == 201, resp.text
        request_id = resp.json()["id"]
        assert resp.json()["status"] == "to_review" and resp.json()["due_on"]
        assert [r["id"] for r in alice.get("/api/v1/me/subject-requests").json()] == [request_id]
    with server.client("lead") as lead:
        found = {c["id"] for c in lead.get(f"/api/v1/subject-requests/{request_id}/candidates").json()}
        assert {recs[k][0] for k in ("in1", "out1", "in2")} <= found
    link = _release(server, env, mail, request_id, [recs["in2"][0]], "alice@localhost")
    with httpx.Client(timeout=30) as anyone:
        archive = zipfile.ZipFile(io.BytesIO(anyone.get(link).content))
    rows = json.loads(archive.read("manifest.json"))["recordings"]
    assert [(r["recording_id"], r["your_party"], r["your_number"]) for r in rows] == [
        (recs["in2"][0], "operator", None)], "an operator's manifest does not expose the caller's number"


def test_staff_cannot_release_their_own_request(server: LiveServer, env: CallvaultEnv) -> None:
    with server.client("lead") as lead:
        request_id = lead.post("/api/v1/me/subject-requests", json={}).json()["id"]
        assert lead.post(f"/api/v1/subject-requests/{request_id}/review", json={"recording_ids": []}).status_code == 200
        server.step_up(lead, "lead")  # approving needs a fresh code
        assert lead.post(f"/api/v1/subject-requests/{request_id}/approve").status_code == 403


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/api/v1/subject-requests"),
    ("GET", "/api/v1/subject-requests/summary"),
    ("GET", "/api/v1/subject-requests/{id}"),
    ("GET", "/api/v1/subject-requests/{id}/candidates"),
    ("POST", "/api/v1/subject-requests/{id}/review"),
    ("POST", "/api/v1/subject-requests/{id}/approve"),
    ("POST", "/api/v1/subject-requests/{id}/revoke-links"),
])
def test_a_specialist_cannot_work_the_subject_request_queue(
        server: LiveServer, env: CallvaultEnv, mail: MailSink, method: str, path: str) -> None:
    request_id = _verified_request(server, env, mail, "denial@example.org", CALLER_2)
    url = path.format(id=request_id)
    body: dict[str, list[str]] | None = {"recording_ids": []} if path.endswith("/review") else None
    with server.client("alice") as alice:
        resp = alice.request(method, url, json=body)
    assert resp.status_code == 403
    with server.client() as anonymous:
        assert anonymous.request(method, url, json=body).status_code == 401
    with env.runtime.db.unit_of_work() as session:
        last = session.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(5)).all()
        assert any(e.actor == "alice" and e.decision == "deny" and e.action.startswith("subject_request.")
                   for e in last)


def test_reminders_go_to_the_team_and_overdue_requests_are_counted(
        server: LiveServer, env: CallvaultEnv, mail: MailSink) -> None:
    request_id = _verified_request(server, env, mail, "slow@example.org", CALLER_2)
    with env.runtime.db.unit_of_work() as session:
        row = subject.get(session, request_id)
        due_at, due_on = row.due_at, row.due_on
    assert due_at is not None
    real = env.runtime.clock
    try:
        env.runtime.clock = FixedClock(due_at - timedelta(hours=30))
        assert subject_jobs.reminders(env.runtime) >= 1
        reminders = [m for m in _mails(mail, env, "lead@localhost") if f"due {due_on}" in str(m["Subject"])
                     and "Reminder" in str(m["Subject"])]
        assert reminders
        env.runtime.clock = FixedClock(due_at + timedelta(minutes=1))
        assert subject_jobs.reminders(env.runtime) >= 1
        assert any("OVERDUE" in str(m["Subject"]) for m in _mails(mail, env, "lead@localhost"))
        with server.client("lead") as lead:
            assert lead.get("/api/v1/subject-requests/summary").json()["overdue"] >= 1
            overdue = lead.get("/api/v1/subject-requests", params={"status": "overdue"}).json()
            assert request_id in [r["id"] for r in overdue] and all(r["status"] == "overdue" for r in overdue)
    finally:
        env.runtime.clock = real


def test_the_public_page_takes_a_request_and_confirms_the_due_date(
        server: LiveServer, env: CallvaultEnv, mail: MailSink, phone: PhoneServer) -> None:
    email = "webform@example.org"
    with server.client() as browser:
        form = browser.get("/request")
        assert form.status_code == 200 and 'name="website"' in form.text
        sent = browser.post("/request", data={"phone_numbers": CALLER_1, "email": email, "description": "hello"})
        assert sent.status_code == 200 and "Check your email" in sent.text
        action = re.search(r'action="(/request/[0-9a-f-]+/verify)"', sent.text)
        assert action
        wrong = browser.post(action.group(1), data={"code": "000000x"})
        assert wrong.status_code == 422
        done = browser.post(action.group(1), data={"code": _code(mail, env, email)})
        assert done.status_code == 200 and "We will answer by" in done.text
        assert f"Code sent to {CALLER_1}" in done.text
        phone_form = re.search(r'action="(/request/[0-9a-f-]+/verify-phone)"', done.text)
        assert phone_form
        wrong_phone = browser.post(phone_form.group(1), data={"phone_number": CALLER_1, "code": "000000x"})
        assert wrong_phone.status_code == 422 and "wrong" in wrong_phone.text
        proven = browser.post(phone_form.group(1), data={"phone_number": CALLER_1, "code": phone.double.code_for(
            CALLER_1, after=len(phone.double.texts_to(CALLER_1)) - 1)})
        assert proven.status_code == 200 and "phone number is confirmed" in proven.text
        bad = browser.post("/request", data={"phone_numbers": "nope", "email": email})
        assert bad.status_code == 422 and "phone_numbers[0]" in bad.text


def test_the_cli_lists_the_queue_and_releases_as_a_named_staff_member(
        server: LiveServer, env: CallvaultEnv, mail: MailSink, recs: dict[str, tuple[str, bytes]],
        phone: PhoneServer) -> None:
    email = "cli@example.org"
    request_id = _verified_request(server, env, mail, email, CALLER_2, phone)
    cli_env = {**env.cli_env, "CALLVAULT_PUBLIC_URL": server.base_url}
    listed = CliRunner().invoke(cli_app, ["requests", "list", "--json", "--data-dir", str(env.data_dir)], env=cli_env)
    assert listed.exit_code == 0 and request_id in listed.output
    shown = CliRunner().invoke(cli_app, ["requests", "show", request_id, "--data-dir", str(env.data_dir)], env=cli_env)
    assert shown.exit_code == 0 and recs["in2"][0] in shown.output
    denied = CliRunner().invoke(cli_app, ["requests", "approve", request_id, "--as", "alice", "--recording",
                                          recs["in2"][0], "--data-dir", str(env.data_dir)], env=cli_env)
    assert denied.exit_code == 5
    ok = CliRunner().invoke(cli_app, ["requests", "approve", request_id, "--as", "lead", "--recording",
                                      recs["in2"][0], "--data-dir", str(env.data_dir)], env=cli_env)
    assert ok.exit_code == 0, ok.output
    assert any(server.base_url + "/s/" in _body(m) for m in _mails(mail, env, email))


def _outbox_text(env: CallvaultEnv, to: str) -> str:
    """Everything the outbox holds for ``to``, as a database reader (or a backup of it) would see it."""
    from callvault.notify.models import OutboxMail
    with env.runtime.db.unit_of_work() as session:
        rows = session.scalars(select(OutboxMail).where(OutboxMail.recipient == to)).all()
        return "\n".join(f"{r.subject}\n{r.body}\n{(r.secrets_sealed or b'').hex()}" for r in rows)


def test_the_outbox_never_holds_a_verification_code_or_a_download_link_in_clear(
        server: LiveServer, env: CallvaultEnv, mail: MailSink, recs: dict[str, tuple[str, bytes]],
        phone: PhoneServer) -> None:
    """The outside tester read ``mail_outbox`` and found every verification code and every download link
    ever sent, usable, forever. The mail that goes out carries them; the row keeps them sealed until it
    is sent and then not at all."""
    email = "caller.outbox@example.org"
    with server.client() as public:
        resp = _submit(public, email, [CALLER_2])
        assert resp.status_code == 202, resp.text
        request_id = resp.json()["id"]
    queued = _outbox_text(env, email)
    code = _code(mail, env, email)
    assert code not in queued and code not in _outbox_text(env, email)
    assert "verification code" in _outbox_text(env, email)  # the row still says what was sent
    with server.client() as public:
        assert public.post(f"/api/v1/subject-requests/{request_id}/verify", json={"code": code}).status_code == 200
        assert public.post(f"/api/v1/subject-requests/{request_id}/verify-phone", json={
            "phone_number": CALLER_2, "code": phone.double.code_for(CALLER_2,
                                                                   after=len(phone.double.texts_to(CALLER_2)) - 1)
        }).status_code == 200
    with server.client("lead") as lead:
        assert lead.post(f"/api/v1/subject-requests/{request_id}/review",
                         json={"recording_ids": [recs["in2"][0]]}).status_code == 200
        server.step_up(lead, "lead")  # approving needs a fresh code
        assert lead.post(f"/api/v1/subject-requests/{request_id}/approve", json={}).status_code == 200
    queued = _outbox_text(env, email)
    links = [re.search(r"(http\S+/s/(\S+))", _body(m)) for m in _mails(mail, env, email)
             if str(m["Subject"]) == "Your call recordings"]
    assert links and links[-1]
    link, token = links[-1].group(1), links[-1].group(2)
    assert token not in queued and token not in _outbox_text(env, email)
    with httpx.Client(timeout=30) as anyone:
        assert anyone.get(link).status_code == 200  # the mailed link works: only the stored copy is gone
    from callvault.notify.models import OutboxMail
    with env.runtime.db.unit_of_work() as session:
        sent = session.scalars(select(OutboxMail).where(OutboxMail.recipient == email)).all()
        assert sent and all(r.state == "sent" and r.secrets_sealed is None for r in sent)


def test_a_code_sent_to_the_phone_proves_the_number_and_a_wrong_one_is_refused(
        server: LiveServer, env: CallvaultEnv, mail: MailSink, recs: dict[str, tuple[str, bytes]],
        phone: PhoneServer) -> None:
    email = "caller.phone@example.org"
    with server.client() as public:
        request_id = _submit(public, email, ["+1 416 555 0101"]).json()["id"]
        texts_before = len(phone.double.texts_to(CALLER_1))
        ok = public.post(f"/api/v1/subject-requests/{request_id}/verify", json={"code": _code(mail, env, email)})
        assert ok.status_code == 200 and ok.json()["phone_codes_sent"] == [CALLER_1]
        code = phone.double.code_for(CALLER_1, after=texts_before)
        text = phone.double.texts_to(CALLER_1)[-1]
        assert text.reference == request_id and phone.double.refused == 0, "sent with the provider's token"
        with server.client("lead") as lead:
            shown = lead.get(f"/api/v1/subject-requests/{request_id}").json()["identity"]
            assert shown["phone_verified"] is False and shown["phones"][0]["code_sent"] is True
            assert lead.get(f"/api/v1/subject-requests/{request_id}/candidates").json() == [], \
                "no proof and no facts: none of the number's calls is offered"
        wrong = f"{(int(code) + 1) % 10**6:06d}"
        refused = public.post(f"/api/v1/subject-requests/{request_id}/verify-phone",
                              json={"phone_number": CALLER_1, "code": wrong})
        assert refused.status_code == 422 and "4 attempts left" in refused.json()["message"]
        right = public.post(f"/api/v1/subject-requests/{request_id}/verify-phone",
                            json={"phone_number": CALLER_1, "code": code})
        assert right.status_code == 200, right.text
        again = public.post(f"/api/v1/subject-requests/{request_id}/verify-phone",
                            json={"phone_number": CALLER_1, "code": code})
        assert again.status_code == 422, "a code works once"
    with env.runtime.db.unit_of_work() as session:
        failures = session.scalars(select(AuditEntry).where(
            AuditEntry.object_id == request_id, AuditEntry.action == "subject_request.phone_verify",
            AuditEntry.decision == "deny")).all()
        assert [e.reason for e in failures] == ["wrong phone code", "no code waiting for that number"]
    with server.client("lead") as lead:
        shown = lead.get(f"/api/v1/subject-requests/{request_id}").json()["identity"]
        assert shown["phone_verified"] is True and shown["warning"] is None
        found = {c["id"]: c for c in lead.get(f"/api/v1/subject-requests/{request_id}/candidates").json()}
        assert set(found) == {recs["in1"][0], recs["out1"][0]} and all(c["phone_verified"] for c in found.values())
    link = _release(server, env, mail, request_id, [recs["in1"][0]], email)
    with httpx.Client(timeout=30) as anyone:
        assert anyone.get(link).status_code == 200


def test_a_stranger_who_cannot_answer_the_phone_gets_nothing(
        server: LiveServer, env: CallvaultEnv, mail: MailSink, recs: dict[str, tuple[str, bytes]],
        phone: PhoneServer) -> None:
    """The outside tester's attack with a provider configured: the code goes to the victim's phone, the
    stranger has only their own mailbox; staff cannot pick the victim's calls, nor release them."""
    email = "stranger.phone@example.org"
    with server.client() as public:
        request_id = _submit(public, email, [CALLER_2], call_date=str(CALL_START.date())).json()["id"]
        ok = public.post(f"/api/v1/subject-requests/{request_id}/verify", json={"code": _code(mail, env, email)})
        assert ok.json()["phone_codes_sent"] == [CALLER_2]  # ... on the victim's phone
        guessed = public.post(f"/api/v1/subject-requests/{request_id}/verify-phone",
                              json={"phone_number": CALLER_2, "code": "123456"})
        assert guessed.status_code == 422
    with server.client("lead") as lead:
        assert lead.post(f"/api/v1/subject-requests/{request_id}/review",
                         json={"recording_ids": [recs["in2"][0]]}).status_code in (200, 422)
        server.step_up(lead, "lead")  # approving needs a fresh code
        refused = lead.post(f"/api/v1/subject-requests/{request_id}/approve", json={})
        if refused.status_code != 409:  # the call was on the stated day, so it could be picked: still refused
            assert refused.status_code == 403 and "NOT verified" in refused.json()["message"]
        assert lead.get(f"/api/v1/subject-requests/{request_id}").json()["stored_status"] != "sent"


def test_a_call_a_verified_caller_asked_for_cannot_be_marked_personal_by_its_agent(
        server: LiveServer, env: CallvaultEnv, mail: MailSink, phone: PhoneServer) -> None:
    """Issue 23 (6), A4/B7: a caller's open request for their recordings keeps the call. Alice, its agent,
    marks it personal a minute after it ended (inside policy A's window): refused, 409 naming the request,
    on record as a denial, and the call still plays."""
    caller = "+14165550303"
    started = env.runtime.clock.now() - timedelta(minutes=1, seconds=4)
    meta = metadata(remote_number=caller, started=started, ended_at=(started + timedelta(seconds=4)).isoformat())
    with server.client("admin") as admin:
        stored = upload(admin, wav_bytes(4.0, seed=504), meta)
    assert stored.status_code == 201, stored.text
    rec = stored.json()["id"]
    request_id = _verified_request(server, env, mail, "caller.three@example.org", caller, phone)
    with server.client("alice") as alice:
        resp = alice.post(f"/api/v1/recordings/{rec}/control", json={"action": "personal"})
    assert resp.status_code == 409, resp.text
    assert f"request {request_id}" in resp.json()["message"] and "A4" in resp.json()["message"]
    with env.runtime.db.unit_of_work() as session:
        entry = session.scalars(select(AuditEntry).where(
            AuditEntry.actor == "alice", AuditEntry.action == "recording.control_personal",
            AuditEntry.object_id == rec)).one()
    assert entry.decision == "deny" and "A4" in entry.clauses
    with server.client("lead") as lead:
        assert lead.get(f"/api/v1/recordings/{rec}/audio", params={"purpose": "spot_check"}).status_code == 200


def test_on_the_request_page_staff_revoke_a_mailed_link_at_once(
        server: LiveServer, env: CallvaultEnv, mail: MailSink, recs: dict[str, tuple[str, bytes]],
        phone: PhoneServer) -> None:
    """The link went to the wrong person: the reviewer stops it from the request page (not only the API)."""
    from tests.api.test_auth_web import _csrf, web_sign_in

    email = "caller.wrong.mail@example.org"
    request_id = _verified_request(server, env, mail, email, CALLER_1, phone)
    link = _release(server, env, mail, request_id, [recs["in1"][0]], email, max_downloads=3, link_days=2)
    with httpx.Client(base_url=server.base_url, timeout=30, headers={"Accept": "text/html"}) as browser:
        web_sign_in(browser, env, "lead")
        page = browser.get(f"/requests/{request_id}")
        assert "Revoke every link" in page.text
        done = browser.post(f"/requests/{request_id}/revoke-links", data={"csrf_token": _csrf(page.text)})
        assert done.status_code == 303 and done.headers["location"].endswith("?done=links_revoked")
        after = browser.get(done.headers["location"])
        assert "revoked" in after.text and "Revoke every link" not in after.text
        with server.client("alice") as alice:  # not on the request team: refused, and nothing changes
            assert alice.post(f"/api/v1/subject-requests/{request_id}/revoke-links").status_code == 403
    with httpx.Client(timeout=30) as anyone:
        assert anyone.get(link).status_code == 410, "revoked from the page"
    with env.runtime.db.unit_of_work() as session:
        entries = session.scalars(select(AuditEntry).where(AuditEntry.object_id == request_id,
                                                           AuditEntry.action == "subject_request.link_revoked")).all()
    assert [e.actor for e in entries] == ["lead"]


def test_approving_a_release_needs_a_fresh_one_time_code(
        server: LiveServer, env: CallvaultEnv, mail: MailSink, recs: dict[str, tuple[str, bytes]],
        phone: PhoneServer) -> None:
    """Pen-test finding: a stolen staff token, signed in hours ago, mailed a caller's recordings to an outside
    address with no second factor. Now approving answers 403 ``step_up_required`` (as a download does) and
    releases nothing until the person confirms a fresh code on that token."""
    email = "release.stepup@example.org"
    request_id = _verified_request(server, env, mail, email, CALLER_2, phone)
    with server.client() as lead:
        lead.headers["Authorization"] = f"Bearer {server.sign_in(lead, 'lead')}"  # signed in, never stepped up
        assert lead.post(f"/api/v1/subject-requests/{request_id}/review",
                         json={"recording_ids": [recs["in2"][0]]}).status_code == 200
        refused = lead.post(f"/api/v1/subject-requests/{request_id}/approve", json={})
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"] == "step_up_required"
        assert "approving a caller's request" in refused.json()["message"]
        assert lead.get(f"/api/v1/subject-requests/{request_id}").json()["stored_status"] == "ready"
        assert not [m for m in _mails(mail, env, email) if str(m["Subject"]) == "Your call recordings"]
        server.step_up(lead, "lead")
        released = lead.post(f"/api/v1/subject-requests/{request_id}/approve", json={})
        assert released.status_code == 200, released.text
    assert [m for m in _mails(mail, env, email) if str(m["Subject"]) == "Your call recordings"]
