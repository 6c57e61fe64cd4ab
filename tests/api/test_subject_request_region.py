"""B7: a caller's request counts working days in the region of the number they rang (issue 23 point 11), but
only once the caller's number is proven theirs.

An outside tester found that the acknowledgement mailed after the *email* code named the region, its deadline
and its time zone as picked from the lines the typed-in number had called: anyone could type a stranger's
number with their own address and learn whether (and at which office) that number's calls are recorded. What
the requester is told before the number is proven now comes only from what they supplied (the number's
country) and the policy; the recorded calls refine the region after the code texted to the number is entered,
and the requester never loses time: the due date only ever moves later.

Policy B with a loopback phone provider (``tests.support.sms``). The product's clock is set to Friday 4 June
2027 08:00 UTC: Friday evening in Sydney (AU-NZ due Thursday 17 June), Friday morning in London (UK-EU-NA due
Tuesday 15 June)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest

from callvault.core.clock import FixedClock
from callvault.notify import service as notify
from tests.conftest import PERSONAS_B, POLICY_B, fresh_database
from tests.support.audio import metadata, upload, wav_bytes
from tests.support.env import CallvaultEnv, LiveServer
from tests.support.sms import PhoneDouble, PhoneServer
from tests.support.smtp import MailSink, smtp_server

UK_LINE, AU_LINE = "+442036953777", "+61281979000"
"""Policy B's recorded numbers (``recording_scope.trunk_numbers``): UK-EU-NA and AU-NZ."""
RECEIVED = datetime(2027, 6, 4, 8, 0, tzinfo=UTC)
AU_DUE, UK_DUE = date(2027, 6, 17), date(2027, 6, 15)


@pytest.fixture(scope="module")
def phone() -> Iterator[PhoneServer]:
    with PhoneServer(PhoneDouble()) as provider:
        yield provider


@pytest.fixture(scope="module")
def env_b(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          phone: PhoneServer) -> Iterator[CallvaultEnv]:
    """Policy B with ``CALLVAULT_SMS_URL`` pointing at the double: callers prove their number by a code."""
    tmp = tmp_path_factory.mktemp("region")
    with fresh_database(request.config.getoption("--db"), tmp) as url:
        environment = CallvaultEnv(tmp / "data", url, POLICY_B, personas=PERSONAS_B, extra_env=phone.env())
        yield environment
        environment.close()


@pytest.fixture(scope="module")
def mail() -> Iterator[MailSink]:
    with smtp_server() as sink:
        yield sink


@pytest.fixture(autouse=True)
def _fresh_limits(env_b: CallvaultEnv) -> None:
    with env_b.runtime.db.unit_of_work() as session:
        env_b.runtime.counters.clear_prefix(session, "subject-")


def _call(server: LiveServer, caller: str, line: str) -> None:
    """A recorded call between ``caller`` and our ``line``."""
    with server.client("admin") as admin:
        meta = metadata(agent="sam", extension="3001", team="sales", remote_number=caller, local_number=line)
        assert upload(admin, wav_bytes(0.5, seed=int(caller[-4:])), meta).status_code == 201


def _mails(mail: MailSink, env: CallvaultEnv, to: str) -> list[Any]:
    notify.send_due(env.runtime.db, mail.settings, clock=env.runtime.clock, keyring=env.runtime.keyring)
    return [r.message for r in mail.to(to)]


def _body(message: Any) -> str:
    payload = message.get_payload(decode=True)
    return payload.decode(message.get_content_charset() or "utf-8") if isinstance(payload, bytes) else str(payload)


