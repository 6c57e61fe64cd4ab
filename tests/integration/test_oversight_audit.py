"""The audit log is tamper-evident: chain, Merkle tree, signed checkpoints, proofs, offline bundles."""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session
from typer.testing import CliRunner, Result

from callvault.audit import checkpoints, merkle
from callvault.audit import service as audit
from callvault.audit.models import AuditCheckpoint, AuditEntry
from callvault.audit.signing import Signer, create_signing_key, load_signer, public_key_pem
from callvault.cli.main import app
from callvault.core.db import Database
from tests.conftest import REPO
from tests.support.audit_db import signed_database, unguard
from tests.support.env import CallvaultEnv

VERIFIER = REPO / "tools" / "verify_audit_bundle.py"
ENTRIES = 12
TAMPERED_SEQ = 7


@dataclass
class Ledger:
    db: Database
    signer: Signer
    key_path: Path
    tmp: Path

    def verify(self, **kwargs: Any) -> checkpoints.LogVerifyResult:
        with self.db.unit_of_work() as session:
            return checkpoints.verify_log(session, public_key=self.signer.public_key, **kwargs)

    def checkpoint(self) -> AuditCheckpoint:
        with self.db.unit_of_work() as session:
            cp = checkpoints.publish_checkpoint(session, signer=self.signer)
            assert cp is not None
            return cp

    def append(self, n: int, start: int = 0) -> None:
        with self.db.unit_of_work() as session:
            for i in range(start, start + n):
                audit.append(session, _event(i))


def _event(i: int) -> audit.AuditEvent:
    return audit.AuditEvent(
        actor=f"user{i}", actor_role="support_lead", action="recording.play", decision="allow",
        object_type="recording", object_id=f"rec-{i}", purpose="spot_check", reason="purpose allowed",
        clauses=("A6", "A13"), source_ip="10.0.0.5", details={"i": i, "range": "bytes=0-99"},
    )


@pytest.fixture()
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    """A migrated database holding 12 entries and checkpoints at sizes 4, 8 and 12."""
    with signed_database(request.config.getoption("--db"), tmp_path) as (db, signer, key_path):
        led = Ledger(db=db, signer=signer, key_path=key_path, tmp=tmp_path)
        for start in (0, 4, 8):
            led.append(4, start)
            led.checkpoint()
        yield led


def _flip(value: str, index: int = 0) -> str:
    """Flip the lowest bit of one character (a one-byte change in the stored text)."""
    return value[:index] + chr(ord(value[index]) ^ 1) + value[index + 1:]


ENTRY_TAMPERS: dict[str, Callable[[Any], Any]] = {
    "seq": lambda e: e.seq + 1000,
    "at": lambda e: e.at + timedelta(microseconds=1),
    "actor": lambda e: _flip(e.actor),
    "actor_role": lambda e: _flip(e.actor_role),
    "action": lambda e: _flip(e.action),
    "object_type": lambda e: _flip(e.object_type),
    "object_id": lambda e: _flip(e.object_id, -1),
    "purpose": lambda e: _flip(e.purpose),
    "decision": lambda e: _flip(e.decision),
    "reason": lambda e: _flip(e.reason),
    "clauses": lambda e: [*e.clauses[:-1], _flip(e.clauses[-1], -1)],
    "source_ip": lambda e: _flip(e.source_ip, -1),
    "details": lambda e: {**e.details, "range": _flip(e.details["range"], -1)},
    "prev_hash": lambda e: _flip(e.prev_hash, 5),
    "entry_hash": lambda e: _flip(e.entry_hash, 5),
}


@pytest.mark.parametrize("column", sorted(ENTRY_TAMPERS))
def test_changing_any_field_of_an_entry_is_named_by_verify(ledger: Ledger, column: str) -> None:
    with ledger.db.unit_of_work() as session:
        entry = session.get(AuditEntry, TAMPERED_SEQ)
        assert entry is not None
        new_value = ENTRY_TAMPERS[column](entry)
        session.expunge(entry)
        unguard(session)
        session.execute(update(AuditEntry).where(AuditEntry.seq == TAMPERED_SEQ).values({column: new_value}))
    result = ledger.verify()
    assert not result.intact
    assert result.first_bad_seq == TAMPERED_SEQ, result.problem


