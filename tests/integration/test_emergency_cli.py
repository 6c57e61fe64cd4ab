"""Issue 28 from the command line: `callvault emergency declare|reviews|review`, `callvault disclosures` and
`callvault retention extend`, acting as a person (``--as``) whose role the regulated policy decides on; each
refusal is audited and exits 5, bad input exits 2 naming the option."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from callvault.audit.models import AuditEntry
from callvault.capture.ingest import ingest_recording
from callvault.cli.main import app
from tests.support.audio import CALL_START, metadata, wav_bytes
from tests.support.env import CallvaultEnv


@pytest.fixture(scope="module")
def call(env_r: CallvaultEnv) -> str:
    result = ingest_recording(db=env_r.runtime.db, store=env_r.runtime.store, keyring=env_r.runtime.keyring,
                              audio=io.BytesIO(wav_bytes(0.5, seed=280)), metadata=metadata(started=CALL_START),
                              actor="test", actor_role="admin")
    return result.recording_id


def _cli(env: CallvaultEnv, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, [*args, "--data-dir", str(env.data_dir)], env=env.cli_env)
    return result.exit_code, result.output


def _last(env: CallvaultEnv, action: str, actor: str) -> AuditEntry:
    with env.runtime.db.unit_of_work() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == action, AuditEntry.actor == actor)
                                .order_by(AuditEntry.seq.desc()).limit(1)).one()
        session.expunge(entry)
    return entry


def test_declare_review_and_the_accounting_from_the_command_line(env_r: CallvaultEnv, call: str) -> None:
    code, text = _cli(env_r, "emergency", "declare", "--as", "bob", "--reason", "ambulance needs the caller's address",
                      "--minutes", "15")
    assert code == 0, text
    declaration = _last(env_r, "emergency.declared", "bob").object_id
    assert declaration in text
    code, text = _cli(env_r, "emergency", "reviews", "--as", "exec", "--json")
    assert code == 0 and declaration in text, text
    code, text = _cli(env_r, "emergency", "review", declaration, "--as", "exec", "--outcome", "justified",
                      "--notes", "address went to the ambulance")
    assert code == 0, text
    assert _last(env_r, "emergency.reviewed", "exec").object_id == declaration
    code, text = _cli(env_r, "disclosures", "+1 416 555 0142", "--as", "exec", "--csv")
    assert code == 0 and text.startswith("date_utc,recording_id,what,who"), text
    assert _last(env_r, "disclosures.read", "exec").details["format"] == "csv"


def test_refusals_are_audited_and_bad_input_names_the_option(env_r: CallvaultEnv, call: str) -> None:
    code, text = _cli(env_r, "emergency", "declare", "--as", "exec", "--reason", "curious about a call")
    assert code == 5 and "emergency_access.roles" in text
    assert _last(env_r, "emergency.declare", "exec").decision == "deny"
    code, text = _cli(env_r, "emergency", "declare", "--as", "alice", "--reason", "help", "--minutes", "90")
    assert code == 2 and "reason" in text and "minutes" in text
    code, text = _cli(env_r, "disclosures", "+14165550142", "--as", "lead")
    assert code == 5 and "accounting_of_disclosures.roles" in text
    assert _last(env_r, "disclosures.read", "lead").decision == "deny"
    code, text = _cli(env_r, "disclosures", "call me maybe", "--as", "exec")
    assert code == 2 and "number" in text


def test_retention_extend_from_the_command_line(env_r: CallvaultEnv, call: str) -> None:
    code, text = _cli(env_r, "retention", "extend", call, "--as", "lead", "--months", "70", "--reason", "asked")
    assert code == 5 and "retention.extension.roles" in text
    assert _last(env_r, "retention.extend", "lead").decision == "deny"
    code, text = _cli(env_r, "retention", "extend", call, "--as", "exec", "--reason", "asked", "--until", "soon")
    assert code == 2 and "until" in text
    keep = (CALL_START + timedelta(days=366 * 6)).date().isoformat()
    code, text = _cli(env_r, "retention", "extend", call, "--as", "exec", "--until", keep,
                      "--reason", "FCA letter asks for the longer period")
    assert code == 0 and keep in text, text
