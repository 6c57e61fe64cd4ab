"""The audit tamper alarm in a real browser (Debian's chromium via Playwright): a banner on every page for
the roles that answer for the log while it is raised, and the page where an administrator acknowledges it
(before, only ``callvault audit acknowledge-alarm`` could). Issue 24 point 8, follow-up.

Set ``CALLVAULT_SCREENSHOTS=docs/screenshots`` to refresh ``audit-alarm.png`` in docs/web.md.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from callvault.audit import service as audit
from callvault.audit.alarm import AuditTampered
from callvault.audit.jobs import checkpoint as checkpoint_job
from callvault.audit.models import AuditAlarm, AuditEntry
from tests.integration.test_integrity import _disable_append_only
from tests.support.browser import new_page, require_browser, sign_in
from tests.support.env import CallvaultEnv, LiveServer

require_browser()

SHOTS = os.environ.get("CALLVAULT_SCREENSHOTS")


def _raise_the_alarm(env: CallvaultEnv) -> int:
    """What the outside tester did: a checkpoint, more entries, one row deleted by a database superuser,
    then the worker's next checkpoint, which refuses to sign and raises the alarm. Returns the row's seq."""
    rt = env.runtime
    with rt.db.unit_of_work() as session:
        for i in range(4):
            audit.append(session, audit.AuditEvent(actor="lead", action="test.event", details={"i": i}), clock=rt.clock)
    assert checkpoint_job(rt) == 1
    with rt.db.unit_of_work() as session:
        for i in range(3):
            audit.append(session, audit.AuditEvent(actor="lead", action="test.event", details={"i": i}), clock=rt.clock)
        seq = int(session.scalar(select(func.max(AuditEntry.seq))) or 0) - 1
        _disable_append_only(env, session)
        session.execute(text("DELETE FROM audit_entries WHERE seq = :seq"), {"seq": seq})
    with pytest.raises(AuditTampered):
        checkpoint_job(rt)
    return seq


def _entries(env: CallvaultEnv, action: str) -> list[AuditEntry]:
    with env.runtime.db.unit_of_work() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)))


def _forge_post(page: Any, reason: str) -> None:
    """Submit the acknowledgement form from a page that does not offer it (the session's own CSRF token,
    taken from the sign-out form): what an insider without the role would try."""
    page.evaluate("""(reason) => {
        const form = document.createElement('form');
        form.method = 'post';
        form.action = '/admin/audit/alarm';
        for (const [name, value] of [['csrf_token', document.querySelector('input[name=csrf_token]').value],
                                     ['reason', reason]]) {
            const input = document.createElement('input');
            input.type = 'hidden'; input.name = name; input.value = value;
            form.appendChild(input);
        }
        document.body.appendChild(form);
        form.submit();
    }""", reason)


def test_an_administrator_acknowledges_the_tamper_alarm_from_its_banner_and_others_are_refused(
        browser: Any, server: LiveServer, env: CallvaultEnv, tmp_path: Path) -> None:
    shots = Path(SHOTS) if SHOTS else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    seq = _raise_the_alarm(env)

    # The executive receives misuse reports (B12) and the alarm mail: sees the banner, may not acknowledge.
    exec_page = new_page(browser, server.base_url, timeout_ms=10_000)
    sign_in(exec_page, env, "exec")
    exec_page.goto("/")
    banner = exec_page.locator("#audit-alarm")
    said = banner.inner_text()
    assert f"entry #{seq} is missing" in said and "An administrator acknowledges it" in said
    assert banner.get_by_role("link").count() == 0
    assert exec_page.goto("/admin/audit/alarm").status == 403
    exec_page.goto("/")
    with exec_page.expect_navigation() as refused:
        _forge_post(exec_page, "nothing to see here, closing it")
    assert refused.value.status == 403
    assert "only an administrator acknowledges an audit alarm" in exec_page.get_by_role("main").inner_text()
    [denied] = _entries(env, "audit.alarm_acknowledged")
    assert (denied.actor, denied.decision) == ("exec", "deny")
    assert [e.actor for e in _entries(env, "admin.audit_alarm") if e.decision == "deny"] == ["exec"]

    # The administrator: the banner on every page, the page behind it, a reason, and the banner is gone.
    page = new_page(browser, server.base_url, timeout_ms=10_000)
    sign_in(page, env, "admin")
    page.goto("/admin/users")
    banner = page.locator("#audit-alarm")
    text_seen = banner.inner_text()
    assert "tamper alarm" in text_seen and f"entry #{seq} is missing" in text_seen
    assert re.search(r"checking entries #\d+\.\.#\d+ before signing", text_seen), text_seen  # which range
    banner.get_by_role("link", name="Review and acknowledge").click()
    page.wait_for_url("**/admin/audit/alarm")
    assert page.get_by_role("heading", name="Audit tamper alarm").is_visible()
    page.screenshot(path=str(shots / "audit-alarm.png"), full_page=True)
    reason = f"entry #{seq} deleted by a DBA test on staging; restored from backup, ticket SEC-42"
    page.get_by_label("What was found and done").fill(reason)
    page.get_by_role("button", name="Acknowledge").click()
    page.wait_for_url("**/admin/audit/alarm?done=acknowledged")
    assert page.locator("#alarm-done").is_visible() and page.locator("#no-alarm").is_visible()
    assert page.locator("#audit-alarm").count() == 0
    page.goto("/")
    assert page.locator("#audit-alarm").count() == 0
    exec_page.goto("/")
    assert exec_page.locator("#audit-alarm").count() == 0

    allowed = [e for e in _entries(env, "audit.alarm_acknowledged") if e.decision == "info"]
    assert [(e.actor, e.reason) for e in allowed] == [("admin", reason)]
    with env.runtime.db.unit_of_work() as session:
        alarm = session.scalars(select(AuditAlarm)).one()
        assert (alarm.acknowledged_by, alarm.ack_reason, alarm.rebase_seq) == ("admin", reason, None)
