"""The live-monitoring records in the database: who may listen (decide + audit), one-time tickets for the
capture tap, stale capture processes, and ends that are audited exactly once even when two nodes race."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from callvault.audit.models import AuditEntry
from callvault.core.clock import FixedClock
from callvault.core.errors import AccessDenied, NotFound
from callvault.identity import service as identity
from callvault.live import service as live
from callvault.live.models import MonitoringSession
from callvault.policy import service as policy_service
from callvault.policy.decide import Actor
from tests.support.env import CallvaultEnv


def _actor(env: CallvaultEnv, username: str) -> Actor:
    with env.runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session)
        return identity.actor_for(session, identity.get_user(session, username), policy)


def _register(env: CallvaultEnv, call_id: str, clock: FixedClock | None = None) -> None:
    clock = clock or FixedClock(env.runtime.clock.now())
    with env.runtime.db.unit_of_work() as session:
        live.register_call(session, call_id=call_id, recording_id=None, node="test:1", tap_url="ws://127.0.0.1:9",
                           direction="inbound", extension="2001", agent="alice", team="customer_support",
                           consent_state="evidence", started_at=clock.now(), clock=clock)


def _start(env: CallvaultEnv, username: str, call_id: str, purpose: str | None = "spot_check") -> live.Started:
    actor = _actor(env, username)
    with env.runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session)
        return live.start_monitoring(session, policy=policy, actor=actor, call_id=call_id,
                                     purpose=purpose, clock=env.runtime.clock)


def test_a_ticket_opens_the_tap_once_for_its_own_call_only(env: CallvaultEnv) -> None:
    _register(env, "siprec:t1")
    _register(env, "siprec:t1-other")
    started = _start(env, "lead", "siprec:t1")
    with env.runtime.db.unit_of_work() as session, pytest.raises(AccessDenied):
        live.redeem_ticket(session, call_id="siprec:t1-other", ticket=started.ticket)
    with env.runtime.db.unit_of_work() as session:
        assert live.redeem_ticket(session, call_id="siprec:t1", ticket=started.ticket).parties == "both"
    with env.runtime.db.unit_of_work() as session, pytest.raises(AccessDenied):
        live.redeem_ticket(session, call_id="siprec:t1", ticket=started.ticket)


def test_an_expired_ticket_is_refused(env: CallvaultEnv) -> None:
    _register(env, "siprec:t2")
    started = _start(env, "lead", "siprec:t2")
    later = FixedClock(env.runtime.clock.now() + timedelta(seconds=live.TICKET_SECONDS + 1))
    with env.runtime.db.unit_of_work() as session, pytest.raises(AccessDenied):
        live.redeem_ticket(session, call_id="siprec:t2", ticket=started.ticket, clock=later)


def test_a_stale_capture_process_s_call_cannot_be_monitored(env: CallvaultEnv) -> None:
    long_ago = FixedClock(env.runtime.clock.now() - live.STALE_AFTER - timedelta(seconds=1))
    _register(env, "siprec:t3", clock=long_ago)
    with pytest.raises(NotFound):
        _start(env, "lead", "siprec:t3")


def test_the_agent_sees_who_listens_and_a_specialist_may_not_listen(env: CallvaultEnv) -> None:
    _register(env, "siprec:t4")
    _start(env, "lead", "siprec:t4")
    with pytest.raises(AccessDenied) as refused:
        _start(env, "bob", "siprec:t4")
    assert "may not monitor" in refused.value.reason and "A7" in refused.value.clauses
    alice, bob = _actor(env, "alice"), _actor(env, "bob")
    with env.runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session)
        [mine] = [v for v in live.visible_calls(session, policy=policy, actor=alice) if v.call_id == "siprec:t4"]
        assert mine.own and not mine.may_monitor and ("lead", "support_lead", "spot_check") in mine.listeners
        assert "siprec:t4" not in [v.call_id for v in live.visible_calls(session, policy=policy, actor=bob)]


def test_two_nodes_ending_the_same_session_at_once_audit_it_once(env: CallvaultEnv) -> None:
    _register(env, "siprec:t5")
    started = _start(env, "lead", "siprec:t5")
    barrier = threading.Barrier(2)

    def end(reason: str) -> None:
        barrier.wait()
        with env.runtime.db.unit_of_work() as session:
            live.end_monitoring(session, started.monitoring_id, reason=reason)

    threads = [threading.Thread(target=end, args=(r,)) for r in ("personal", "listener_left")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    with env.runtime.db.unit_of_work() as session:
        ends = list(session.scalars(select(AuditEntry).where(AuditEntry.action == "call.monitor_ended",
                                                             AuditEntry.object_id == "siprec:t5")))
        row = session.get(MonitoringSession, started.monitoring_id)
        assert len(ends) == 1 and row is not None and row.end_reason == ends[0].details["end"]
        assert ends[0].purpose == "spot_check"
