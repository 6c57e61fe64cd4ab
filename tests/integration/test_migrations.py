"""The Alembic migrations and the ORM models describe the same schema, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

import callvault.core.all_models  # noqa: F401
from callvault.core.db import Base, UTCDateTime
from callvault.core.migrate import alembic_config, upgrade_to_head
from tests.conftest import fresh_database
from tests.support.env import CallvaultEnv


def test_migrations_have_a_single_head() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert len(script.get_heads()) == 1, script.get_heads()


def test_migrated_schema_matches_the_models(env: CallvaultEnv) -> None:
    with env.runtime.db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        diff = compare_metadata(context, Base.metadata)
    assert diff == [], "\n".join(str(d) for d in diff)


def test_existing_acknowledgements_name_the_policy_content_they_were_given_for(
        request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Migration 0022 (issue 23): an acknowledgement stored by version string gets the hash of the version
    it refers to, the one in force when it was given, even when another policy reuses the version string."""
    day = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    versions = sa.table("policy_versions", *(sa.column(c) for c in ("id", "policy_id", "version", "sha256",
                        "document_yaml", "loaded_by", "active")), sa.column("effective_from", sa.Date()),
                        sa.column("loaded_at", UTCDateTime()))
    users = sa.table("users", *(sa.column(c) for c in ("id", "username", "display_name", "role", "password_hash",
                                                        "active")), sa.column("created_at", UTCDateTime()))
    acks = sa.table("policy_acknowledgements", *(sa.column(c) for c in ("id", "user_id", "policy_version")),
                    sa.column("acknowledged_at", UTCDateTime()))
    with fresh_database(request.config.getoption("--db"), tmp_path) as url:
        command.upgrade(alembic_config(url), "0021")
        engine = sa.create_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(versions.insert(), [
                    {"id": "pa", "policy_id": "policy-a", "version": "2024.1", "sha256": "a" * 64,
                     "document_yaml": "", "loaded_by": "t", "active": True, "effective_from": date(2024, 1, 1),
                     "loaded_at": day - timedelta(days=400)},
                    {"id": "pb", "policy_id": "policy-b", "version": "2024.1", "sha256": "b" * 64,
                     "document_yaml": "", "loaded_by": "t", "active": True, "effective_from": day.date(),
                     "loaded_at": day - timedelta(days=1)}])
                conn.execute(users.insert(), [{"id": u, "username": u, "display_name": "", "role": "specialist",
                                               "password_hash": "x", "active": True, "created_at": day}
                                              for u in ("before", "after", "orphan")])
                # Policy A was in force until B (same version string) took effect on ``day``.
                conn.execute(acks.insert(), [
                    {"id": user, "user_id": user, "policy_version": version, "acknowledged_at": at}
                    for user, version, at in (("before", "2024.1", day - timedelta(days=30)),
                                              ("after", "2024.1", day + timedelta(hours=1)),
                                              ("orphan", "1999.1", day))])
            upgrade_to_head(url)
            with engine.connect() as conn:
                rows = {user: sha256 for user, sha256 in conn.execute(sa.text(
                    "SELECT user_id, policy_sha256 FROM policy_acknowledgements"))}
        finally:
            engine.dispose()
    assert rows == {"before": "a" * 64, "after": "b" * 64}


def test_existing_grants_keep_the_transcript_their_play_allowed_and_nothing_more(
        request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Migration 0023 (issue 23): ``transcript`` became its own grantable action; a stored ``play`` read the
    transcript too, so it gains ``transcript``; a download-only grant gains nothing."""
    day = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    users = sa.table("users", *(sa.column(c) for c in ("id", "username", "display_name", "role", "password_hash",
                                                        "active")), sa.column("created_at", UTCDateTime()))
    reqs = sa.table("access_requests", *(sa.column(c) for c in (
        "id", "requester_id", "purpose", "crm_ref", "justification", "grant_days", "status", "decision_note")),
        sa.column("recording_ids", sa.JSON()), sa.column("actions", sa.JSON()),
        sa.column("approver_roles", sa.JSON()), sa.column("created_at", UTCDateTime()))
    grants = sa.table("access_grants", *(sa.column(c) for c in (
        "id", "request_id", "user_id", "recording_id", "purpose", "approved_by_id", "approved_by_role")),
        sa.column("actions", sa.JSON()), sa.column("starts_at", UTCDateTime()), sa.column("ends_at", UTCDateTime()))
    with fresh_database(request.config.getoption("--db"), tmp_path) as url:
        command.upgrade(alembic_config(url), "0022")
        engine = sa.create_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(users.insert(), [{"id": "u1", "username": "lead", "display_name": "",
                                               "role": "support_lead", "password_hash": "x", "active": True,
                                               "created_at": day}])
                conn.execute(reqs.insert(), [
                    {"id": r, "requester_id": "u1", "purpose": "legal_claim", "crm_ref": "C", "justification": "j",
                     "grant_days": 7, "status": status, "decision_note": "", "recording_ids": ["rec"],
                     "actions": actions, "approver_roles": ["head_of_customer_success"], "created_at": day}
                    for r, status, actions in (("r-play", "approved", ["download", "play"]),
                                               ("r-dl", "pending", ["download"]))])
                conn.execute(grants.insert(), [
                    {"id": "g-play", "request_id": "r-play", "user_id": "u1", "recording_id": "rec",
                     "purpose": "legal_claim", "approved_by_id": "u2", "approved_by_role": "head_of_customer_success",
                     "actions": ["download", "play"], "starts_at": day, "ends_at": day + timedelta(days=7)}])
            upgrade_to_head(url)
            with engine.connect() as conn:
                after_reqs = {r.id: (r.actions, r.approved_actions) for r in conn.execute(sa.select(
                    sa.table("access_requests", sa.column("id"), sa.column("actions", sa.JSON()),
                             sa.column("approved_actions", sa.JSON()))))}
                after_grant = conn.execute(sa.select(grants.c.actions)).scalar_one()
        finally:
            engine.dispose()
    assert after_reqs == {"r-play": (["download", "play", "transcript"], ["download", "play", "transcript"]),
                          "r-dl": (["download"], None)}
    assert after_grant == ["download", "play", "transcript"]