def _acknowledged(server: LiveServer, env: CallvaultEnv, mail: MailSink, caller: str,
                  email: str) -> tuple[str, dict[str, Any], str]:
    """Submit for ``caller`` and enter the emailed code, at ``RECEIVED``: (id, the verify answer, the
    acknowledgement mail as the requester reads it: subject and body)."""
    running, env.runtime.clock = env.runtime.clock, FixedClock(RECEIVED)
    try:
        with server.client() as public:
            resp = public.post("/api/v1/subject-requests", json={"phone_numbers": [caller], "email": email})
            assert resp.status_code == 202, resp.text
            request_id: str = resp.json()["id"]
            subjects = [str(m["Subject"]) for m in _mails(mail, env, email) if "verification code" in str(m["Subject"])]
            code = re.search(r"(\d{6})", subjects[-1])
            assert code
            ok = public.post(f"/api/v1/subject-requests/{request_id}/verify", json={"code": code.group(1)})
            assert ok.status_code == 200, ok.text
        (ack,) = [m for m in _mails(mail, env, email) if str(m["Subject"]).startswith("We received")]
        return request_id, ok.json(), f"{ack['Subject']}\n{_body(ack)}"
    finally:
        env.runtime.clock = running


def _prove_phone(server: LiveServer, env: CallvaultEnv, mail: MailSink, phone: PhoneServer, request_id: str,
                 caller: str, email: str) -> tuple[dict[str, Any], list[Any]]:
    """Enter the code texted to ``caller`` (still on the day the request was received): (the answer, the mails
    the requester was sent about their due date)."""
    running, env.runtime.clock = env.runtime.clock, FixedClock(RECEIVED)
    try:
        with server.client() as public:
            resp = public.post(f"/api/v1/subject-requests/{request_id}/verify-phone",
                               json={"phone_number": caller, "code": phone.double.code_for(caller)})
            assert resp.status_code == 200, resp.text
            out: dict[str, Any] = resp.json()
        return out, [m for m in _mails(mail, env, email) if "due date" in str(m["Subject"])]
    finally:
        env.runtime.clock = running


def _staff_view(server: LiveServer, request_id: str) -> dict[str, Any]:
    with server.client("lead") as lead:
        shown = lead.get(f"/api/v1/subject-requests/{request_id}")
        assert shown.status_code == 200, shown.text
        found: dict[str, Any] = shown.json()
    return found


def test_the_acknowledgement_does_not_reveal_where_an_unproven_numbers_calls_are_recorded(
        server_b: LiveServer, env_b: CallvaultEnv, mail: MailSink) -> None:
    """The tester's attack: one US number with a recorded call on the AU line, one with none, each asked for
    with the attacker's own address. What the attacker reads is the same for both."""
    recorded, unrecorded = "+12125550147", "+12125550148"
    _call(server_b, recorded, AU_LINE)
    first_id, first, first_ack = _acknowledged(server_b, env_b, mail, recorded, "attacker.one@example.com")
    second_id, second, second_ack = _acknowledged(server_b, env_b, mail, unrecorded, "attacker.two@example.com")
    assert first["due_on"] == second["due_on"] == UK_DUE.isoformat()
    assert first["message"] == second["message"]
    assert first_ack.replace(first_id, "ID") == second_ack.replace(second_id, "ID")
    assert "region UK-EU-NA" in first_ack and "(Europe/London)" in first_ack
    assert "AU-NZ" not in first_ack and "Sydney" not in first_ack


def test_once_the_number_is_proven_the_office_it_rang_counts_and_the_requester_is_told(
        server_b: LiveServer, env_b: CallvaultEnv, mail: MailSink, phone: PhoneServer) -> None:
    """A US caller who rang the Sydney line: told UK-EU-NA (their country's number) at first; once the texted
    code proves the number, AU-NZ's later date applies, in the staff view and in a mail to the caller."""
    caller, email = "+12125550149", "honest.us@example.com"
    _call(server_b, caller, AU_LINE)
    request_id, answer, _ = _acknowledged(server_b, env_b, mail, caller, email)
    assert answer["due_on"] == UK_DUE.isoformat() and answer["phone_codes_sent"] == [caller]
    proven, (told,) = _prove_phone(server_b, env_b, mail, phone, request_id, caller, email)
    assert "Thursday 17 June 2027" in proven["message"]
    shown = _staff_view(server_b, request_id)
    assert (shown["region"], shown["timezone"], shown["due_on"]) == ("AU-NZ", "Australia/Sydney",
                                                                     AU_DUE.isoformat())
    assert AU_LINE in shown["region_basis"]
    assert "Thursday 17 June 2027" in str(told["Subject"]) + _body(told)
    assert "AU-NZ" in _body(told) and "Australia/Sydney" in _body(told)


