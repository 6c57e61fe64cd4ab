"""Issue 28.1: a regulated firm keeps every call at least 60 months (FCA SYSC 10A; 7 years on request).
Destroying early is the violation, so nothing undercuts the minimum: not a later policy version with a
shorter cap, a resolved case, a quarantine decision nor an agent's control. Product clock fixed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from callvault.audit.models import AuditEntry
from callvault.capture import control
from callvault.core.errors import AccessDenied, ConfigurationError, Conflict, InvalidInput
from callvault.policy import service as policy_service
from callvault.policy.decide import Actor
from callvault.policy.loader import parse_policy_text
from callvault.retention import service as retention
from callvault.retention.sweep import sweep
from callvault.retention.write_once import check_store
from callvault.storage.blobstore import LocalBlobStore
from callvault.storage.s3 import S3BlobStore
from tests.conftest import POLICY_A
from tests.integration.test_retention import add_months_dt
from tests.support.regulated import regulated_text, regulated_world
from tests.support.retention import T, World

ALICE = Actor("u-alice", "alice", "specialist", extension="2001", team="customer_support")
ADMIN = Actor("u-admin", "admin", "admin")


@pytest.fixture()
def fca(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    """The regulated variant: min 60 months, max 84, no agent controls."""
    yield from regulated_world(request, tmp_path)


@pytest.fixture()
def fca_controls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    """The regulated variant where agents keep their controls (pause, stop, personal)."""
    yield from regulated_world(request, tmp_path, agent_may="[pause, stop, personal]")


def _sweep(world: World) -> int:
    rt = world.runtime
    return sweep(db=rt.db, store=rt.store, keyring=rt.keyring, clock=world.clock).destroyed


def _policy(world: World):  # type: ignore[no-untyped-def]
    with world.runtime.db.unit_of_work() as session:
        return policy_service.current_policy(session, clock=world.clock)


def _last(world: World, action: str) -> AuditEntry:
    with world.runtime.db.unit_of_work() as session:
        entry = session.scalar(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq.desc()))
        assert entry is not None, f"no {action} entry"
        return entry


def test_a_new_version_with_a_six_month_cap_does_not_destroy_a_22_month_old_call(fca: World) -> None:
    rec = fca.ingest()
    assert fca.row(rec).keep_until == add_months_dt(T, 60)
    fca.at(add_months_dt(T, 22))
    shorter = regulated_text(POLICY_A.read_text(), version="2028.1").replace(
        "max_age_months: 84\n  min_age_months: 60", "max_age_months: 6\n  min_age_months: 0").replace(
        "effective_from: 2024-01-01", "effective_from: 2027-11-01")
    with fca.runtime.db.unit_of_work() as session:
        policy_service.load_policy(session, text=shorter, source="v2", actor="test", clock=fca.clock)
    assert _sweep(fca) == 0
    assert fca.playable(rec)
    row = fca.row(rec)
    assert row.destroy_after == add_months_dt(T, 60) and row.retention_rule == "min_age"
    fca.at(add_months_dt(T, 60) + timedelta(seconds=1))
    assert _sweep(fca) == 1
    assert fca.intact_or_fully_destroyed(rec) == "destroyed"


def test_resolving_the_case_of_a_regulated_call_keeps_it_until_its_minimum(fca: World) -> None:
    rec = fca.ingest(case_ref="CASE-1")
    with fca.runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=fca.clock)
        retention.open_case(session, policy=policy, actor="exec", actor_role="executive", ref="CASE-1",
                            kind="complaint", clock=fca.clock)
        retention.resolve_case(session, policy=policy, actor="exec", actor_role="executive", ref="CASE-1",
                               clock=fca.clock)
    assert fca.row(rec).destroy_after == add_months_dt(T, 60)
    fca.at(add_months_dt(T, 2))
    assert _sweep(fca) == 0 and fca.playable(rec)


def test_an_administrator_cannot_destroy_a_quarantined_regulated_call_before_its_minimum(fca: World) -> None:
    rec = fca.ingest(consent=None)
    assert fca.row(rec).quarantined
    with fca.runtime.db.unit_of_work() as session, pytest.raises(Conflict, match="min_age_months"):
        control.resolve_quarantine(session, policy=policy_service.current_policy(session, clock=fca.clock),
                                   actor=ADMIN, recording_id=rec, decision="destroy", reason="no evidence",
                                   keyring=fca.runtime.keyring, clock=fca.clock)
    assert fca.playable(rec)


@pytest.mark.parametrize("kind", ["pause", "stop", "personal"])
def test_a_trader_may_not_pause_stop_or_discard_a_call_where_the_policy_names_no_agent_controls(
        fca: World, kind: str) -> None:
    with fca.runtime.db.unit_of_work() as session, pytest.raises(AccessDenied, match=r"controls\.agent_may"):
        control.file_control(session, policy=policy_service.current_policy(session, clock=fca.clock), actor=ALICE,
                             kind=kind, at=None if kind == "personal" else T, call_id="live-1", clock=fca.clock)


@pytest.mark.parametrize("kind", ["stop", "personal"])
def test_a_stored_regulated_call_cannot_be_cut_or_discarded_before_its_minimum(fca_controls: World, kind: str) -> None:
    rec = fca_controls.ingest(started=T)
    with fca_controls.runtime.db.unit_of_work() as session, pytest.raises(Conflict, match="min_age_months"):
        control.file_control(session, policy=policy_service.current_policy(session, clock=fca_controls.clock),
                             actor=ALICE, kind=kind, at=None if kind == "personal" else T + timedelta(seconds=1),
                             recording_id=rec, clock=fca_controls.clock)
    assert fca_controls.playable(rec)


def test_an_executive_extends_a_call_to_seven_years_and_the_extension_is_audited(fca: World) -> None:
    rec = fca.ingest()
    until = add_months_dt(T, 84).date()
    with fca.runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=fca.clock)
        retention.extend_retention(session, policy=policy, actor="exec", actor_role="executive", recording_id=rec,
                                   keep_until=until, reason="FCA asked to keep the 2026 trades", clock=fca.clock)
    row = fca.row(rec)
    assert row.keep_until is not None and row.keep_until.date() == until
    entry = _last(fca, "retention.extended")
    assert entry.actor == "exec" and entry.object_id == rec and "FCA asked" in entry.reason
    fca.at(add_months_dt(T, 60) + timedelta(days=1))
    assert _sweep(fca) == 0 and fca.playable(rec)


def test_a_specialist_cannot_extend_and_nobody_extends_past_the_limit(fca: World) -> None:
    rec = fca.ingest()
    with fca.runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=fca.clock)
        with pytest.raises(AccessDenied, match=r"retention\.extension\.roles"):
            retention.extend_retention(session, policy=policy, actor="alice", actor_role="specialist",
                                       recording_id=rec, keep_until=add_months_dt(T, 70).date(), reason="mine",
                                       clock=fca.clock)
        with pytest.raises(InvalidInput):
            retention.extend_retention(session, policy=policy, actor="exec", actor_role="executive",
                                       recording_id=rec, keep_until=add_months_dt(T, 85).date(), reason="long",
                                       clock=fca.clock)


def test_a_minimum_longer_than_the_cap_is_refused_naming_both() -> None:
    text = regulated_text(POLICY_A.read_text()).replace("min_age_months: 60", "min_age_months: 90")
    with pytest.raises(Exception, match="min_age_months"):
        parse_policy_text(text, source="x.yaml")


def test_write_once_needs_an_object_lock_store_at_least_as_long_as_the_minimum(tmp_path: Path) -> None:
    doc = parse_policy_text(regulated_text(POLICY_A.read_text()).replace(
        "  min_age_months: 60\n", "  min_age_months: 60\n  write_once: true\n"), source="x.yaml")
    with pytest.raises(ConfigurationError, match="Object Lock"):
        check_store(doc, LocalBlobStore(tmp_path))
    with pytest.raises(ConfigurationError, match="lock_days"):
        check_store(doc, S3BlobStore(client=object(), bucket="b", lock_days=30))
    check_store(doc, S3BlobStore(client=object(), bucket="b", lock_days=1830))


def test_the_shipped_policies_keep_their_meaning_no_minimum_and_every_control() -> None:
    from tests.conftest import SHIPPED_POLICY_A, SHIPPED_POLICY_B

    for path in (SHIPPED_POLICY_A, SHIPPED_POLICY_B):
        doc = parse_policy_text(path.read_text(), source=str(path))
        assert doc.retention.min_age_months == 0 and not doc.retention.write_once
        assert doc.controls.agent_may == ("pause", "stop", "personal")
        assert not doc.recording_scope.mandatory and doc.emergency_access is None


