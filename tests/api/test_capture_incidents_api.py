"""Issue 28, point 1 over HTTP and on the page: a compliance officer uploads the PBX's call records, sees the calls
that must have been recorded and were not, and resolves them with a note; nobody else may.

Under the FCA example policy (``recording_scope.mandatory``), loopback admitted as the test servers need. The
call records carry fixed dates; nothing here depends on today's date.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from callvault.audit.models import AuditEntry
from callvault.demo.local_policy import write_loopback_variant
from tests.conftest import fresh_database
from tests.support.env import PASSWORD, CallvaultEnv, LiveServer, Persona

FCA = Path(__file__).resolve().parents[2] / "examples" / "policies" / "policy-finance-fca.yaml"
HEADER = "call_id,start,duration,direction,caller,called,extension\n"
CDR = (HEADER + "api-missing,2026-03-02T14:00:00+00:00,180,inbound,+44 20 7946 0958,+44 20 7946 0000,4001\n"
       "api-other,2026-03-02T15:00:00Z,60,outbound,+44 20 7946 0000,+44 20 7946 0958,4001\n")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(scope="module")
def env_fca(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CallvaultEnv]:
    tmp = tmp_path_factory.mktemp("fca")
    policy = write_loopback_variant(FCA, tmp / "policy-fca.yaml")
    with fresh_database(request.config.getoption("--db"), tmp) as url:
        environment = CallvaultEnv(tmp / "data", url, policy, personas=[
            Persona("cora", "compliance"), Persona("tom", "trader", "4001", "rates")])
        yield environment
        environment.close()


@pytest.fixture(scope="module")
def live(env_fca: CallvaultEnv) -> Iterator[LiveServer]:
    server = LiveServer(env_fca)
    server.start()
    yield server
    server.stop()


def _upload(client: httpx.Client, data: str, **params: str) -> httpx.Response:
    return client.post("/api/v1/capture/reconcile", content=data.encode(), params=params,
                       headers={"Content-Type": "text/csv"})


def _denials(env: CallvaultEnv, action: str) -> list[AuditEntry]:
    with env.runtime.db.unit_of_work() as session:
        rows = list(session.scalars(select(AuditEntry).where(AuditEntry.action == action,
                                                             AuditEntry.decision == "deny")))
        session.expunge_all()
        return rows


def test_an_officer_uploads_call_records_lists_and_resolves_the_incidents(live: LiveServer,
                                                                          env_fca: CallvaultEnv) -> None:
    with live.client("cora") as cora:
        resp = _upload(cora, CDR)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["mandatory"] and body["raised"] == 2 and body["counts"] == {"missing": 2}
        assert "2 new incident(s) raised (FCA COBS 11.8.5)" in body["summary"]
        again = _upload(cora, CDR).json()
        assert again["raised"] == 0 and "0 new incident(s)" in again["summary"]

        listed = cora.get("/api/v1/capture/incidents", params={"status": "open", "kind": "missing"}).json()
        assert sorted(i["call_id"] for i in listed) == ["api-missing", "api-other"]
        assert all(i["team"] == "rates" and i["agent"] == "tom" for i in listed)
        assert "remote_number" not in listed[0]
        dated = cora.get("/api/v1/capture/incidents", params={"since": "2026-03-02T14:30:00+00:00"}).json()
        assert [i["call_id"] for i in dated] == ["api-other"]
        first = next(i for i in listed if i["call_id"] == "api-missing")

        blank = cora.post(f"/api/v1/capture/incidents/{first['id']}/resolve", json={"note": "   "})
        assert blank.status_code == 422
        done = cora.post(f"/api/v1/capture/incidents/{first['id']}/resolve",
                         json={"note": "SBC failover 14:00; order confirmed by email"})
        assert done.status_code == 200 and done.json()["status"] == "resolved"
        assert done.json()["resolved_by"] == "cora"
        twice = cora.post(f"/api/v1/capture/incidents/{first['id']}/resolve", json={"note": "again"})
        assert twice.status_code == 409
        bad_kind = cora.get("/api/v1/capture/incidents", params={"kind": "lost"})
        assert bad_kind.status_code == 422 and "kind" in bad_kind.text

    with httpx.Client(base_url=live.base_url) as local:
        metrics = local.get("/metrics").text
    assert 'callvault_capture_incidents_total{kind="missing"} 2.0' in metrics
    assert 'callvault_capture_incidents_open{kind="missing"} 1.0' in metrics


def test_malformed_call_records_are_refused_naming_line_and_field(live: LiveServer) -> None:
    bad = HEADER + "x-1,2026-03-02 14:00,180,inbound,+44 20 7946 0958,+44 20 7946 0000,4001\n"
    with live.client("cora") as cora:
        resp = _upload(cora, bad)
        unknown = _upload(cora, CDR, format="cisco")
    assert resp.status_code == 422
    problems = resp.json()["problems"]
    assert [(p["line"], p["location"]) for p in problems] == [(2, "start")]
    assert "nothing was reconciled" in resp.json()["message"]
    assert unknown.status_code == 422 and "generic, asterisk" in unknown.text


def test_a_trader_may_neither_upload_nor_list_incidents_and_is_audited(live: LiveServer,
                                                                       env_fca: CallvaultEnv) -> None:
    with live.client("tom") as tom:
        assert _upload(tom, CDR).status_code == 403
        assert tom.get("/api/v1/capture/incidents").status_code == 403
    assert [d.actor for d in _denials(env_fca, "capture.reconcile")] == ["tom"]
    assert [d.actor for d in _denials(env_fca, "capture.incidents_read")] == ["tom"]


def _web(client: httpx.Client, env: CallvaultEnv, username: str) -> None:
    form = client.get("/")
    token = CSRF.search(form.text)
    assert token
    resp = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token.group(1)})
    assert resp.status_code == 303, resp.text
    page = client.get("/mfa")
    token = CSRF.search(page.text)
    assert token
    assert client.post("/mfa", data={"code": env.otp(username), "csrf_token": token.group(1)}).status_code == 303


def test_the_incidents_page_filters_and_resolves_with_a_note(live: LiveServer, env_fca: CallvaultEnv) -> None:
    with live.client("cora") as cora:
        _upload(cora, HEADER + "web-1,2026-04-01T09:00:00+01:00,30,inbound,+44 20 7946 0958,+44 20 7946 0000,4001\n")
    with httpx.Client(base_url=live.base_url) as browser:
        _web(browser, env_fca, "cora")
        page = browser.get("/compliance/incidents", params={"kind": "missing", "since": "2026-04-01"})
        assert page.status_code == 200 and "web-1" in page.text and "FCA COBS 11.8.5" in page.text
        assert 'href="/compliance/incidents"' in page.text
        none = browser.get("/compliance/incidents", params={"kind": "gap"})
        assert "web-1" not in none.text and "No incidents match" in none.text
        bad = browser.get("/compliance/incidents", params={"since": "2026-02-31"})
        assert bad.status_code == 422 and "not a date" in bad.text
        incident_id = re.search(r'/compliance/incidents/([^/]+)/resolve', page.text)
        token = CSRF.search(page.text)
        assert incident_id and token
        done = browser.post(f"/compliance/incidents/{incident_id.group(1)}/resolve",
                            data={"note": "caller hung up during the IVR; no order placed",
                                  "csrf_token": token.group(1)})
        assert done.status_code == 303
        resolved = browser.get("/compliance/incidents", params={"status": "resolved", "kind": "missing",
                                                                "since": "2026-04-01"})
        assert "caller hung up during the IVR" in resolved.text and "resolved by cora" in resolved.text
    with httpx.Client(base_url=live.base_url) as browser:
        _web(browser, env_fca, "tom")
        refused = browser.get("/compliance/incidents")
        assert refused.status_code == 403 and "web-1" not in refused.text
