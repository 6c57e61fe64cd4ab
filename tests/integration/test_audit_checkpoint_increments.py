"""Minutely checkpoints extend the previous one (its frontier plus the new entries) and trust nothing
unsigned they cannot check; a full recomputation from every entry comes at least hourly."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from callvault.audit import checkpoints, merkle
from callvault.audit import service as audit
from callvault.audit.anchor import CheckpointAnchor, publish_anchored
from callvault.audit.checkpoints import REWRITE_CHECK_EVERY_SECONDS, HistoryRewritten
from callvault.audit.models import AuditCheckpoint, AuditEntry
from callvault.audit.signing import Signer
from callvault.core.clock import FixedClock
from callvault.core.db import Database
from tests.support.audit_db import signed_database, unguard


@dataclass
class Log:
    db: Database
    signer: Signer
    anchor: CheckpointAnchor
    clock: FixedClock

    def append(self, n: int, tag: str) -> None:
        with self.db.unit_of_work() as session:
            for i in range(n):
                audit.append(session, audit.AuditEvent(
                    actor="lead", action="recording.play", decision="allow", object_type="recording",
                    object_id=f"{tag}-{i}", purpose="spot_check"), clock=self.clock)

    def publish(self) -> dict[str, Any] | None:
        """What the worker's job does every minute."""
        return publish_anchored(self.db, signer=self.signer, anchor=self.anchor, clock=self.clock, actor="worker",
                                only_if_grown=True, max_quiet_seconds=24 * 3600)

    def two_checkpoints(self, first: int, then: int) -> None:
        """``first`` entries and a checkpoint; a minute later ``then`` more and a minutely checkpoint."""
        self.append(first, "first")
        assert self.publish() is not None
        self.tick(60)
        self.append(then, "then")
        assert self.publish() is not None
        assert not self.latest().rewrite_checked

    def tick(self, seconds: float) -> None:
        self.clock.at += timedelta(seconds=seconds)

    def latest(self) -> AuditCheckpoint:
        with self.db.unit_of_work() as session:
            cp = checkpoints.latest_checkpoint(session)
            assert cp is not None
            return cp

    def recomputed_root(self) -> str:
        with self.db.unit_of_work() as session:
            return checkpoints.load_tree(session).root().hex()

    def verify(self) -> checkpoints.LogVerifyResult:
        with self.db.unit_of_work() as session:
            return checkpoints.verify_log(session, public_key=self.signer.public_key)

    def tamper(self, sql: str, **params: Any) -> None:
        with self.db.unit_of_work() as session:
            unguard(session)
            session.execute(text(sql), params)


@pytest.fixture()
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Log]:
    with signed_database(request.config.getoption("--db"), tmp_path) as (db, signer, _key):
        yield Log(db=db, signer=signer, anchor=CheckpointAnchor(tmp_path / "anchor"),
                  clock=FixedClock(datetime(2026, 11, 24, 8, 0, tzinfo=UTC)))


def test_minutely_checkpoints_extend_the_last_one_and_match_a_full_recomputation(log: Log) -> None:
    log.append(5, "first")
    assert log.publish() is not None
    assert log.latest().rewrite_checked  # the first one is computed from every entry
    for minute in range(1, 5):
        log.tick(60)
        log.append(minute * 2 + 1, f"minute-{minute}")
        published = log.publish()
        assert published is not None
        latest = log.latest()
        assert not latest.rewrite_checked
        assert latest.root_hash == published["root_hash"] == log.recomputed_root()
        with log.db.unit_of_work() as session:
            newest = session.scalar(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(1))
            assert newest is not None and latest.tree_size == newest.seq
            assert published["head_hash"] == newest.entry_hash
        anchored = json.loads(log.anchor.path.read_text(encoding="utf-8"))
        assert anchored == published
    result = log.verify()
    assert result.intact, result.problem
    assert result.checkpoints_checked == 5

    log.tick(60)
    assert log.publish() is None  # nothing new, and the last one is recent
    log.tick(REWRITE_CHECK_EVERY_SECONDS)
    log.append(1, "an-hour-later")
    assert log.publish() is not None
    assert log.latest().rewrite_checked  # an hour on: recomputed from every entry again
    assert log.latest().root_hash == log.recomputed_root()