CHECKPOINT_TAMPERS: dict[str, Callable[[Any], Any]] = {
    "seq": lambda c: c.seq + 5,
    "tree_size": lambda c: c.tree_size - 1,
    "root_hash": lambda c: _flip(c.root_hash, 10),
    "published_at": lambda c: c.published_at + timedelta(microseconds=1),
    "key_id": lambda c: _flip(c.key_id, 3),
    "signature": lambda c: _flip(c.signature, 20),
}


@pytest.mark.parametrize("column", sorted(CHECKPOINT_TAMPERS))
def test_changing_any_field_of_a_checkpoint_is_named_by_verify(ledger: Ledger, column: str) -> None:
    with ledger.db.unit_of_work() as session:
        cp = session.get(AuditCheckpoint, 2)
        assert cp is not None
        new_value = CHECKPOINT_TAMPERS[column](cp)
        session.expunge(cp)
        unguard(session)
        session.execute(update(AuditCheckpoint).where(AuditCheckpoint.seq == 2).values({column: new_value}))
    result = ledger.verify()
    assert not result.intact
    assert result.first_bad_seq is None
    assert result.first_bad_checkpoint == 2, result.problem


def test_an_intact_log_verifies_every_checkpoint(ledger: Ledger) -> None:
    result = ledger.verify()
    assert result.intact, result.problem
    assert (result.entries_checked, result.checkpoints_checked, result.latest_tree_size) == (12, 3, 12)


def test_checkpoints_are_append_only_in_the_database(ledger: Ledger) -> None:
    with pytest.raises(Exception, match="append-only"), ledger.db.unit_of_work() as session:
        session.execute(text("UPDATE audit_checkpoints SET tree_size = 1 WHERE seq = 1"))
    with pytest.raises(Exception, match="append-only"), ledger.db.unit_of_work() as session:
        session.execute(text("DELETE FROM audit_checkpoints WHERE seq = 3"))


def test_removing_the_newest_entries_is_caught_by_the_checkpoint_that_covered_them(ledger: Ledger) -> None:
    with ledger.db.unit_of_work() as session:
        unguard(session)
        session.execute(text("DELETE FROM audit_entries WHERE seq > 10"))
    assert ledger.verify().entries_checked == 10
    result = ledger.verify()
    assert result.first_bad_checkpoint == 3
    assert "#11..#12 were removed" in result.problem


def _rechain(session: Session, change_seq: int) -> None:
    """A careful forger: change one entry and recompute every hash after it, so the chain is valid."""
    rows = [dict(r._mapping) for r in audit.iter_entry_rows(session)]  # type: ignore[attr-defined]
    prev = audit.GENESIS_HASH
    for row in rows:
        entry = AuditEntry(**row)
        if entry.seq == change_seq:
            entry.reason = "nothing to see here"
        entry.prev_hash = prev
        entry.entry_hash = audit.compute_entry_hash(entry)
        session.execute(update(AuditEntry).where(AuditEntry.seq == entry.seq).values(
            reason=entry.reason, prev_hash=entry.prev_hash, entry_hash=entry.entry_hash))
        prev = entry.entry_hash


def test_a_rewritten_and_rechained_history_is_caught_by_the_signed_roots(ledger: Ledger) -> None:
    with ledger.db.unit_of_work() as session:
        unguard(session)
        # entry_hash is unique: move the old hashes out of the way first.
        session.execute(text("UPDATE audit_entries SET entry_hash = 'x' || seq"))
        _rechain(session, 6)
    result = ledger.verify()
    assert result.first_bad_seq is None, "the forger's chain is valid by construction"
    assert result.first_bad_checkpoint == 2
    assert "#5..#8 were rewritten" in result.problem


