"""Policy lifecycle (B13): a new version locks content until re-acknowledged, diffs, review reminders."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlalchemy import select
from typer.testing import CliRunner, Result

from callvault.cli.main import app
from callvault.core.clock import FixedClock
from callvault.identity import service as identity
from callvault.notify import service as notify
from callvault.notify.models import OutboxMail
from callvault.oversight import policy_lifecycle
from callvault.policy import service as policy_service
from tests.api.test_auth_web import web_sign_in
from tests.conftest import POLICY_A
from tests.support.audio import metadata, upload, wav_bytes
from tests.support.env import CallvaultEnv, LiveServer
from tests.support.smtp import smtp_server

REVIEW_DUE = date(2026, 1, 1)  # policy A: effective 2024-01-01, reviewed every 24 months


def _policy_v2(**changes: str) -> str:
    text = POLICY_A.read_text(encoding="utf-8").replace('version: "2026.12"', 'version: "2027.1"')
    for old, new in changes.items():
        assert old in text
        text = text.replace(old, new)
    return text


def _load(env: CallvaultEnv, text: str) -> None:
    with env.runtime.db.unit_of_work() as session:
        policy_service.load_policy(session, text=text, source="v2.yaml", actor="test")


@pytest.fixture()
def live(isolated_env: CallvaultEnv) -> Iterator[LiveServer]:
    server = LiveServer(isolated_env)
    server.start()
    yield server
    server.stop()


def test_a_new_policy_version_locks_content_until_it_is_acknowledged(isolated_env: CallvaultEnv,
                                                                     live: LiveServer) -> None:
    with live.client("admin") as admin:
        rec_id = upload(admin, wav_bytes(1.0), metadata()).json()["id"]
    audio_url = f"/api/v1/recordings/{rec_id}/audio"
    with live.client("lead") as lead:
        assert lead.get(audio_url, params={"purpose": "spot_check"}).status_code == 200
    _load(isolated_env, _policy_v2())
    with live.client("lead") as lead:
        refused = lead.get(audio_url, params={"purpose": "spot_check"})
    assert refused.status_code == 403
    assert "acknowledge" in refused.json()["message"]
    with live.client("admin") as admin:
        pending = admin.get("/api/v1/policy/acknowledgements").json()
    assert pending["version"] == "2027.1"
    assert {"lead", "alice", "admin"} <= {p["username"] for p in pending["pending"]}
    assert next(p for p in pending["pending"] if p["username"] == "lead")["last_acknowledged_version"] == "2026.12"
    with isolated_env.runtime.db.unit_of_work() as session:
        identity.acknowledge_policy(session, user=identity.get_user(session, "lead"),
                                    policy=policy_service.current_policy(session))
    with live.client("lead") as lead:
        assert lead.get(audio_url, params={"purpose": "spot_check"}).status_code == 200


def _same_version_other_policy() -> str:
    """Another policy (its own id and title) that reuses policy A's version string, 2026.12."""
    text = POLICY_A.read_text(encoding="utf-8")
    for old, new in (("policy_id: smartsimple-support\n", "policy_id: smartsimple-support-ottawa\n"),
                     ('title: "SmartSimple Customer Support: Call Recording Policy"',
                      'title: "SmartSimple Ottawa Support: Call Recording Policy"')):
        assert old in text
        text = text.replace(old, new)
    return text


