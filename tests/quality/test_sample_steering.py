"""Finding (policy B, B8 with B6/B9): a reviewer steered the "random" QA sample onto a call of their choosing.

The outside tester, as a reviewer (support_lead, qa_reviewer or head_of_customer_success), sent
``POST /api/v1/quality/samples {"first_day": D-1, "last_day": D+1}`` around the call they wanted, again and
again, until it was drawn (an agent with one call in such a window is drawn with certainty), then played and
downloaded it under ``spot_check`` without the access request and approval (B6, B9) every other call needs.

What must hold instead, as a reviewer sees it: a sample covers one whole period of the policy's rule (policy
B: a calendar month in Adelaide) that has ended, a reviewer draws only the last complete one, and a period is
sampled once (a second draw is refused with 409 naming the first); a call that was not drawn stays out of
reach, and every refused draw is on the audit record. Dates come from the product's clock (the runtime's).
"""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select

from callvault.audit.models import AuditEntry
from callvault.policy import service as policy_service
from callvault.policy.schema import SamplingRule
from callvault.quality import sampling
from callvault.quality.models import QaSample
from callvault.recordings.models import Recording
from tests.api.test_auth_web import _csrf, signed_in_pages
from tests.support.audio import metadata, upload, wav_bytes
from tests.support.env import CallvaultEnv, LiveServer

SAMPLES = "/api/v1/quality/samples"
SAM = {"agent": "sam", "extension": "3001", "team": "customer_success", "local_number": "+61 2 8197 9000",
       "remote_number": "+61 2 9374 4000"}
TINA = {**SAM, "agent": "tina", "extension": "3002"}


@dataclasses.dataclass
class Calls:
    rule: SamplingRule
    last_month: dict[str, str]
    """``first_day``/``last_day`` of the last complete month in the policy's zone: what a reviewer may draw."""
    month_before: dict[str, str]
    current_month: dict[str, str]
    sams: list[str]
    """Sam's two calls of the last complete month: 5 % at least one, so one of them is drawn."""
    tinas: str
    """Tina's only call, in the month before the last: a narrow window around it would draw it for certain."""


def _days(period: sampling.Period, rule: SamplingRule) -> dict[str, str]:
    zone = ZoneInfo(rule.timezone)
    first = period.start.astimezone(zone).date()
    last = (period.end.astimezone(zone) - timedelta(days=1)).date()
    return {"first_day": first.isoformat(), "last_day": last.isoformat()}


def _local_day(env: CallvaultEnv, rec: str, rule: SamplingRule) -> date:
    with env.runtime.db.unit_of_work() as session:
        started: datetime = session.scalars(
            select(Recording.started_at).where(Recording.id == rec)).one()
    return started.astimezone(ZoneInfo(rule.timezone)).date()


def _upload(server: LiveServer, seed: int, started: datetime, who: dict[str, str]) -> str:
    with server.client("admin") as admin:
        resp = upload(admin, wav_bytes(0.5, seed=seed), metadata(started=started, **who))
    assert resp.status_code == 201, resp.text
    rec: str = resp.json()["id"]
    return rec


@pytest.fixture(scope="module")
def calls(server_b: LiveServer, env_b: CallvaultEnv) -> Calls:
    with env_b.runtime.db.unit_of_work() as session:
        rules = policy_service.current_policy(session, clock=env_b.runtime.clock).quality_review
    assert rules is not None and rules.sampling.period == "month"
    rule = rules.sampling
    now = env_b.runtime.clock.now()
    last = sampling.previous_period(now, rule)
    before = sampling.previous_period(last.start, rule)
    sams = [_upload(server_b, 800 + i, last.start + timedelta(days=1, hours=i), SAM) for i in (1, 2)]
    tinas = _upload(server_b, 810, before.start + timedelta(days=10, hours=3), TINA)
    return Calls(rule=rule, last_month=_days(last, rule), month_before=_days(before, rule),
                 current_month=_days(sampling.period_containing(now, rule), rule), sams=sams, tinas=tinas)


@pytest.fixture(scope="module")
def first_sample(server_b: LiveServer, calls: Calls) -> dict[str, Any]:
    """The last complete month, drawn once by a team leader (as the "Draw now" button or the worker would)."""
    with server_b.client("lead") as lead:
        resp = lead.post(SAMPLES, json=calls.last_month)
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    assert len(set(body["selected"]) & set(calls.sams)) == 1  # 5 % of two calls, at least one
    return body


def _audio(client: httpx.Client, rec: str, purpose: str, *, download: bool = False) -> httpx.Response:
    return client.get(f"/api/v1/recordings/{rec}/audio", params={"purpose": purpose, "download": download})