def test_a_checkpoint_saved_elsewhere_catches_a_history_re_signed_with_the_stolen_key(ledger: Ledger) -> None:
    with ledger.db.unit_of_work() as session:
        saved = checkpoints.TrustedCheckpoint.from_json(
            checkpoints.checkpoint_dict(checkpoints.latest_checkpoint(session)))  # type: ignore[arg-type]
    with ledger.db.unit_of_work() as session:
        unguard(session)
        session.execute(text("UPDATE audit_entries SET entry_hash = 'x' || seq"))
        _rechain(session, 3)
        session.execute(text("DELETE FROM audit_checkpoints"))
    for _ in range(3):
        ledger.checkpoint()  # the attacker signs new checkpoints with the key they took
    assert ledger.verify().intact
    result = ledger.verify(trusted=[saved])
    assert not result.intact
    assert result.first_bad_checkpoint == saved.seq
    assert "rewritten" in result.problem


# ------------------------------------------------------------------------------------------- proofs
@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13, 31, 32, 33])
def test_inclusion_and_consistency_proofs_verify_and_fail_when_tampered(size: int) -> None:
    leaves = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    tree = merkle.MerkleTree(leaves)
    root = tree.root()
    for index in range(size):
        proof = tree.inclusion_proof(index)
        assert merkle.verify_inclusion(leaves[index], index, size, proof, root)
        assert not merkle.verify_inclusion(merkle.leaf_hash(b"forged"), index, size, proof, root)
        for k in range(len(proof)):
            bad = [*proof[:k], bytes(32), *proof[k + 1:]]
            assert not merkle.verify_inclusion(leaves[index], index, size, bad, root)
    for old in range(1, size + 1):
        proof = tree.consistency_proof(old)
        assert merkle.verify_consistency(old, size, tree.root(old), root, proof)
        for k in range(len(proof)):
            bad = [*proof[:k], bytes(32), *proof[k + 1:]]
            assert not merkle.verify_consistency(old, size, tree.root(old), root, bad)
        if old < size:
            assert not merkle.verify_consistency(old, size, merkle.leaf_hash(b"other"), root, proof)


def test_tree_roots_follow_rfc9162_for_sizes_that_are_not_powers_of_two() -> None:
    leaves = [merkle.leaf_hash(bytes([i])) for i in range(7)]

    def mth(d: list[bytes]) -> bytes:
        if len(d) == 1:
            return d[0]
        k = 1 << ((len(d) - 1).bit_length() - 1)
        return merkle.node_hash(mth(d[:k]), mth(d[k:]))

    tree = merkle.MerkleTree(leaves)
    assert [tree.root(n) for n in range(1, 8)] == [mth(leaves[:n]) for n in range(1, 8)]
    assert tree.root(0) == merkle.EMPTY_ROOT


def test_an_entry_inclusion_proof_checks_against_the_latest_checkpoint(ledger: Ledger) -> None:
    with ledger.db.unit_of_work() as session:
        proof = checkpoints.inclusion_proof(session, 5)
    assert proof["tree_size"] == 12 and proof["checkpoint"]["seq"] == 3
    assert merkle.verify_inclusion(
        bytes.fromhex(proof["leaf_hash"]), 4, 12, [bytes.fromhex(p) for p in proof["audit_path"]],
        bytes.fromhex(proof["root_hash"]))
    assert proof["leaf_hash"] == merkle.entry_leaf(proof["entry"]["entry_hash"]).hex()


# ------------------------------------------------------------------------------- offline verifier
def _bundle(ledger: Ledger, first: int = 1, last: int = ENTRIES) -> Path:
    with ledger.db.unit_of_work() as session:
        data = checkpoints.export_bundle(session, public_key=ledger.signer.public_key, first_seq=first,
                                         last_seq=last)
    path = ledger.tmp / f"bundle-{uuid.uuid4().hex[:6]}.json"
    path.write_text(checkpoints.dump_bundle(data), encoding="utf-8")
    return path


def _offline(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(VERIFIER), *map(str, args)], capture_output=True, text=True,
                          timeout=60, check=False)


