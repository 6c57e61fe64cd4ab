"""Two `callvault serve` nodes and two `callvault worker` nodes, one database, one S3 store.

Each node is a separate process with its own (empty) data directory: everything they share goes
through the database, the object store and the environment, as in deploy/README.md. The scenario
runs through both nodes: ingest on one, play on the other; a token revoked on one is dead on the
other at once; sign-in failures on both nodes add up to one lockout; two workers sweep expired
recordings without ever destroying one twice.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, update

from callvault.audit import service as audit
from callvault.audit.models import AuditEntry
from callvault.cli.commands import initialise
from callvault.core.settings import load_settings
from callvault.identity import service as identity
from callvault.policy import service as policy_service
from callvault.recordings.models import Recording
from callvault.retention.models import DestructionRecord
from callvault.runtime import build_runtime
from tests.conftest import POLICY_A, fresh_database
from tests.support.audio import metadata, wav_bytes
from tests.support.env import _free_port, wait_until_serving
from tests.support.s3server import ACCESS_KEY, SECRET_KEY, S3Server, start_s3_server

CALLVAULT = str(Path(sys.executable).parent / "callvault")


@dataclass
class Cluster:
    env: dict[str, str]
    nodes: list[str]
    processes: list[subprocess.Popen[bytes]]
    data_dirs: list[Path]
    admin_token: str
    lead_token: str

    def run(self, *args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CALLVAULT, *args, "--data-dir", str(data_dir)], env=self.env, capture_output=True,
                              text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = start_s3_server(tmp_path_factory.mktemp("seaweed"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            s3: S3Server) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("cluster")
    (root / "db").mkdir()
    with fresh_database(request.config.getoption("--db"), root / "db") as url:
        env = {**os.environ, "CALLVAULT_DATABASE_URL": url,
               "CALLVAULT_STORAGE_URL": s3.url("callvault-test", "cluster"),
               "CALLVAULT_S3_ACCESS_KEY": ACCESS_KEY, "CALLVAULT_S3_SECRET_KEY": SECRET_KEY,
               "CALLVAULT_KEK": base64.b64encode(os.urandom(32)).decode(), "CALLVAULT_KEK_ID": "kek-cluster-1",
               "NO_COLOR": "1"}
        env.pop("CALLVAULT_DATA_DIR", None)
        init_dir = root / "init"
        settings = load_settings(init_dir, env=env)
        initialise(settings, policy_file=POLICY_A, admin_user="admin", admin_password="granite-ferry-cluster-9")
        runtime = build_runtime(settings)
        with runtime.db.unit_of_work() as session:
            policy = policy_service.current_policy(session)
            lead = identity.create_user(session, actor="test", policy=policy, username="lead", role="support_lead",
                                        password="willow-signal-cluster-4")
            identity.acknowledge_policy(session, user=lead, policy=policy)
            admin = identity.get_user(session, "admin")
            admin_token = identity.issue_token(session, user=admin, ttl_seconds=3600,
                                               scopes=("recordings:ingest", "admin")).token
            lead_token = identity.issue_token(session, user=lead, ttl_seconds=3600,
                                              scopes=("recordings:read", "recordings:play")).token
        runtime.close()
        processes: list[subprocess.Popen[bytes]] = []
        nodes, data_dirs = [], []
        try:
            for i in range(2):
                data_dir = root / f"node{i}"  # empty: a node keeps nothing locally
                data_dir.mkdir()
                port = _free_port()
                log = root / f"serve{i}.log"
                with log.open("wb") as out:
                    proc = subprocess.Popen([CALLVAULT, "serve", "--no-workers", "--port", str(port),
                                             "--data-dir", str(data_dir)],
                                            env=env, stdout=out, stderr=subprocess.STDOUT)
                processes.append(proc)
                nodes.append(f"http://127.0.0.1:{port}")
                data_dirs.append(data_dir)
                wait_until_serving(nodes[-1], proc, log=log)
            yield Cluster(env=env, nodes=nodes, processes=processes, data_dirs=data_dirs,
                          admin_token=admin_token, lead_token=lead_token)
        finally:
            for proc in processes:
                proc.terminate()
            for proc in processes:
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _client(node: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=node, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def _upload(client: httpx.Client, audio: bytes, meta: dict[str, object]) -> httpx.Response:
    return client.post("/api/v1/recordings", files={"audio": ("call.wav", audio, "audio/wav")},
                       data={"metadata": json.dumps(meta)})


def test_ingest_on_one_node_plays_on_the_other(cluster: Cluster) -> None:
    audio = wav_bytes(3.0, seed=31)
    with _client(cluster.nodes[0], cluster.admin_token) as node_a:
        resp = _upload(node_a, audio, metadata(call_id="cluster-1"))
    assert resp.status_code == 201, resp.text
    rec_id = resp.json()["id"]
    with _client(cluster.nodes[1], cluster.lead_token) as node_b:
        found = node_b.get("/api/v1/recordings", params={"agent": "alice"}).json()["items"]
        played = node_b.get(f"/api/v1/recordings/{rec_id}/audio", params={"purpose": "spot_check"})
        ranged = node_b.get(f"/api/v1/recordings/{rec_id}/audio", params={"purpose": "spot_check"},
                            headers={"Range": "bytes=1000-1999"})
    assert rec_id in [item["id"] for item in found]
    assert played.status_code == 200 and played.content == audio
    assert ranged.status_code == 206 and ranged.content == audio[1000:2000]
    assert not any(any(p.iterdir()) for p in cluster.data_dirs), "a serve node wrote local state"


def test_token_revoked_on_one_node_is_refused_by_the_other_at_once(cluster: Cluster) -> None:
    with _client(cluster.nodes[0], cluster.admin_token) as admin:
        created = admin.get("/api/v1/me")
    assert created.status_code == 200
    settings = load_settings(cluster.data_dirs[0], env=cluster.env)
    runtime = build_runtime(settings)
    with runtime.db.unit_of_work() as session:
        user = identity.get_user(session, "lead")
        token = identity.issue_token(session, user=user, ttl_seconds=600, scopes=("recordings:read",)).token
    runtime.close()
    with _client(cluster.nodes[1], token) as node_b:
        assert node_b.get("/api/v1/recordings").status_code == 200
    with _client(cluster.nodes[0], token) as node_a:
        assert node_a.post("/api/v1/auth/revoke").status_code == 204
    with _client(cluster.nodes[1], token) as node_b:
        assert node_b.get("/api/v1/recordings").status_code == 401


def test_sign_in_failures_on_both_nodes_add_up_to_one_lockout(cluster: Cluster) -> None:
    for i in range(5):
        node = cluster.nodes[i % 2]
        resp = httpx.post(f"{node}/api/v1/auth/token", json={"username": "lead", "password": f"wrong-guess-{i}"})
        assert resp.status_code == 401
    runtime = build_runtime(load_settings(cluster.data_dirs[0], env=cluster.env))
    with runtime.db.unit_of_work() as session:
        lockouts = session.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "auth.lockout", AuditEntry.actor == "lead"))
    runtime.close()
    assert lockouts == 1


def test_two_workers_sweep_expired_recordings_exactly_once(cluster: Cluster) -> None:
    recent = datetime.now(UTC) - timedelta(days=1)  # a call already past its retention is refused at upload (A3)
    ids = []
    with _client(cluster.nodes[0], cluster.admin_token) as admin:
        for i in range(12):
            started = recent + timedelta(minutes=i)
            resp = _upload(admin, wav_bytes(0.5, seed=200 + i), metadata(
                call_id=f"expired-{i}", started_at=started.isoformat(),
                ended_at=(started + timedelta(seconds=1)).isoformat(),
                consent={"announcement_played_at": started.isoformat(), "announcement_version": "1"}))
            assert resp.status_code == 201, resp.text
            ids.append(resp.json()["id"])
    # As if their six months had run out since they were stored: the workers run on the real clock.
    runtime = build_runtime(load_settings(cluster.data_dirs[0], env=cluster.env))
    try:
        with runtime.db.unit_of_work() as session:
            session.execute(update(Recording).where(Recording.id.in_(ids)).values(
                destroy_after=datetime.now(UTC) - timedelta(minutes=1)))
    finally:
        runtime.close()
    workers = [subprocess.Popen([CALLVAULT, "worker", "--once", "--job", "retention.sweep",
                                 "--data-dir", str(cluster.data_dirs[i])], env=cluster.env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for i in range(2)]
    outputs = [w.communicate(timeout=120)[0].decode() for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    runtime = build_runtime(load_settings(cluster.data_dirs[0], env=cluster.env))
    try:
        with runtime.db.unit_of_work() as session:
            states = set(session.scalars(select(Recording.state).where(Recording.id.in_(ids))))
            records = list(session.scalars(select(DestructionRecord.recording_id).where(
                DestructionRecord.recording_id.in_(ids))))
            assert audit.verify_chain(session).intact
        assert states == {"destroyed"}
        assert sorted(records) == sorted(ids)  # each destroyed once, with one record
        assert not [k for k in runtime.store.iter_keys() if any(i in k for i in ids)]
    finally:
        runtime.close()
    with _client(cluster.nodes[1], cluster.lead_token) as node_b:
        gone = node_b.get(f"/api/v1/recordings/{ids[0]}/audio", params={"purpose": "spot_check"})
    assert gone.status_code in (403, 404)
