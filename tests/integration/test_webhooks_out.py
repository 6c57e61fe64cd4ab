"""Signed outgoing webhooks, end to end: real callvault events (ingest, quarantine, failure, gap,
destruction, caller-request deadlines, misuse) reach a real HTTP receiver on loopback, signed; a
failing receiver is retried with exponential backoff, and given up on after the last try."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from sqlalchemy import select

from callvault.audit.models import AuditEntry
from callvault.capture.audio import probe_audio
from callvault.capture.ingest import CHUNK_SIZE, encrypt_audio, finalise_recording, reserve_recording
from callvault.capture.metadata import parse_metadata
from callvault.core.ids import new_id
from callvault.integrations.webhooks_out import service as webhooks
from callvault.integrations.webhooks_out.emit import EVENT_TYPES
from callvault.integrations.webhooks_out.models import DeliveryState, WebhookDelivery, WebhookSubscription
from callvault.oversight import service as oversight
from callvault.policy import service as policy_service
from callvault.retention.sweep import sweep
from callvault.storage.crypto import new_data_key
from callvault.subject_requests import service as subject_service
from callvault.subject_requests.models import RequestStatus, SubjectRequest
from tests.conftest import POLICY_A, fresh_database
from tests.support.audio import wav_bytes
from tests.support.retention import IN_SCOPE, T, World, make_world
from tests.support.webhook_receiver import Receiver, ReceiverServer


@pytest.fixture()
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    (tmp_path / "db").mkdir()
    with fresh_database(request.config.getoption("--db"), tmp_path / "db") as url:
        w = make_world(tmp_path / "data", url, POLICY_A, "a")
        yield w
        w.close()


def subscribe(world: World, url: str, events: list[str], name: str = "ops") -> bytes:
    with world.runtime.db.unit_of_work() as session:
        created = webhooks.add_subscription(session, keyring=world.runtime.keyring, name=name, url=url,
                                            events=events, actor="test", clock=world.clock)
    return created.secret.encode()


def deliver(world: World) -> int:
    return webhooks.deliver_due(world.runtime.db, world.runtime.keyring, clock=world.clock)


def log(world: World) -> list[WebhookDelivery]:
    with world.runtime.db.unit_of_work() as session:
        rows = webhooks.deliveries(session)
        for r in rows:
            session.expunge(r)
        return rows


class BrokenWriter:
    """A blob store whose writes fail half-way: the ingest must fail cleanly (and say so)."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def writer(self, key: str) -> Any:
        raise OSError("disk full")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def _ingest_with_lost_packets(world: World) -> str:
    """What live capture does at the end of a call whose RTP streams lost packets (see siprec.session)."""
    rt = world.runtime
    audio: BinaryIO = io.BytesIO(wav_bytes(1.0, seed=77))
    meta = parse_metadata({"call_id": f"sip-{uuid.uuid4().hex[:8]}", "direction": "inbound",
                           "started_at": T.isoformat(), "ended_at": (T + timedelta(seconds=1)).isoformat(),
                           "consent": {"announcement_played_at": T.isoformat(), "announcement_version": "1"},
                           **IN_SCOPE["a"]}, default_region="CA")
    with rt.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=world.clock)
        row = reserve_recording(session, policy=policy, meta=meta, info=probe_audio(audio), actor="siprec",
                                store=rt.store, clock=world.clock, stale_after=timedelta(hours=1))
        assert not isinstance(row, tuple) and hasattr(row, "blob_key")
        rec_id, blob_key = row.id, row.blob_key  # type: ignore[union-attr]
    key = new_data_key()
    with rt.store.writer(blob_key) as sink:
        result = encrypt_audio(audio, sink, data_key=key, context=rec_id.encode(), chunk_size=CHUNK_SIZE)
    with rt.db.unit_of_work() as session:
        finalise_recording(session, rec_id=rec_id, result=result, data_key=key, keyring=rt.keyring,
                           chunk_size=CHUNK_SIZE, actor="siprec", call_id=meta.call_id, consent_state="present",
                           clock=world.clock, action="recording.captured",
                           details={"streams": {"stream0": {"lost": 12}, "stream1": {"lost": 0}}})
    return rec_id


def _subject_requests(world: World) -> tuple[str, str]:
    """One caller's request due in two working days, one already overdue: a caller none of the recordings is of
    (a request in hand keeps the recordings it covers from the sweep, and this test's sweep must destroy them)."""
    now = world.clock.now()
    ids = (new_id(), new_id())
    with world.runtime.db.unit_of_work() as session:
        for rid, due in zip(ids, (now + timedelta(days=2), now - timedelta(hours=1)), strict=True):
            session.add(SubjectRequest(
                id=rid, kind="caller", status=RequestStatus.TO_REVIEW, phone_numbers=["+14165550177"],
                email="caller@example.org", region="CA-ON", timezone="America/Toronto", received_at=now,
                due_on=due.date(), due_at=due))
        session.flush()
        policy = policy_service.current_policy(session, clock=world.clock)
        subject_service.remind(session, policy=policy, points=(3, 1), mail_domain="example.org", clock=world.clock)
    return ids