def test_the_standalone_verifier_accepts_a_good_bundle(ledger: Ledger) -> None:
    path = _bundle(ledger, 3, 9)
    done = _offline(path)
    assert done.returncode == 0, done.stderr
    assert "bundle intact: entries #3..#9 (7), 3 checkpoint(s)" in done.stdout
    pem = ledger.tmp / "pinned.pem"
    pem.write_text(public_key_pem(ledger.signer.public_key), encoding="utf-8")
    assert _offline(path, "--public-key", pem).returncode == 0


def _tampered(path: Path, change: Any) -> Path:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    out = path.with_name("tampered-" + path.name)
    out.write_text(json.dumps(data), encoding="utf-8")
    return out


@pytest.mark.parametrize("what, change, named", [
    ("an entry's reason", lambda b: b["entries"][2].update(reason="fine"), "entry #3"),
    ("an entry dropped", lambda b: b["entries"].pop(4), "entry #5"),
    ("a rechained entry", lambda b: b["entries"][-1].update(entry_hash="0" * 64), "entry #12"),
    ("a checkpoint's root", lambda b: b["checkpoints"][1].update(root_hash="1" * 64), "checkpoint #2"),
    ("a checkpoint's signature", lambda b: b["checkpoints"][0].update(signature="00" * 64), "checkpoint #1"),
    ("a consistency proof", lambda b: b["consistency_proofs"][0]["proof"].__setitem__(0, "2" * 64),
     "checkpoint #2"),
    ("an inclusion proof", lambda b: b["inclusion_proofs"]["4"].__setitem__(0, "3" * 64), "entry #4"),
    ("the first entry left out", lambda b: b["entries"].pop(0), "declares entries #1..#12 but holds #2..#12"),
    ("the last entry left out", lambda b: b["entries"].pop(), "declares entries #1..#12 but holds #1..#11"),
    ("the range removed", lambda b: b.pop("range"), "does not say which entries it holds"),
    ("checkpoint #1 left out", lambda b: b["checkpoints"].pop(0), "checkpoint #1: missing"),
])
def test_the_standalone_verifier_rejects_a_tampered_bundle(ledger: Ledger, what: str, change: Any,
                                                           named: str) -> None:
    done = _offline(_tampered(_bundle(ledger), change))
    assert done.returncode == 1, (what, done.stdout)
    assert named in done.stderr, (what, done.stderr)


def test_the_standalone_verifier_rejects_a_bundle_signed_by_another_key(ledger: Ledger) -> None:
    other = ledger.tmp / "other.pem"
    create_signing_key(other)
    pem = ledger.tmp / "other.pub"
    pem.write_text(public_key_pem(load_signer(other).public_key), encoding="utf-8")
    done = _offline(_bundle(ledger), "--public-key", pem)
    assert done.returncode == 1
    assert "not the trusted key" in done.stderr


def test_the_standalone_verifier_compares_checkpoints_saved_earlier(ledger: Ledger) -> None:
    path = _bundle(ledger)
    saved = json.loads(path.read_text(encoding="utf-8"))["checkpoints"][1]
    good = ledger.tmp / "saved.json"
    good.write_text(json.dumps(saved), encoding="utf-8")
    assert _offline(path, "--checkpoint", good).returncode == 0
    forged = ledger.tmp / "forged.json"
    forged.write_text(json.dumps({**saved, "root_hash": "4" * 64}), encoding="utf-8")
    done = _offline(path, "--checkpoint", forged)
    assert done.returncode == 1 and "checkpoint #2" in done.stderr


# -------------------------------------------------------------------------------------------- CLI
def _cli(env: CallvaultEnv, *args: str) -> Result:
    return CliRunner().invoke(app, [*args, "--data-dir", str(env.data_dir)], env=env.cli_env)


