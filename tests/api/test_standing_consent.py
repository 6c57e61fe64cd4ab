"""Standing consent evidence (issue 25 point 9; A5, A14, B2): a route the policy vouches for.

The suite's policy A declares ``consent.standing_evidence`` ``support_line_ivr``: every inbound call to
+1 613 555 0150 passes the IVR playing prompt version 1 for 12 seconds. Uploads here carry no consent
evidence of their own, as a PBX export from a site whose SBC sends none would.
"""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import select

from callvault.oversight import reports
from callvault.recordings.models import Recording
from tests.api.test_auth_web import web_sign_in
from tests.support.audio import CALL_START, metadata, upload, wav_bytes
from tests.support.env import CallvaultEnv, LiveServer

COVERED = "+1 613 555 0150"
UNCOVERED = "+1 416 591 1668"


def _call(seconds: float, *, local: str, consent: dict[str, str] | None = None) -> dict[str, object]:
    meta = metadata(local_number=local, ended_at=(CALL_START + timedelta(seconds=seconds)).isoformat())
    if consent is None:
        meta.pop("consent")
    else:
        meta["consent"] = consent
    return meta


def _row(env: CallvaultEnv, rec_id: str) -> Recording:
    with env.runtime.db.unit_of_work() as session:
        row = session.get(Recording, rec_id)
        assert row is not None
        session.expunge(row)
        return row


def test_a_call_on_a_covered_number_is_playable_with_the_standing_rule_as_its_evidence(
        server: LiveServer, env: CallvaultEnv) -> None:
    with server.client("admin") as admin:
        resp = upload(admin, wav_bytes(15.0, seed=301), _call(15.0, local=COVERED))
    assert resp.status_code == 201, resp.text
    body = resp.json()
    row = _row(env, body["id"])
    assert not row.quarantined and row.consent_state == "announcement"
    assert row.consent_source == "standing_rule"
    assert row.consent["rule"] == "support_line_ivr" and row.consent["announcement_version"] == "1"
    assert row.consent["policy"].startswith("smartsimple-support@") and len(row.consent["policy_sha256"]) == 64
    assert row.consent["announcement_ended_at"].startswith((CALL_START + timedelta(seconds=12)).isoformat()[:19])
    # A14 as for a reported announcement: the 12 s the caller spent in the IVR are not kept.
    assert abs(row.duration_seconds - 3.0) < 0.05
    with server.client("lead") as lead:
        play = lead.get(f"/api/v1/recordings/{body['id']}/audio", params={"purpose": "spot_check"})
        assert play.status_code == 200
        shown = lead.get(f"/api/v1/recordings/{body['id']}").json()
    assert shown["consent_source"] == "standing_rule"
    with httpx.Client(base_url=server.base_url, timeout=30) as browser:
        web_sign_in(browser, env, "lead")
        page = browser.get(f"/recordings/{body['id']}")
    assert page.status_code == 200
    assert "standing rule <code>support_line_ivr</code>" in page.text


def test_a_covered_call_that_ends_during_the_announcement_keeps_nothing(server: LiveServer,
                                                                       env: CallvaultEnv) -> None:
    meta = _call(8.0, local=COVERED)
    with server.client("admin") as admin:
        resp = upload(admin, wav_bytes(8.0, seed=302), meta)
    assert resp.status_code == 422, resp.text
    assert "announcement" in resp.text
    with env.runtime.db.unit_of_work() as session:
        assert session.scalars(select(Recording).where(Recording.call_id == meta["call_id"])).first() is None


def test_evidence_the_call_reports_wins_over_the_standing_rule(server: LiveServer, env: CallvaultEnv) -> None:
    consent = {"announcement_played_at": CALL_START.isoformat(), "announcement_version": "1"}
    with server.client("admin") as admin:
        resp = upload(admin, wav_bytes(15.0, seed=303), _call(15.0, local=COVERED, consent=consent))
    assert resp.status_code == 201, resp.text
    row = _row(env, resp.json()["id"])
    assert row.consent_source == "metadata" and "rule" not in row.consent and not row.quarantined
    assert abs(row.duration_seconds - 15.0) < 0.05  # no announcement end reported: nothing cut


def test_a_call_no_rule_covers_stays_quarantined_with_the_reason(server: LiveServer, env: CallvaultEnv) -> None:
    with server.client("admin") as admin:
        resp = upload(admin, wav_bytes(15.0, seed=304), _call(15.0, local=UNCOVERED))
    assert resp.status_code == 201, resp.text
    row = _row(env, resp.json()["id"])
    assert row.quarantined and row.consent_source == "none"
    assert "no consent.standing_evidence rule covers inbound calls to +14165911668" in (row.quarantine_reason or "")
    with server.client("lead") as lead:
        assert lead.get(f"/api/v1/recordings/{row.id}/audio", params={"purpose": "spot_check"}).status_code == 404


def test_metadata_cannot_claim_a_standing_rule_itself(server: LiveServer) -> None:
    consent = {"announcement_played_at": CALL_START.isoformat(), "source": "standing_rule",
               "rule": "support_line_ivr"}
    with server.client("admin") as admin:
        resp = upload(admin, wav_bytes(15.0, seed=305), _call(15.0, local=UNCOVERED, consent=consent))
    assert resp.status_code == 422
    assert "consent.source" in resp.text and "consent.rule" in resp.text


def _report(env: CallvaultEnv) -> reports.ComplianceReport:
    with env.runtime.db.unit_of_work() as session:
        return reports.build_report(session, start=CALL_START - timedelta(hours=1), end=CALL_START + timedelta(hours=1))


def test_the_compliance_report_counts_recordings_by_evidence_source(server: LiveServer, env: CallvaultEnv) -> None:
    before = _report(env).by_consent_source  # the server is shared: other tests' calls count too
    with server.client("admin") as admin:
        for seed, local in ((311, COVERED), (312, COVERED), (313, UNCOVERED)):
            assert upload(admin, wav_bytes(15.0, seed=seed), _call(15.0, local=local)).status_code == 201
        reported = {"announcement_played_at": CALL_START.isoformat(), "announcement_version": "1"}
        assert upload(admin, wav_bytes(15.0, seed=314),
                      _call(15.0, local=UNCOVERED, consent=reported)).status_code == 201
    data = _report(env)
    assert data.by_consent_source - before == {("inbound", "standing_rule"): 2, ("inbound", "none"): 1,
                                               ("inbound", "metadata"): 1}
    standing = data.by_consent_source[("inbound", "standing_rule")]
    assert f"consent_evidence,,inbound,,,,,,,source: standing_rule,,{standing}" in reports.to_csv(data)
    assert f"<td>standing_rule</td><td>{standing}</td>" in reports.to_html(data)
