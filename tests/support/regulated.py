"""A regulated-firm variant of policy A for the retention-minimum and emergency-access tests.

Policy A's roles and scope, with what a firm under FCA SYSC 10A must add: every call in scope recorded
(``recording_scope.mandatory``), kept at least 60 months and at most 84 (``min_age_months``), extendable by an
executive up to 84 months, no agent controls at all (``controls.agent_may: []``), and break-the-glass access
for support leads reviewed by executives within 3 days.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.env import CallvaultEnv
from tests.support.retention import World, make_world


def regulated_text(base: str, *, version: str = "2027.1", agent_may: str = "[]") -> str:
    text = base.replace('version: "2026.12"', f'version: "{version}"')
    text = text.replace("  max_age_months: 6\n  destroy_on_case_resolution: true\n",
                        "  max_age_months: 84\n  min_age_months: 60\n  min_age_clause: FCA SYSC 10A.1.11\n"
                        "  extension:\n    roles: [executive]\n    max_age_months: 84\n    clause: FCA SYSC 10A.1.11\n"
                        "  destroy_on_case_resolution: true\n")
    text = text.replace("controls:\n  personal_after_call_minutes: 15\n",
                        f"controls:\n  personal_after_call_minutes: 15\n  agent_may: {agent_may}\n")
    text = text.replace("recording_scope:\n",
                        "recording_scope:\n  mandatory: true\n  mandatory_clause: FCA SYSC 10A.1.1\n", 1)
    text += ("\nemergency_access:\n  roles: [support_lead, specialist]\n  max_minutes: 30\n"
             "  reviewer_roles: [executive]\n  review_within_days: 3\n  clause: site emergency procedure 4.2\n")
    assert "min_age_months: 60" in text and "agent_may" in text and "mandatory: true" in text
    return text


def regulated_world(request: pytest.FixtureRequest, tmp_path: Path, *, agent_may: str = "[]") -> Iterator[World]:
    from tests.conftest import POLICY_A, fresh_database

    policy = tmp_path / "regulated.yaml"
    policy.write_text(regulated_text(POLICY_A.read_text(), agent_may=agent_may))
    (tmp_path / "db").mkdir()
    with fresh_database(request.config.getoption("--db"), tmp_path / "db") as url:
        world = make_world(tmp_path / "data", url, policy, "a")
        try:
            yield world
        finally:
            world.close()


ACCOUNTING = "\naccounting_of_disclosures:\n  roles: [executive]\n  clause: site policy 9.1\n"
"""The accounting of disclosures open to executives (deny by default: the policy must name someone)."""


def regulated_policy_file(folder: Path) -> Path:
    """Policy A's loopback variant made regulated, with the accounting of disclosures for executives: what
    the API, CLI and browser tests of issue 28's edges load."""
    from tests.conftest import POLICY_A

    path = folder / "regulated.yaml"
    path.write_text(regulated_text(POLICY_A.read_text()) + ACCOUNTING)
    return path


@contextmanager
def regulated_env(backend: str, folder: Path) -> Iterator[CallvaultEnv]:
    """A ``CallvaultEnv`` (policy A's personas, MFA enrolled) under ``regulated_policy_file`` on a fresh database."""
    from tests.conftest import fresh_database

    with fresh_database(backend, folder) as url:
        environment = CallvaultEnv(folder / "data", url, regulated_policy_file(folder))
        try:
            yield environment
        finally:
            environment.close()
