"""The acknowledgement form of the audit tamper alarm (/admin/audit/alarm) given bad or stale input: a
clear 4xx page naming what is wrong, the alarm still raised, never a 500. The browser test
(tests/web/test_audit_alarm_page.py) follows the whole story; these are the edges."""

from __future__ import annotations

import re

from sqlalchemy import select

from callvault.audit.alarm import AuditTampered, raise_alarm
from callvault.audit.models import AuditAlarm
from tests.api.test_auth_web import web_sign_in
from tests.support.env import CallvaultEnv, LiveServer


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html[:500]
    return match[1]


def _open(env: CallvaultEnv) -> bool:
    with env.runtime.db.unit_of_work() as session:
        return session.scalar(select(AuditAlarm).where(AuditAlarm.acknowledged_at.is_(None))) is not None


def test_the_acknowledgement_needs_a_reason_a_fresh_form_and_a_raised_alarm(server: LiveServer,
                                                                            env: CallvaultEnv) -> None:
    raise_alarm(env.runtime.db, AuditTampered("audit log tampered: entry #3 is missing", first_bad_seq=3),
                actor="worker", mail_domain="example.test", clock=env.runtime.clock)
    with server.client() as browser:
        web_sign_in(browser, env, "admin")
        page = browser.get("/admin/audit/alarm")
        assert page.status_code == 200 and "entry #3 is missing" in page.text
        token = _csrf(page.text)

        short = browser.post("/admin/audit/alarm", data={"csrf_token": token, "reason": "ok"})
        assert short.status_code == 422 and "at least 10 characters" in short.text and _open(env)

        stale = browser.post("/admin/audit/alarm", data={"csrf_token": "not-the-form", "reason": "x" * 20})
        assert stale.status_code == 403 and "The form expired" in stale.text and _open(env)

        done = browser.post("/admin/audit/alarm", data={"csrf_token": token, "reason": "investigated: test data"})
        assert done.status_code == 303 and not _open(env)

        again = browser.post("/admin/audit/alarm", data={"csrf_token": token, "reason": "investigated: test data"})
        assert again.status_code == 409 and "no audit alarm is raised" in again.text