def test_every_event_type_reaches_a_real_receiver_signed_and_without_content(world: World) -> None:
    receiver = Receiver()
    with ReceiverServer(receiver) as server:
        receiver.secret = subscribe(world, server.url, ["*"])
        saved = world.ingest()
        quarantined = world.ingest(consent=None)
        broken_store = BrokenWriter(world.runtime.store)
        with pytest.raises(OSError):
            from callvault.capture.ingest import ingest_recording
            ingest_recording(db=world.runtime.db, store=broken_store, keyring=world.runtime.keyring,
                             audio=io.BytesIO(wav_bytes(0.5, seed=5)), actor="test", clock=world.clock,
                             metadata={"call_id": "call-fails", "direction": "inbound", "started_at": T.isoformat(),
                                       "ended_at": (T + timedelta(seconds=1)).isoformat(), **IN_SCOPE["a"],
                                       "consent": {"announcement_played_at": T.isoformat(),
                                                   "announcement_version": "1"}})
        gap = _ingest_with_lost_packets(world)
        due_soon, overdue = _subject_requests(world)
        with world.runtime.db.unit_of_work() as session:
            policy = policy_service.current_policy(session, clock=world.clock)
            report = oversight.file_report(session, policy=policy, reporter=oversight.Reporter("lead", "support_lead"),
                                           summary="Listened to a colleague's calls without a reason",
                                           clock=world.clock)
            assert report is not None
        world.at(T + timedelta(days=200))  # past policy A's six months: the sweep destroys them
        sweep(db=world.runtime.db, store=world.runtime.store, keyring=world.runtime.keyring, clock=world.clock)

        assert deliver(world) == len(log(world)) > 0
    assert all(r.signature_ok for r in receiver.received)
    by_type = {t: receiver.of_type(t) for t in EVENT_TYPES}
    assert {r.body["data"]["recording_id"] for r in by_type["recording.saved"]} == {saved, quarantined, gap}
    assert [r.body["data"]["recording_id"] for r in by_type["recording.quarantined"]] == [quarantined]
    [failed] = by_type["recording.failed"]
    assert failed.body["data"]["call_id"] == "call-fails" and "disk full" in failed.body["data"]["reason"]
    [lost] = by_type["recording.gap"]
    assert lost.body["data"]["recording_id"] == gap and lost.body["data"]["lost_packets"] == 12
    assert {r.body["data"]["recording_id"] for r in by_type["recording.destroyed"]} == {saved, quarantined, gap}
    assert all(r.body["data"]["rule"] == "max_age" for r in by_type["recording.destroyed"])
    assert [r.body["data"]["request_id"] for r in by_type["subject_request.due_soon"]] == [due_soon]
    assert [r.body["data"]["request_id"] for r in by_type["subject_request.overdue"]] == [overdue]
    [misuse] = by_type["misuse.reported"]
    assert misuse.body["data"]["report_id"] == report.id
    everything = repr([r.body for r in receiver.received])
    assert not any(n in everything for n in ("+1 416 555 0142", "+14165550142", "+14165550177"))  # no numbers
    assert "Listened to a colleague" not in everything  # no report text
    assert all(r.body["type"] == r.event_type and r.body["id"] for r in receiver.received)
    assert {d.state for d in log(world)} == {DeliveryState.DELIVERED}


def test_a_failing_receiver_is_retried_with_exponential_backoff_until_it_answers(world: World) -> None:
    receiver = Receiver(fail_first=2)
    with ReceiverServer(receiver) as server:
        receiver.secret = subscribe(world, server.url, ["recording.saved"])
        rec_id = world.ingest()
        start = world.clock.now()
        assert deliver(world) == 0  # 500
        [row] = log(world)
        assert row.state == "pending" and row.attempts == 1 and row.last_status == 500
        assert row.next_attempt_at == start + webhooks.BACKOFF_BASE
        assert deliver(world) == 0 and receiver.refused == 1  # not due yet: nothing was posted
        world.at(start + webhooks.BACKOFF_BASE)
        assert deliver(world) == 0 and receiver.refused == 2
        [row] = log(world)
        assert row.attempts == 2 and row.next_attempt_at == world.clock.now() + 2 * webhooks.BACKOFF_BASE
        world.at(world.clock.now() + 2 * webhooks.BACKOFF_BASE - timedelta(seconds=1))
        assert deliver(world) == 0 and receiver.refused == 2  # a second early: still waiting
        world.at(world.clock.now() + timedelta(seconds=1))
        assert deliver(world) == 1
    [got] = receiver.received
    assert got.signature_ok and got.body["data"]["recording_id"] == rec_id
    assert got.timestamp == str(int(world.clock.now().timestamp()))  # re-signed at the retry, not stale
    [row] = log(world)
    assert row.state == "delivered" and row.attempts == 3 and row.last_status == 204 and row.last_error == ""


