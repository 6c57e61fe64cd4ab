"""Operations: Prometheus metrics (restricted, no personal data), liveness/readiness, request ids,
JSON logs from a real `callvault serve`, and `callvault config show` with secrets redacted."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from callvault.cli.main import app as cli_app
from tests.api.test_auth_network import _load_variant, _trust_loopback_proxy
from tests.support.audio import metadata, upload, wav_bytes
from tests.support.env import CallvaultEnv, LiveServer, wait_until_serving

CALLVAULT = str(Path(sys.executable).parent / "callvault")


def _metric(body: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+-]+)$", body, re.MULTILINE)
    assert match, f"{name}{labels} not in metrics"
    return float(match.group(1))


def test_metrics_count_ingests_and_time_requests_by_route_template(server: LiveServer, env: CallvaultEnv) -> None:
    with server.client() as local:
        before = local.get("/metrics")
        assert before.status_code == 200 and before.headers["content-type"].startswith("text/plain")
    ingested = _metric(before.text, "callvault_recordings_ingested_total")
    with server.client("admin") as admin:
        resp = upload(admin, wav_bytes(1.0), metadata())
        assert resp.status_code == 201, resp.text
        recording_id = resp.json()["id"]
    with server.client("lead") as lead:
        assert lead.get(f"/api/v1/recordings/{recording_id}").status_code == 200
    with server.client() as local:
        after = local.get("/metrics").text
    assert _metric(after, "callvault_recordings_ingested_total") == ingested + 1
    assert _metric(after, "callvault_database_up") == 1
    assert _metric(after, "callvault_queue_depth", '{queue="mail_outbox"}') >= 0
    assert _metric(after, "callvault_retention_due_recordings") >= 0
    route = '{method="GET",route="/api/v1/recordings/{recording_id}",status="2xx"}'
    assert _metric(after, "callvault_http_requests_total", route) >= 1
    assert 'callvault_http_request_duration_seconds_bucket{le="0.2",method="GET",' \
           'route="/api/v1/recordings/{recording_id}"}' in after
    # No ids, names or numbers in any label value.
    label_values = re.findall(r'="([^"]*)"', after)
    assert label_values
    for personal in (recording_id, "alice", "lead", "2001", "+1"):
        assert not [v for v in label_values if personal in v], personal


def test_metrics_need_loopback_or_the_token(server: LiveServer, env: CallvaultEnv) -> None:
    env.runtime.settings = dataclasses.replace(env.runtime.settings, metrics_token="scrape-secret-123")
    try:
        with server.client() as relayed:
            # Relayed by a local proxy (X-Forwarded-For) is not "from loopback": it may come from anywhere
            # inside the allow-list.
            relayed.headers["X-Forwarded-For"] = "10.20.3.4"
            assert relayed.get("/metrics").status_code == 403
            assert relayed.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 403
            ok = relayed.get("/metrics", headers={"Authorization": "Bearer scrape-secret-123"})
            assert ok.status_code == 200 and "callvault_recordings" in ok.text
    finally:
        env.runtime.settings = dataclasses.replace(env.runtime.settings, metrics_token=None)


def test_request_ids_are_echoed_when_sane_and_made_up_otherwise(server: LiveServer) -> None:
    with server.client() as client:
        assert client.get("/healthz", headers={"X-Request-ID": "lb-7f3a9c21"}).headers["x-request-id"] == "lb-7f3a9c21"
        made = client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"}).headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", made)
        assert re.fullmatch(r"[0-9a-f]{32}", client.get("/").headers["x-request-id"])


def test_a_request_the_network_guard_refuses_still_gets_its_id_and_metrics_stay_behind_the_guard(
        live: LiveServer) -> None:
    _trust_loopback_proxy(live.env)
    _load_variant(live.env, "net-ops", {"allow": ["10.20.0.0/16"]})
    with live.client() as outsider:
        outsider.headers["X-Forwarded-For"] = "198.51.100.7"
        refused = outsider.get("/api/v1/me", headers={"X-Request-ID": "denied-0001"})
        assert refused.status_code == 403 and refused.headers["x-request-id"] == "denied-0001"
        assert outsider.get("/metrics").status_code == 403
        assert outsider.get("/readyz").status_code == 200  # for the load balancer, from anywhere


def test_liveness_and_readiness(server: LiveServer) -> None:
    with server.client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "checks": {"database": "ok", "migrations": "ok", "keys": "ok",
                                                                  "audit": "ok"}}


def test_readiness_fails_on_an_old_schema_and_on_unreadable_keys(live: LiveServer,
                                                                 isolated_env: CallvaultEnv) -> None:
    with isolated_env.runtime.db.unit_of_work() as session:
        session.execute(text("UPDATE alembic_version SET version_num = '0009'"))
    with live.client() as client:
        resp = client.get("/readyz")
        assert resp.status_code == 503
        assert "run `callvault migrate`" in resp.json()["checks"]["migrations"]
        assert client.get("/healthz").status_code == 200  # alive all the same: do not restart it
    with isolated_env.runtime.db.unit_of_work() as session:
        session.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": _head()})
    key_dir = isolated_env.settings.key_dir
    shutil.move(key_dir, key_dir.with_name("keys-away"))
    try:
        with live.client() as client:
            resp = client.get("/readyz")
        assert resp.status_code == 503 and resp.json()["checks"]["keys"].startswith("unreadable")
        assert resp.json()["checks"]["migrations"] == "ok"
    finally:
        shutil.move(key_dir.with_name("keys-away"), key_dir)


def _head() -> str:
    from alembic.script import ScriptDirectory

    from callvault.core.migrate import alembic_config

    (head,) = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    return str(head)


def test_siprec_capture_counters_come_from_fresh_stats_files(isolated_env: CallvaultEnv, tmp_path: Path) -> None:
    now = time.time()
    (tmp_path / "siprec.json.0").write_text(json.dumps({"active_calls": 3, "packets": 1000, "lost": 7,
                                                        "refused": 1, "time": now}))
    (tmp_path / "siprec.json.1").write_text(json.dumps({"active_calls": 2, "packets": 500, "lost": 3, "time": now}))
    (tmp_path / "siprec.json.2").write_text(json.dumps({"active_calls": 9, "packets": 1, "time": now - 3600}))
    isolated_env.runtime.settings = dataclasses.replace(isolated_env.settings,
                                                        siprec_stats=str(tmp_path / "siprec.json.*"))
    live = LiveServer(isolated_env)
    live.start()
    try:
        with live.client() as client:
            body = client.get("/metrics").text
    finally:
        live.stop()
    assert _metric(body, "callvault_capture_calls_active") == 5  # the stale process is not counted
    assert _metric(body, "callvault_capture_rtp_packets_lost_total") == 10
    assert _metric(body, "callvault_capture_rtp_packets_total") == 1500


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_writes_json_logs_carrying_the_request_id(env: CallvaultEnv, tmp_path: Path) -> None:
    port = _free_port()
    log_path = tmp_path / "serve.log"
    child_env = {**os.environ, **env.cli_env, "CALLVAULT_JSON_LOGS": "1", "PYTHONPATH": str(Path.cwd())}
    with log_path.open("wb") as log:
        process = subprocess.Popen([CALLVAULT, "serve", "--no-workers", "--port", str(port), "--data-dir",
                                    str(env.data_dir)],
                                   env=child_env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        wait_until_serving(f"http://127.0.0.1:{port}", process, log=log_path)
        resp = httpx.get(f"http://127.0.0.1:{port}/api/v1/me", headers={"X-Request-ID": "trace-42-abcdef"})
        assert resp.status_code == 401 and resp.headers["x-request-id"] == "trace-42-abcdef"
    finally:
        process.terminate()
        process.wait(timeout=30)
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    assert records, log_path.read_text()[-2000:]
    mine = [r for r in records if r.get("request_id") == "trace-42-abcdef"]
    assert mine and mine[-1]["route"] == "/api/v1/me" and mine[-1]["status"] == 401
    assert {"time", "level", "logger", "message"} <= set(mine[-1])
    assert all(line.startswith("{") for line in log_path.read_text().splitlines() if line.strip()), \
        "every log line (stderr) is JSON: " + log_path.read_text()[-2000:]


def test_config_show_redacts_secrets_and_names_sources(env: CallvaultEnv, tmp_path: Path) -> None:
    secret_file = tmp_path / "oidc-secret"
    secret_file.write_text("very-secret-client-value\n")
    config = env.data_dir / "config.toml"
    original = config.read_text() if config.exists() else ""
    config.write_text(original + "\ntoken_ttl_seconds = 7200\n")
    try:
        _check_config_show(env, secret_file)
    finally:
        config.write_text(original)


def _check_config_show(env: CallvaultEnv, secret_file: Path) -> None:
    cli_env = {**env.cli_env, "CALLVAULT_OIDC_ISSUER": "https://idp.example.com", "CALLVAULT_OIDC_CLIENT_ID": "cv",
               "CALLVAULT_OIDC_CLIENT_SECRET_FILE": str(secret_file), "CALLVAULT_METRICS_TOKEN": "metrics-token-xyz",
               "CALLVAULT_DATABASE_URL": "postgresql://cv:db-password-123@127.0.0.1/cv"}
    result = CliRunner().invoke(cli_app, ["config", "show", "--json", "--data-dir", str(env.data_dir)], env=cli_env)
    assert result.exit_code == 0, result.stdout
    for secret in ("very-secret-client-value", "metrics-token-xyz", "db-password-123"):
        assert secret not in result.stdout
    shown = {row["name"]: row for row in json.loads(result.stdout)}
    assert shown["CALLVAULT_OIDC_CLIENT_SECRET"]["value"] == "(set, redacted)"
    assert shown["CALLVAULT_OIDC_CLIENT_SECRET"]["source"] == f"file {secret_file}"
    assert shown["CALLVAULT_DATABASE_URL"] == {"name": "CALLVAULT_DATABASE_URL", "source": "env",
                                               "value": "postgresql+psycopg://cv:***@127.0.0.1/cv"}
    assert shown["CALLVAULT_TOKEN_TTL_SECONDS"] == {"name": "CALLVAULT_TOKEN_TTL_SECONDS", "value": "7200",
                                                    "source": "config.toml"}
    assert shown["CALLVAULT_SESSION_IDLE_SECONDS"]["source"] == "default"
    bad = CliRunner().invoke(cli_app, ["config", "show", "--data-dir", str(env.data_dir)],
                             env={**cli_env, "CALLVAULT_OIDC_ISSUER": "http://idp.example.com"})
    assert bad.exit_code != 0 and "must be an https:// URL" in bad.stdout + bad.stderr


def test_with_the_database_gone_the_node_is_alive_but_not_ready(request: pytest.FixtureRequest,
                                                                server: LiveServer, env: CallvaultEnv) -> None:
    if request.config.getoption("--db") != "postgres":
        pytest.skip("needs PostgreSQL (a database that can be made unreachable on its own)")
    from tests.reliability.test_server_faults import _database_unreachable

    with server.client() as client:
        with _database_unreachable(env.settings.database_url):
            env.runtime.db.engine.dispose()  # drop pooled connections, as a restarted database would
            assert client.get("/healthz").status_code == 200
            ready = client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["checks"]["database"].startswith("unreachable")
            # /metrics sits behind the network guard, which needs the policy from the database: the
            # scrape fails (Prometheus' own `up` alerts), with a clear 503, not a hang or a traceback.
            scrape = client.get("/metrics")
            assert scrape.status_code == 503 and scrape.json()["error"] == "unavailable"
        assert client.get("/readyz").status_code == 200
        assert _metric(client.get("/metrics").text, "callvault_database_up") == 1


def test_every_answer_carries_a_strict_content_security_policy_and_no_sniffing_headers(
        server: LiveServer) -> None:
    """Pages, API answers, static files and refusals alike: no inline or foreign script can run (an
    injected ``<script>`` would not execute), no site can frame callvault (clickjacking a "play" or
    "approve" button), browsers do not guess content types, and no recording URL leaks in a Referer."""
    with server.client() as client:
        answers = [client.get("/"), client.get("/notice"), client.get("/static/app.js"), client.get("/healthz"),
                   client.get("/api/v1/me"), client.get("/no-such-page")]
    for resp in answers:
        csp = {d.split()[0]: d.split()[1:] for d in resp.headers["Content-Security-Policy"].split("; ")}
        assert csp["default-src"] == ["'self'"] and csp["frame-ancestors"] == ["'none'"], resp.url
        assert csp["script-src"] == ["'self'"] and csp["object-src"] == ["'none'"] and csp["base-uri"] == ["'none'"]
        assert "'unsafe-inline'" not in resp.headers["Content-Security-Policy"]
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Referrer-Policy"] == "same-origin"
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert len(resp.headers.get_list("X-Content-Type-Options")) == 1
