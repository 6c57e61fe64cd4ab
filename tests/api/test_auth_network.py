"""The policy's network allow-list on every request (A11), believing X-Forwarded-For only from trusted proxies."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from typing import Any

import pytest
import yaml
from sqlalchemy import select
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from callvault.audit.models import AuditEntry
from callvault.identity.network import client_address, networks
from callvault.policy import service as policy_service
from tests.conftest import POLICY_A
from tests.support.env import CallvaultEnv, LiveServer

OFFICE_ONLY_SPECIALISTS = {"allow": ["10.20.0.0/16", "127.0.0.0/8"], "per_role": {"specialist": ["10.20.0.0/16"]}}


def _load_variant(env: CallvaultEnv, version: str, network: dict[str, Any]) -> None:
    doc = yaml.safe_load(POLICY_A.read_text(encoding="utf-8"))
    doc["version"] = version
    doc["network"] = network
    with env.runtime.db.unit_of_work() as session:
        policy_service.load_policy(session, text=yaml.safe_dump(doc), source="test", actor="test")


def _trust_loopback_proxy(env: CallvaultEnv) -> None:
    env.runtime.settings = dataclasses.replace(env.runtime.settings, trusted_proxies=("127.0.0.0/8",))


def _denials(env: CallvaultEnv) -> list[AuditEntry]:
    with env.runtime.db.unit_of_work() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == "network.denied")))


def test_a_role_limited_to_the_office_network_is_refused_from_elsewhere(live: LiveServer) -> None:
    env = live.env
    _load_variant(env, "net-1", OFFICE_ONLY_SPECIALISTS)
    with live.client("lead") as lead:
        assert lead.get("/api/v1/me").status_code == 200
    with live.client() as client:
        client.headers["Authorization"] = f"Bearer {live.sign_in(client, 'alice')}"
        refused = client.get("/api/v1/me")
        forged = client.get("/api/v1/me", headers={"X-Forwarded-For": "10.20.0.5"})
    assert refused.status_code == forged.status_code == 403
    assert refused.json()["clauses"] == ["A11"]
    entries = _denials(env)
    assert [(e.actor, e.source_ip) for e in entries] == [("alice", "127.0.0.1"), ("alice", "127.0.0.1")]


def test_a_trusted_proxy_vouches_for_the_office_address(live: LiveServer) -> None:
    env = live.env
    _load_variant(env, "net-2", OFFICE_ONLY_SPECIALISTS)
    _trust_loopback_proxy(env)
    with live.client() as client:
        client.headers["Authorization"] = f"Bearer {live.sign_in(client, 'alice')}"
        assert client.get("/api/v1/me", headers={"X-Forwarded-For": "10.20.0.5"}).status_code == 200
        # A client cannot slip an office address in front of its own: the proxy appends the real one.
        smuggled = client.get("/api/v1/me", headers={"X-Forwarded-For": "10.20.0.5, 203.0.113.9"})
        assert smuggled.status_code == 403
    assert _denials(env)[-1].source_ip == "203.0.113.9"


def test_outside_the_allow_list_nothing_but_the_public_notice_answers(live: LiveServer) -> None:
    env = live.env
    _trust_loopback_proxy(env)
    _load_variant(env, "net-3", {"allow": ["10.20.0.0/16"]})
    with live.client() as outsider:
        outsider.headers["X-Forwarded-For"] = "198.51.100.7"
        for path in ("/", "/api/v1/me", "/api/v1/recordings"):
            resp = outsider.get(path)
            assert resp.status_code == 403, path
            assert "network allow-list" in resp.json()["message"]
        sign_in = outsider.post("/api/v1/auth/token", json={"username": "lead", "password": "x" * 12})
        assert sign_in.status_code == 403
        assert outsider.get("/notice").status_code == 200
        assert outsider.get("/healthz").status_code == 200
        outsider.headers["X-Forwarded-For"] = "10.20.3.4"
        assert outsider.get("/api/v1/me").status_code == 401  # inside: on to sign-in
    assert {e.source_ip for e in _denials(env)} == {"198.51.100.7"}


@pytest.mark.parametrize("peer, header, trusted, expected", [
    ("127.0.0.1", [], [], "127.0.0.1"),
    ("203.0.113.9", ["10.20.0.5"], [], "203.0.113.9"),                         # untrusted peer: header ignored
    ("10.0.0.2", ["10.20.0.5"], ["10.0.0.0/24"], "10.20.0.5"),
    ("10.0.0.2", ["1.2.3.4, 10.20.0.5"], ["10.0.0.0/24"], "10.20.0.5"),       # only the hop the proxy saw
    ("10.0.0.2", ["1.2.3.4, 10.0.0.3"], ["10.0.0.0/24"], "1.2.3.4"),          # two trusted proxies in a row
    ("10.0.0.2", ["garbage"], ["10.0.0.0/24"], "10.0.0.2"),
    ("10.0.0.2", ["[2001:db8::1]:443"], ["10.0.0.0/24"], "2001:db8::1"),
    ("10.0.0.2", ["10.20.0.5", "198.51.100.1"], ["10.0.0.0/24"], "198.51.100.1"),  # several headers: last wins
])
def test_client_address_believes_forwarded_hops_only_from_trusted_proxies(
        peer: str, header: list[str], trusted: list[str], expected: str) -> None:
    assert client_address(peer, header, networks(trusted)) == expected


def _ws_refusal(live: LiveServer, headers: dict[str, str]) -> tuple[dict[str, Any], int | None]:
    url = live.base_url.replace("http://", "ws://") + "/api/v1/live/calls/any-call/listen?purpose=spot_check"
    with ws_connect(url, additional_headers=headers) as ws:
        message = json.loads(ws.recv(timeout=10))
        with contextlib.suppress(ConnectionClosed):
            ws.recv(timeout=10)
        return message, ws.close_code


@pytest.mark.parametrize("network, headers, problem", [
    ({"allow": ["10.20.0.0/16"]}, {"X-Forwarded-For": "198.51.100.7"}, "network allow-list"),
    ({"allow": ["10.20.0.0/16", "127.0.0.0/8"], "require_device_certificate": True},
     {"X-Forwarded-For": "10.20.0.9", "X-SSL-Client-Verify": "NONE"}, "company device"),
])
def test_a_live_listening_handshake_meets_the_same_network_rules(
        live: LiveServer, network: dict[str, Any], headers: dict[str, str], problem: str) -> None:
    """WebSocket handshakes pass the guard too: from outside the allow-list, or without a verified
    company-device certificate, live listening is refused (4403) before any credential is looked at."""
    env = live.env
    with live.client("lead") as lead:
        token = lead.headers["Authorization"].split()[1]
    _trust_loopback_proxy(env)
    _load_variant(env, "net-ws", network)
    message, code = _ws_refusal(live, {**headers, "Authorization": f"Bearer {token}"})
    assert (message["type"], code, message["clauses"]) == ("refused", 4403, ["A11"])
    assert problem in message["message"]
    assert [e.source_ip for e in _denials(env)][-1:] == [headers["X-Forwarded-For"]]