def test_an_unreachable_receiver_is_given_up_on_after_the_last_try_and_that_is_audited(world: World) -> None:
    with ReceiverServer(Receiver()) as server:
        dead_url = server.url  # the port is closed once this block ends
    subscribe(world, dead_url, ["recording.saved"])
    world.ingest()
    for _ in range(webhooks.MAX_ATTEMPTS):
        deliver(world)
        [row] = log(world)
        world.at(max(world.clock.now(), row.next_attempt_at))
    [row] = log(world)
    assert row.state == "failed" and row.attempts == webhooks.MAX_ATTEMPTS and row.last_status is None
    assert "ConnectError" in row.last_error
    assert deliver(world) == 0 and log(world)[0].attempts == webhooks.MAX_ATTEMPTS  # no further tries
    with world.runtime.db.unit_of_work() as session:
        gave_up = session.scalars(select(AuditEntry).where(AuditEntry.action == "webhook.gave_up")).all()
    assert [e.object_id for e in gave_up] == [row.id]


def test_the_signing_secret_is_stored_only_encrypted_and_removal_cancels_what_is_queued(world: World) -> None:
    secret = subscribe(world, "http://127.0.0.1:9/never", ["recording.saved", "recording.destroyed"], name="crm")
    assert secret.startswith(b"whsec_") and len(secret) == 6 + 64
    with world.runtime.db.unit_of_work() as session:
        sub = session.scalars(select(WebhookSubscription)).one()
        assert secret not in sub.wrapped_secret and bytes.fromhex(secret[6:].decode()) not in sub.wrapped_secret
        assert webhooks.secret_of(sub, world.runtime.keyring) == secret
    world.ingest()
    code, output = world.cli("webhooks", "remove", "crm")
    assert code == 0, output
    assert [d.state for d in log(world)] == ["cancelled"]
    assert deliver(world) == 0


def test_the_cli_adds_lists_and_shows_the_delivery_log(world: World) -> None:
    code, output = world.cli("webhooks", "add", "siem", "https://siem.example.org/in", "--event", "misuse.reported",
                             "--event", "recording.destroyed")
    assert code == 0, output
    assert "whsec_" in output
    code, output = world.cli("webhooks", "list", "--json")
    assert code == 0 and '"siem"' in output and "misuse.reported" in output and "whsec_" not in output
    code, output = world.cli("webhooks", "add", "bad", "ftp://x", "--event", "recording.exploded")
    assert code == 2 and "recording.exploded" in output and "http(s) URL" in output
    code, output = world.cli("webhooks", "add", "siem", "https://other.example.org/in")
    assert code == 4 and "already exists" in output
    code, output = world.cli("webhooks", "deliveries", "--json")
    assert code == 0 and output.strip() == "[]"


def test_key_rotation_rewraps_webhook_secrets_so_the_old_key_can_be_retired(world: World) -> None:
    from callvault.recordings import rekey
    from callvault.storage.keys import create_kek

    secret = subscribe(world, "https://hooks.example.org/in", ["*"])
    old_kek = world.runtime.keyring.current_id
    create_kek(world.settings.key_dir)
    report = rekey.rewrap_all(world.runtime.db, world.runtime.keyring, actor="test", clock=world.clock)
    assert report.rewrapped["webhook_subscriptions"] == 1 and report.current_kek != old_kek
    with world.runtime.db.unit_of_work() as session:
        assert rekey.usage(session, old_kek)["webhook_subscriptions"] == 0
        sub = session.scalars(select(WebhookSubscription)).one()
        assert sub.kek_id == report.current_kek
        assert webhooks.secret_of(sub, world.runtime.keyring) == secret  # receivers keep their secret


def test_workers_running_side_by_side_deliver_each_event_exactly_once(world: World) -> None:
    import threading

    from callvault.integrations.webhooks_out.emit import emit

    receiver = Receiver()
    with ReceiverServer(receiver) as server:
        receiver.secret = subscribe(world, server.url, ["misuse.reported"])
        with world.runtime.db.unit_of_work() as session:
            for i in range(60):
                emit(session, "misuse.reported", {"report_id": f"r-{i}"}, clock=world.clock)
        errors: list[BaseException] = []

        def work() -> None:
            try:
                while deliver(world):
                    pass
            except BaseException as exc:  # reported below
                errors.append(exc)

        workers = [threading.Thread(target=work) for _ in range(3)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=120)
    assert not errors, errors
    got = sorted(r.body["data"]["report_id"] for r in receiver.received)
    assert got == sorted(f"r-{i}" for i in range(60))  # every one, none twice
    assert all(d.state == "delivered" and d.attempts == 1 for d in log(world))