def test_cli_checkpoint_proof_export_and_verify_work_together(isolated_env: CallvaultEnv, tmp_path: Path) -> None:
    with isolated_env.runtime.db.unit_of_work() as session:
        for i in range(5):
            audit.append(session, _event(i))
    made = _cli(isolated_env, "audit", "checkpoint", "--out", str(tmp_path / "cp.json"))
    assert made.exit_code == 0, made.output
    assert json.loads(made.output)["seq"] == 1
    proof = _cli(isolated_env, "audit", "proof", "3")
    assert proof.exit_code == 0, proof.output
    assert json.loads(proof.output)["leaf_index"] == 2
    verified = _cli(isolated_env, "audit", "verify", "--checkpoint", str(tmp_path / "cp.json"))
    assert verified.exit_code == 0, verified.output
    assert "audit log intact" in verified.output and "1 signed checkpoint(s) verified" in verified.output
    with isolated_env.runtime.db.unit_of_work() as session:
        audit.append(session, _event(99))  # not yet covered: export publishes a checkpoint first
    bundle = tmp_path / "bundle.json"
    exported = _cli(isolated_env, "audit", "export", "--out", str(bundle))
    assert exported.exit_code == 0, exported.output
    done = _offline(bundle)
    assert done.returncode == 0, done.stderr
    assert "2 checkpoint(s)" in done.stdout


def test_cli_verify_names_the_first_bad_checkpoint(isolated_env: CallvaultEnv) -> None:
    assert _cli(isolated_env, "audit", "checkpoint").exit_code == 0
    with isolated_env.runtime.db.unit_of_work() as session:
        unguard(session)
        session.execute(text("UPDATE audit_checkpoints SET tree_size = tree_size + 1"))
    result = _cli(isolated_env, "audit", "verify")
    assert result.exit_code == 1
    assert "first bad checkpoint #1" in result.output


def test_cli_proof_of_an_entry_not_yet_covered_says_how_to_cover_it(isolated_env: CallvaultEnv) -> None:
    result = _cli(isolated_env, "audit", "proof", "1")
    assert result.exit_code == 5
    assert "callvault audit checkpoint" in result.output


def test_cli_public_key_is_the_one_checkpoints_verify_with(isolated_env: CallvaultEnv) -> None:
    result = _cli(isolated_env, "audit", "public-key")
    assert result.exit_code == 0 and "BEGIN PUBLIC KEY" in result.output
    key_file = isolated_env.settings.key_dir / "audit-signing-ed25519.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600


def test_harden_postgres_leaves_the_app_role_only_select_and_insert(isolated_env: CallvaultEnv) -> None:
    if isolated_env.runtime.db.dialect != "postgresql":
        result = _cli(isolated_env, "audit", "harden-postgres", "--app-role", "callvault_app")
        assert result.exit_code == 3 and "PostgreSQL" in result.output
        return
    role = f"cv_app_{uuid.uuid4().hex[:8]}"
    with isolated_env.runtime.db.unit_of_work() as session:
        session.execute(text(f'CREATE ROLE "{role}" NOLOGIN'))
        session.execute(text(f'GRANT SELECT, INSERT, UPDATE, DELETE ON audit_entries, audit_checkpoints TO "{role}"'))
    try:
        result = _cli(isolated_env, "audit", "harden-postgres", "--app-role", role)
        assert result.exit_code == 0, result.output
        with isolated_env.runtime.db.unit_of_work() as session:
            rights = set(session.scalars(text(
                "SELECT privilege_type FROM information_schema.role_table_grants "
                "WHERE grantee = :r AND table_name = 'audit_entries'"), {"r": role}))
        assert rights == {"SELECT", "INSERT"}
        with pytest.raises(Exception, match="permission denied"), \
                isolated_env.runtime.db.unit_of_work() as session:
            session.execute(text(f'SET ROLE "{role}"'))
            session.execute(text("UPDATE audit_entries SET reason = 'x' WHERE seq = 1"))
    finally:
        with isolated_env.runtime.db.unit_of_work() as session:
            session.execute(text(f'DROP OWNED BY "{role}"'))
            session.execute(text(f'DROP ROLE "{role}"'))


def test_bulk_append_writes_exactly_what_append_would(ledger: Ledger) -> None:
    with ledger.db.unit_of_work() as session:
        last = audit.append_many(session, [_event(i) for i in range(100, 105)])
    assert last == ENTRIES + 5
    assert ledger.verify().intact
    with ledger.db.unit_of_work() as session:
        assert session.scalar(select(AuditEntry.actor).where(AuditEntry.seq == last)) == "user104"