def test_an_entry_rewritten_with_every_later_hash_recomputed_is_refused_at_the_next_minutely_checkpoint(
        log: Log) -> None:
    log.two_checkpoints(6, 3)
    # Someone with the database (not the signing key) changes entry #3 and re-chains #3..#9, so the
    # chain verifies again; the stored checkpoints still cover the old hashes.
    with log.db.unit_of_work() as session:
        unguard(session)
        entries = list(session.scalars(select(AuditEntry).where(AuditEntry.seq >= 3).order_by(AuditEntry.seq)))
        prev = entries[0].prev_hash
        for entry in entries:
            if entry.seq == 3:
                entry.decision, entry.purpose = "deny", "covered_up"
            entry.prev_hash = prev
            entry.entry_hash = prev = audit.compute_entry_hash(entry)
    log.tick(60)
    log.append(1, "c")  # chains onto the rewritten head, as any new entry would

    with pytest.raises(HistoryRewritten, match="consistency proof fails"):
        log.publish()
    assert log.latest().seq == 2  # nothing signed over the rewritten log
    with log.db.unit_of_work() as session:
        alarms = session.scalars(select(AuditEntry).where(AuditEntry.action == "audit.history_rewritten")).all()
        assert len(alarms) == 1 and alarms[0].decision == "alarm"


def test_an_entry_hash_changed_without_rechaining_is_caught_by_the_verifier_and_the_hourly_recomputation(
        log: Log) -> None:
    log.two_checkpoints(6, 2)
    with log.db.unit_of_work() as session:
        third = session.get(AuditEntry, 3)
        assert third is not None
        forged = ("0" if third.entry_hash[0] != "0" else "1") + third.entry_hash[1:]
    log.tamper("UPDATE audit_entries SET entry_hash = :h WHERE seq = 3", h=forged)
    result = log.verify()
    assert not result.intact and result.first_bad_seq == 3

    log.tick(REWRITE_CHECK_EVERY_SECONDS)
    log.append(1, "c")
    with pytest.raises(HistoryRewritten, match="consistency proof fails"):
        log.publish()


def test_a_stored_frontier_that_does_not_fold_to_its_signed_root_is_not_used(
        log: Log, caplog: pytest.LogCaptureFixture) -> None:
    log.two_checkpoints(4, 3)
    latest = log.latest()
    assert latest.frontier is not None and latest.tree_size == 7  # 4 + 2 + 1: three subtree roots
    forged = merkle.Frontier(7, [merkle.leaf_hash(bytes([i])) for i in range(3)]).to_text()
    log.tamper("UPDATE audit_checkpoints SET frontier = :f WHERE seq = :s", f=forged, s=latest.seq)
    log.tick(60)
    log.append(2, "c")

    caplog.set_level(logging.WARNING, logger="callvault.audit")
    assert log.publish() is not None
    newest = log.latest()
    assert newest.rewrite_checked and newest.root_hash == log.recomputed_root()
    assert any("does not fold to its signed root" in r.getMessage() for r in caplog.records)
    assert log.verify().intact


def test_an_anchor_from_before_head_hashes_were_kept_leads_to_a_full_recomputation(log: Log) -> None:
    log.append(4, "a")
    log.publish()
    old_style = json.loads(log.anchor.path.read_text(encoding="utf-8"))
    del old_style["head_hash"]
    log.anchor.path.write_text(json.dumps(old_style), encoding="utf-8")
    log.tick(60)
    log.append(2, "b")
    published = log.publish()
    assert published is not None and log.latest().rewrite_checked
    assert json.loads(log.anchor.path.read_text(encoding="utf-8"))["head_hash"] == published["head_hash"]