def test_a_proven_number_never_shortens_the_deadline_the_requester_was_given(
        server_b: LiveServer, env_b: CallvaultEnv, mail: MailSink, phone: PhoneServer) -> None:
    """An Australian caller who rang the London line: told AU-NZ's Thursday 17 June at first. The policy's
    region is UK-EU-NA once the number is proven, but its Tuesday 15 June would take two days from them."""
    caller, email = "+61291234567", "honest.au@example.com"
    _call(server_b, caller, UK_LINE)
    request_id, answer, ack = _acknowledged(server_b, env_b, mail, caller, email)
    assert answer["due_on"] == AU_DUE.isoformat() and "region AU-NZ" in ack
    _, (told,) = _prove_phone(server_b, env_b, mail, phone, request_id, caller, email)
    shown = _staff_view(server_b, request_id)
    assert (shown["region"], shown["timezone"], shown["due_on"]) == ("UK-EU-NA", "Europe/London",
                                                                     AU_DUE.isoformat())
    assert UK_LINE in shown["region_basis"]
    assert "Thursday 17 June 2027" in _body(told) and "UK-EU-NA" in _body(told)


def test_with_no_proven_number_a_us_caller_is_served_by_the_number_for_their_country(
        server_b: LiveServer, env_b: CallvaultEnv, mail: MailSink) -> None:
    request_id, answer, _ = _acknowledged(server_b, env_b, mail, "+13125550199", "nocall@example.com")
    shown = _staff_view(server_b, request_id)
    assert shown["region"] == "UK-EU-NA" and answer["due_on"] == UK_DUE.isoformat()
    assert "not yet proven" in shown["region_basis"] and "US" in shown["region_basis"]


def test_on_the_web_form_the_proven_callers_page_shows_the_later_date(
        server_b: LiveServer, env_b: CallvaultEnv, mail: MailSink, phone: PhoneServer) -> None:
    """The same as the API, on the public pages: the email code's page gives the country's date, the phone
    code's page the office's later one."""
    caller, email = "+12125550150", "web.us@example.com"
    _call(server_b, caller, AU_LINE)
    running, env_b.runtime.clock = env_b.runtime.clock, FixedClock(RECEIVED)
    try:
        with server_b.client() as browser:
            sent = browser.post("/request", data={"phone_numbers": caller, "email": email})
            assert sent.status_code == 200, sent.text
            action = re.search(r'action="(/request/[0-9a-f-]+/verify)"', sent.text)
            assert action
            subjects = [str(m["Subject"]) for m in _mails(mail, env_b, email)]
            code = re.search(r"(\d{6})", next(s for s in subjects if "verification code" in s))
            assert code
            done = browser.post(action.group(1), data={"code": code.group(1)})
            assert done.status_code == 200 and "Tuesday 15 June 2027" in done.text and "17 June" not in done.text
            phone_form = re.search(r'action="(/request/[0-9a-f-]+/verify-phone)"', done.text)
            assert phone_form
            proven = browser.post(phone_form.group(1), data={"phone_number": caller,
                                                             "code": phone.double.code_for(caller)})
            assert proven.status_code == 200 and "phone number is confirmed" in proven.text
            assert "We will answer by <strong>Thursday 17 June 2027</strong>" in proven.text
    finally:
        env_b.runtime.clock = running