def _assert_out_of_reach(server: LiveServer, who: str, rec: str) -> None:
    """Neither played nor downloaded as a spot check, and an investigation still needs its approval (B9)."""
    with server.client(who) as client:
        server.step_up(client, who)
        queued = [i["recording_id"] for i in client.get("/api/v1/quality/queue", params={"state": "all"}).json()]
        play = _audio(client, rec, "spot_check")
        download = _audio(client, rec, "spot_check", download=True)
        investigation = _audio(client, rec, "complaint_investigation")
    assert rec not in queued
    for refused in (play, download):
        assert refused.status_code == 403, refused.text
        assert "QA sample" in refused.json()["message"] and "access request" in refused.json()["message"]
    assert investigation.status_code == 403, investigation.text
    if who != "qa":  # a QA reviewer may not name an investigation at all; the others need its approval first
        assert "approv" in investigation.json()["message"], investigation.text


def _refused_draws(env: CallvaultEnv, actor: str) -> list[AuditEntry]:
    with env.runtime.db.unit_of_work() as session:
        entries = list(session.scalars(select(AuditEntry).where(
            AuditEntry.actor == actor, AuditEntry.action == "quality.sample", AuditEntry.decision == "deny")))
        for entry in entries:
            session.expunge(entry)
    return entries


def _samples(env: CallvaultEnv) -> int:
    with env.runtime.db.unit_of_work() as session:
        return len(session.scalars(select(QaSample.id)).all())


def test_drawing_again_until_the_wanted_call_comes_up_is_refused_with_409_naming_the_first_sample(
    server_b: LiveServer, env_b: CallvaultEnv, calls: Calls, first_sample: dict[str, Any],
) -> None:
    [target] = [c for c in calls.sams if c not in first_sample["selected"]]  # the call the reviewer wants
    day = _local_day(env_b, target, calls.rule)
    around = {"first_day": (day - timedelta(days=1)).isoformat(), "last_day": (day + timedelta(days=1)).isoformat()}
    with server_b.client("qa") as qa:
        answers = []
        for _ in range(10):  # the tester's loop: draw again until the target is in
            for body in (calls.last_month, {}, around):
                answers.append(qa.post(SAMPLES, json=body))
    assert not [a for a in answers if a.status_code == 201 or target in a.text]
    redraws = [a for a in answers if a.status_code == 409]
    assert len(redraws) == 20
    for refused in redraws:
        message = refused.json()["message"]
        assert first_sample["id"] in message and "already" in message and "once" in message, message
        assert "B8" in refused.json()["clauses"]
    windows = [a for a in answers if a.status_code == 422]
    assert len(windows) == 10 and all("whole month" in a.json()["message"] for a in windows)
    assert _samples(env_b) == 1
    _assert_out_of_reach(server_b, "qa", target)
    on_record = _refused_draws(env_b, "qa")
    assert len(on_record) == 30
    assert sum(first_sample["id"] in e.reason for e in on_record) == 20 and all("B8" in e.clauses for e in on_record)


@pytest.mark.parametrize("who", ["lead", "qa", "head"])
def test_a_narrow_window_around_one_call_is_refused_and_the_call_stays_out_of_reach(
    server_b: LiveServer, env_b: CallvaultEnv, calls: Calls, first_sample: dict[str, Any], who: str,
) -> None:
    day = _local_day(env_b, calls.tinas, calls.rule)
    windows = [{"first_day": (day - timedelta(days=1)).isoformat(), "last_day": (day + timedelta(days=1)).isoformat()},
               {"first_day": day.isoformat(), "last_day": day.isoformat()},
               {"first_day": day.isoformat()}]
    with server_b.client(who) as client:
        narrow = [client.post(SAMPLES, json=w) for w in windows]
        whole_but_earlier = client.post(SAMPLES, json=calls.month_before)
    for resp in narrow:
        assert resp.status_code == 422, resp.text
        assert "whole month" in resp.json()["message"]
        assert calls.month_before["first_day"] in resp.json()["message"]  # it says which days would do
    # That month is whole and over, but not the last one: an unsampled earlier month is not a reviewer's to pick.
    assert whole_but_earlier.status_code == 422, whole_but_earlier.text
    assert "last complete month" in whole_but_earlier.json()["message"]
    assert calls.last_month["first_day"] in whole_but_earlier.json()["message"]
    assert _samples(env_b) == 1
    _assert_out_of_reach(server_b, who, calls.tinas)


def test_a_month_that_has_not_ended_cannot_be_sampled(
    server_b: LiveServer, env_b: CallvaultEnv, calls: Calls, first_sample: dict[str, Any],
) -> None:
    with server_b.client("head") as head:
        resp = head.post(SAMPLES, json=calls.current_month)
    assert resp.status_code == 422 and "not ended" in resp.json()["message"], resp.text
    assert _samples(env_b) == 1


def test_the_draw_now_button_says_the_month_was_already_sampled(
    server_b: LiveServer, env_b: CallvaultEnv, calls: Calls, first_sample: dict[str, Any],
) -> None:
    with signed_in_pages(server_b, env_b, ["qa"]) as pages:
        page = pages["qa"].get("/quality")
        resp = pages["qa"].post("/quality/sample", data={"csrf_token": _csrf(page.text)}, follow_redirects=True)
    assert resp.status_code == 200
    assert f"The last period was already sampled (sample {first_sample['id']})" in resp.text
    assert _samples(env_b) == 1