# ------------------------------------------------------------- offline verifier: malformed bundles
def _run_offline_in_process(bundle: Path, *extra: str) -> tuple[int, str]:
    """The offline verifier's ``main`` in this process (hundreds of runs; a subprocess each is slow)."""
    spec = importlib.util.spec_from_file_location("verify_audit_bundle_fuzz", VERIFIER)
    assert spec is not None and spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = tool.main([str(bundle), *extra])
    return code, err.getvalue() + out.getvalue()


@pytest.mark.parametrize("what, text_", [
    ("not JSON", '{"format": "callvault-audit-bundle/1", "entries": ['),
    ("empty file", ""),
    ("binary", "\x00\x01\x02"),
])
def test_the_standalone_verifier_says_it_cannot_read_a_file_that_is_not_json(tmp_path: Path, what: str,
                                                                             text_: str) -> None:
    path = tmp_path / "bundle.json"
    path.write_text(text_, encoding="utf-8")
    done = _offline(path)
    assert done.returncode == 2, what
    assert "cannot read input" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("what, data", [
    ("a list", []),
    ("a number", 7),
    ("a string", "callvault-audit-bundle/1"),
    ("null", None),
    ("no entries", {"format": "callvault-audit-bundle/1"}),
])
def test_the_standalone_verifier_rejects_json_that_is_not_a_bundle(tmp_path: Path, what: str, data: Any) -> None:
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    done = _offline(path)
    assert done.returncode == 1, (what, done.stdout)
    assert "NOT intact" in done.stderr and "Traceback" not in done.stderr


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=70),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def _checked_paths(bundle: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Every place in a bundle the verifier depends on (the ``hashing`` notes and ``created_at`` are
    informative only)."""
    paths: list[tuple[Any, ...]] = [("format",), ("entries",), ("checkpoints",), ("consistency_proofs",),
                                    ("anchor_checkpoint",), ("inclusion_proofs",), ("public_key",),
                                    ("public_key", "pem"), ("range",), ("range", "first_seq"),
                                    ("range", "last_seq")]
    for i, entry in enumerate(bundle["entries"]):
        paths += [("entries", i), *(("entries", i, k) for k in entry)]
    for i, cp in enumerate(bundle["checkpoints"]):
        paths += [("checkpoints", i), *(("checkpoints", i, k) for k in cp)]
    for i, item in enumerate(bundle["consistency_proofs"]):
        paths += [("consistency_proofs", i, k) for k in item]
        paths += [("consistency_proofs", i, "proof", j) for j in range(len(item["proof"]))]
    for seq, proof in bundle["inclusion_proofs"].items():
        paths += [("inclusion_proofs", seq), *(("inclusion_proofs", seq, j) for j in range(len(proof)))]
    return paths


def test_the_standalone_verifier_never_accepts_a_bundle_with_a_wrong_value_anywhere(ledger: Ledger) -> None:
    """Hypothesis puts a value of any JSON type (or nothing) where the verifier reads one: exit 1 or 2
    with a sentence, never 0, never a traceback."""
    good = json.loads(_bundle(ledger, 3, 9).read_text(encoding="utf-8"))
    paths = _checked_paths(good)
    target = ledger.tmp / "fuzzed.json"

    @settings(max_examples=250, deadline=None, derandomize=True)
    @given(path=st.sampled_from(paths), value=_JSON_VALUES, remove=st.booleans())
    def check(path: tuple[Any, ...], value: Any, remove: bool) -> None:
        data = copy.deepcopy(good)
        parent = data
        for step in path[:-1]:
            parent = parent[step]
        assume(remove or parent[path[-1]] != value)
        if remove:
            del parent[path[-1]]
        else:
            parent[path[-1]] = value
        target.write_text(json.dumps(data), encoding="utf-8")
        code, said = _run_offline_in_process(target)
        assert code in (1, 2), (path, value, remove, said)
        assert "NOT intact" in said or "cannot read input" in said, said

    check()