def test_another_policy_that_reuses_the_version_string_needs_its_own_acknowledgement(
        isolated_env: CallvaultEnv, live: LiveServer) -> None:
    """Issue 23 (12): an acknowledgement counts for the exact policy content it was given for (its hash),
    not for every policy that happens to carry the same version string."""
    with live.client("admin") as admin:
        rec_id = upload(admin, wav_bytes(1.0), metadata()).json()["id"]
    audio_url = f"/api/v1/recordings/{rec_id}/audio"
    with live.client("lead") as lead:
        assert lead.get(audio_url, params={"purpose": "spot_check"}).status_code == 200
    other = _same_version_other_policy()
    _load(isolated_env, other)
    with live.client("lead") as lead:
        me = lead.get("/api/v1/me").json()
        assert (me["policy_id"], me["policy_version"]) == ("smartsimple-support-ottawa", "2026.12")
        assert me["policy_acknowledged"] is False
        refused = lead.get(audio_url, params={"purpose": "spot_check"})
        assert refused.status_code == 403 and "acknowledge" in refused.json()["message"]
    with live.client() as browser:  # the pages ask for it too
        web_sign_in(browser, isolated_env, "lead")
        assert "You must acknowledge this policy" in browser.get("/").text
    with live.client("admin") as admin:
        pending = admin.get("/api/v1/policy/acknowledgements").json()
    assert "lead" in {p["username"] for p in pending["pending"]}

    with live.client("lead") as lead:
        assert lead.post("/api/v1/me/acknowledge-policy").status_code == 204
        assert lead.get(audio_url, params={"purpose": "spot_check"}).status_code == 200
    _load(isolated_env, other)  # the same content again: the acknowledgement still holds
    with live.client("lead") as lead:
        assert lead.get("/api/v1/me").json()["policy_acknowledged"] is True
        assert lead.get(audio_url, params={"purpose": "spot_check"}).status_code == 200
    with live.client("admin") as admin:
        assert "lead" not in {p["username"] for p in admin.get("/api/v1/policy/acknowledgements").json()["pending"]}


def _cli(env: CallvaultEnv, *args: str) -> Result:
    return CliRunner().invoke(app, [*args, "--data-dir", str(env.data_dir)], env=env.cli_env)


def test_policy_diff_shows_changed_rules_and_the_yaml(isolated_env: CallvaultEnv) -> None:
    _load(isolated_env, _policy_v2(**{"max_age_months: 6": "max_age_months: 5"}))
    result = _cli(isolated_env, "policy", "diff", "2026.12", "smartsimple-support@2027.1")
    assert result.exit_code == 0, result.output
    output = result.output
    assert "~ retention.max_age_months: 6 → 5" in output
    assert "~ version: '2026.12' → '2027.1'" in output
    assert "-  max_age_months: 6" in output and "+  max_age_months: 5" in output


def test_policy_diff_of_an_unknown_version_lists_the_stored_ones(isolated_env: CallvaultEnv) -> None:
    result = _cli(isolated_env, "policy", "diff", "2026.12", "1999.9")
    assert result.exit_code == 5
    assert "smartsimple-support@2026.12" in result.output


def _remind(env: CallvaultEnv, day: date) -> int:
    clock = FixedClock(datetime.combine(day, time(12), tzinfo=UTC))
    with env.runtime.db.unit_of_work() as session:
        return policy_lifecycle.send_review_reminders(session, clock=clock)


def _review_mails(env: CallvaultEnv) -> list[OutboxMail]:
    with env.runtime.db.unit_of_work() as session:
        return list(session.scalars(select(OutboxMail).where(OutboxMail.dedup_key.like("policy-review:%"))
                                    .order_by(OutboxMail.dedup_key)))


def test_administrators_are_reminded_once_when_review_is_due_and_once_when_overdue(
        isolated_env: CallvaultEnv) -> None:
    assert _remind(isolated_env, REVIEW_DUE - timedelta(days=45)) == 0
    assert _remind(isolated_env, REVIEW_DUE - timedelta(days=20)) == 2  # admin and it (both administer)
    assert _remind(isolated_env, REVIEW_DUE - timedelta(days=10)) == 0
    assert _remind(isolated_env, REVIEW_DUE + timedelta(days=3)) == 2
    mails = _review_mails(isolated_env)
    assert sorted((m.recipient_user, "overdue" in m.subject) for m in mails) == [
        ("admin", False), ("admin", True), ("it", False), ("it", True)]
    with smtp_server() as sink:
        notify.send_due(isolated_env.runtime.db, sink.settings, clock=isolated_env.runtime.clock)
        assert sorted(r.recipients[0] for r in sink.received if "Policy review" in r.message["Subject"]) == [
            "admin@localhost", "admin@localhost", "it@localhost", "it@localhost"]


def test_policy_review_command_shows_the_due_date_and_who_owes_an_acknowledgement(
        isolated_env: CallvaultEnv) -> None:
    result = _cli(isolated_env, "policy", "review")
    assert result.exit_code == 0, result.output
    assert "review due 2026-01-01" in result.output
    assert "newhire" in result.output
