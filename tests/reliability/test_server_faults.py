"""Over real HTTP: upload abuse, and the database going away (PostgreSQL only) and coming back."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import select as io_select
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import func, select

from callvault.core.errors import ConfigurationError
from callvault.core.settings import load_settings
from callvault.recordings.models import Recording, RecordingState
from callvault.subject_requests.models import SubjectRequest
from tests.conftest import PG_ADMIN_URL
from tests.support.audio import metadata, upload, wav_bytes
from tests.support.env import CallvaultEnv, LiveServer


def _raw_request(server: LiveServer, head: str, body: bytes = b"") -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head.encode() + b"\r\n" + body)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data


def _token(server: LiveServer, username: str) -> str:
    with server.client(username) as client:
        return str(client.headers["Authorization"])


def _blob_and_row_counts(env: CallvaultEnv) -> tuple[int, int, int]:
    with env.runtime.db.unit_of_work() as session:
        rows = int(session.scalar(select(func.count()).select_from(Recording)) or 0)
        pending = int(session.scalar(select(func.count()).select_from(Recording)
                                     .where(Recording.state == RecordingState.PENDING)) or 0)
    return rows, pending, len(list(env.runtime.store.iter_keys()))


def test_an_upload_declaring_more_than_the_limit_is_refused_with_413_before_its_body_is_read(
        server: LiveServer) -> None:
    auth = _token(server, "admin")
    status, data = _raw_request(server, (
        "POST /api/v1/recordings HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        f"Authorization: {auth}\r\nContent-Length: {10**12}\r\nConnection: close\r\n"))
    assert status == 413 and b"too_large" in data


def test_a_public_request_body_over_the_limit_is_cut_off_while_read_even_chunked(
        server: LiveServer, env: CallvaultEnv) -> None:
    """The caller's request form is open to anyone: 16 KiB, enforced while the body streams in (a
    chunked body declares no length), and nothing is stored."""
    padding = json.dumps({"email": "someone@example.com", "phone_numbers": ["+15145550100"],
                          "description": "x" * 200_000}).encode()
    head = (b"POST /api/v1/subject-requests HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    data = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head)
        for i in range(0, len(padding), 4096):  # chunk by chunk, until the server answers
            piece = padding[i:i + 4096]
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            except OSError:
                break
            if io_select.select([sock], [], [], 0.02)[0]:
                break
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                data += chunk
    status = int(data.split(b" ", 2)[1])
    assert status == 413 and b"too_large" in data, data[-300:]
    with env.runtime.db.unit_of_work() as session:
        assert session.scalar(select(func.count()).select_from(SubjectRequest)) == 0


def _stream_until_answered(server: LiveServer, head: bytes, body: bytes, *, chunked: bool) -> tuple[int, bytes, int]:
    """Send ``body`` (chunked or as declared) piece by piece until the server answers; returns the status,
    the answer and how many body bytes went out before it came. A server that reads a body it is going to
    refuse would take it all first (or, for a declared length never sent, wait for it forever)."""
    data, sent = b"", 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(head)
        for i in range(0, len(body), 16384):
            piece = body[i:i + 16384]
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            except OSError:
                break
            sent += len(piece)
            if io_select.select([sock], [], [], 0.01)[0]:
                break
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                data += chunk
    assert data, f"no answer after {sent} body bytes: the server waits for a body it should have refused"
    return int(data.split(b" ", 2)[1]), data, sent


@pytest.mark.parametrize(("path", "content_type"), [("/api/v1/auth/token", "application/json"),
                                                     ("/login", "application/x-www-form-urlencoded"),
                                                     ("/api/v1/access-requests", "application/json")])
def test_a_huge_body_to_any_route_is_refused_with_413_before_sign_in_and_before_it_is_read(
        server: LiveServer, path: str, content_type: str) -> None:
    """The outside tester's attack: one 300 MB JSON body to the sign-in endpoint held the whole body in
    the server's memory before anything looked at it. Every route has a limit (small unless it takes
    audio), applied from the declared length and, for a chunked body, while it streams in."""
    declared = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {300 * 1024 * 1024}\r\nConnection: close\r\n\r\n").encode()
    status, data, sent = _stream_until_answered(server, declared, b"{" + b" " * (4 * 1024 * 1024), chunked=False)
    assert status == 413 and b"too_large" in data, data[-300:]
    assert sent < 4 * 1024 * 1024, "the server waited for the body it refused"
    chunked = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
               "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
    status, data, sent = _stream_until_answered(server, chunked, b"[" + b"0," * (2 * 1024 * 1024), chunked=True)
    assert status == 413 and b"too_large" in data, data[-300:]
    assert sent < 4 * 1024 * 1024, "the server read the whole chunked body before refusing it"


def test_an_upload_without_content_length_is_refused_naming_the_header(server: LiveServer) -> None:
    auth = _token(server, "admin")
    status, data = _raw_request(server, (
        "POST /api/v1/recordings HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        f"Authorization: {auth}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"), b"0\r\n\r\n")
    assert status == 422 and b"content-length" in data


def test_wrong_content_types_and_hostile_filenames_get_clear_4xx_and_store_nothing_outside(
        server: LiveServer, env: CallvaultEnv) -> None:
    before = _blob_and_row_counts(env)
    with server.client("admin") as admin:
        as_json = admin.post("/api/v1/recordings", json={"audio": "x", "metadata": "{}"})
        assert as_json.status_code == 415, as_json.text  # neither a form nor audio: both ways are named
        assert "multipart/form-data" in as_json.json()["message"] and "Callvault-Metadata" in as_json.json()["message"]
        not_audio = admin.post("/api/v1/recordings", files={"audio": ("call.wav", b"<html>hi</html>", "text/html")},
                               data={"metadata": '{"call_id": "x"}'})
        assert not_audio.status_code == 422 and "problems" in not_audio.json()
        traversal = admin.post("/api/v1/recordings",
                               files={"audio": ("../../../../tmp/cv-escape.wav", wav_bytes(0.5, seed=3), "audio/wav")},
                               data={"metadata": __import__("json").dumps(metadata(call_id="traversal-1"))})
        assert traversal.status_code == 201, traversal.text
    escaped = [p for p in env.data_dir.parent.rglob("cv-escape*")]
    assert not escaped and not __import__("os").path.exists("/tmp/cv-escape.wav")
    rows, pending, blobs = _blob_and_row_counts(env)
    assert (rows, pending, blobs) == (before[0] + 1, 0, before[2] + 1)


@contextmanager
def _database_unreachable(url: str) -> Iterator[None]:
    """Refuse new connections to this one database and end its sessions (the shared server keeps running)."""
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
    try:
        yield
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


def test_with_the_database_gone_requests_get_503_json_ingest_stores_nothing_and_all_resumes(
        request: pytest.FixtureRequest, server: LiveServer, env: CallvaultEnv) -> None:
    if request.config.getoption("--db") != "postgres":
        pytest.skip("needs PostgreSQL (a database that can be made unreachable on its own)")
    audio, meta = wav_bytes(1.0, seed=21), metadata(call_id="during-outage")
    with server.client("admin") as admin:
        assert admin.get("/api/v1/recordings").status_code == 200
        before = _blob_and_row_counts(env)
        tried: list[int] = []
        with _database_unreachable(env.settings.database_url):
            for _ in range(3):
                for resp in (admin.get("/api/v1/recordings"), admin.get("/api/v1/me"), upload(admin, audio, meta)):
                    tried.append(resp.status_code)
                    assert resp.status_code == 503, resp.text
                    assert resp.json()["error"] == "unavailable" and "Traceback" not in resp.text
            blobs_during = len(list(env.runtime.store.iter_keys()))
        assert _blob_and_row_counts(env) == before and blobs_during == before[2]
        assert admin.get("/api/v1/recordings").status_code == 200
        stored = upload(admin, audio, meta)
        assert stored.status_code == 201, stored.text
    print(f"[reliability] database unreachable: {len(tried)} requests, all 503 JSON; 0 partial rows/blobs; "
          "service resumed on the first request after")
    _ = httpx


@pytest.mark.parametrize("body", ["multipart", "raw"])
def test_a_slow_upload_is_cut_off_with_408_stores_nothing_and_does_not_starve_other_clients(
        server: LiveServer, env: CallvaultEnv, monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    """Slowloris on the upload body: the deadline is grace + size / minimum rate (both configurable)."""
    monkeypatch.setattr(env.runtime, "settings", dataclasses.replace(
        env.runtime.settings, upload_grace_seconds=1, upload_min_bytes_per_second=100_000))
    auth = _token(server, "admin")
    before = _blob_and_row_counts(env)
    audio = wav_bytes(1.0, seed=77)
    if body == "raw":  # the audio as the body, the metadata in a header
        data, content_type = audio, f"audio/wav\r\nCallvault-Metadata: {json.dumps(metadata())}"
    else:
        built = httpx.Request("POST", "http://x/", files={"audio": ("call.wav", audio, "audio/wav")},
                              data={"metadata": json.dumps(metadata())})
        data, content_type = built.read(), built.headers["content-type"]
    fast_latencies: list[float] = []
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as slow:
        slow.sendall((f"POST /api/v1/recordings HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n"
                      f"Content-Type: {content_type}\r\nContent-Length: {len(data)}\r\n\r\n").encode())
        started = time.monotonic()
        sent = 0
        slow.settimeout(0.25)
        answer = b""
        with server.client("admin") as other:
            while not answer and time.monotonic() - started < 15:
                slow.sendall(data[sent:sent + 20])  # 80 bytes/s: far below the minimum rate
                sent += 20
                t0 = time.monotonic()
                assert other.get("/api/v1/recordings", params={"limit": 1}).status_code == 200
                fast_latencies.append(time.monotonic() - t0)
                try:
                    answer = slow.recv(65536)
                except TimeoutError:
                    continue
        took = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"upload_too_slow" in answer and took < 5, took
    assert _blob_and_row_counts(env) == before, "a slow upload left something behind"
    assert max(fast_latencies) < 1.0, f"other clients were held up: {max(fast_latencies):.2f} s"
    print(f"[reliability] slow {body} upload ({sent} of {len(data)} bytes in {took:.1f} s): 408 after the "
          f"deadline; {len(fast_latencies)} requests of another client meanwhile, slowest "
          f"{max(fast_latencies) * 1000:.0f} ms")


def test_upload_limits_come_from_the_environment_and_typos_fail_at_start_up(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, env={"CALLVAULT_MAX_UPLOAD_BYTES": "2048",
                                            "CALLVAULT_UPLOAD_MIN_BYTES_PER_SECOND": "500"})
    assert (settings.max_upload_bytes, settings.upload_min_bytes_per_second) == (2048, 500)
    with pytest.raises(ConfigurationError, match="CALLVAULT_UPLOAD_GRACE_SECONDS"):
        load_settings(tmp_path, env={"CALLVAULT_UPLOAD_GRACE_SECONDS": "ten"})
    with pytest.raises(ConfigurationError, match="at most 4294967296"):  # above the upload route's own limit
        load_settings(tmp_path, env={"CALLVAULT_MAX_UPLOAD_BYTES": str(5 * 1024 ** 3)})
