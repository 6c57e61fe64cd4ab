"""Employees' consent for training use (A6) and the administrators' view of who acknowledged the policy."""

from __future__ import annotations

from sqlalchemy import select
from typer.testing import CliRunner

from callvault.audit.models import AuditEntry
from callvault.cli.main import app as cli_app
from tests.support.audio import metadata, upload, wav_bytes
from tests.support.env import CallvaultEnv, LiveServer


def _last_decision(env: CallvaultEnv, rec_id: str) -> AuditEntry:
    with env.runtime.db.unit_of_work() as session:
        return session.scalars(select(AuditEntry).where(AuditEntry.object_id == rec_id)
                               .order_by(AuditEntry.seq.desc()).limit(1)).one()


def test_training_use_needs_the_recorded_employees_consent_which_they_can_withdraw(
        server: LiveServer, env: CallvaultEnv) -> None:
    with server.client("admin") as admin:
        rec_id = upload(admin, wav_bytes(0.5, seed=90), metadata()).json()["id"]  # alice's call
    with server.client("lead") as lead, server.client("alice") as alice:
        before = lead.get(f"/api/v1/recordings/{rec_id}/audio", params={"purpose": "training"})
        assert before.status_code == 403 and "consent" in before.json()["message"]
        assert "A6" in before.json()["clauses"]
        assert alice.post("/api/v1/me/consents", json={"purpose": "training"}).status_code == 201
        assert [c["purpose"] for c in alice.get("/api/v1/me/consents").json()] == ["training"]
        after = lead.get(f"/api/v1/recordings/{rec_id}/audio", params={"purpose": "training"})
        # Allowed by the policy, but only as an anonymised copy: never the original audio. None exists
        # yet, so the person is refused, and the audit log says so (issue 23, A4).
        assert after.status_code == 403 and "anonymised" in after.json()["message"]
        assert _last_decision(env, rec_id).decision == "deny"
        assert _last_decision(env, rec_id).reason == after.json()["message"]
        assert alice.delete("/api/v1/me/consents/training").status_code == 204
        lead.get(f"/api/v1/recordings/{rec_id}/audio", params={"purpose": "training"})
        assert _last_decision(env, rec_id).decision == "deny"
        assert alice.delete("/api/v1/me/consents/training").status_code == 404
        bad = alice.post("/api/v1/me/consents", json={"purpose": "gossip"})
        assert bad.status_code == 422 and bad.json()["problems"][0]["location"] == "purpose"
    with env.runtime.db.unit_of_work() as session:
        kinds = [e.action for e in session.scalars(select(AuditEntry).where(AuditEntry.actor == "alice"))]
    assert "consent.given" in kinds and "consent.revoked" in kinds


def test_administrators_see_who_has_not_acknowledged_the_policy(server: LiveServer, env: CallvaultEnv) -> None:
    with server.client("admin") as admin, server.client("lead") as lead:
        users = {u["username"]: u for u in admin.get("/api/v1/users").json()}
        assert lead.get("/api/v1/users").status_code == 403
    assert users["newhire"]["policy_acknowledged"] is False
    assert users["alice"]["policy_acknowledged"] is True and users["alice"]["mfa_enrolled"] is True
    result = CliRunner().invoke(cli_app, ["users", "list", "--json", "--data-dir", str(env.data_dir)],
                                env=env.cli_env)
    assert result.exit_code == 0, result.output
    assert '"username": "newhire"' in result.stdout


def test_consents_can_be_recorded_from_the_cli(env: CallvaultEnv) -> None:
    args = ["--data-dir", str(env.data_dir)]
    runner = CliRunner()
    assert runner.invoke(cli_app, ["consents", "add", "bob", "training", *args], env=env.cli_env).exit_code == 0
    listed = runner.invoke(cli_app, ["consents", "list", "bob", *args], env=env.cli_env)
    assert "training" in listed.stdout
    assert runner.invoke(cli_app, ["consents", "revoke", "bob", "training", *args], env=env.cli_env).exit_code == 0
    assert runner.invoke(cli_app, ["consents", "add", "bob", "gossip", *args], env=env.cli_env).exit_code == 2
