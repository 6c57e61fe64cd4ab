"""Policy files the tests derive from the shipped ones, written where a test's environment loads them."""

from __future__ import annotations

from pathlib import Path

import yaml


def policy_a_with_erasure(folder: Path) -> Path:
    """Policy A whose caller notice also promises deletion (``notice.caller_requests: [copy, erasure]``): none
    of the shipped policies does, so the erasure path is tested on this variant."""
    from tests.conftest import POLICY_A

    doc = yaml.safe_load(POLICY_A.read_text(encoding="utf-8"))
    doc["notice"]["caller_requests"] = ["copy", "erasure"]
    doc["notice"]["public_text"] += " You may also ask us to delete recordings of your calls."
    policy = folder / "policy-a-erasure.yaml"
    policy.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return policy


def policy_a_with_team_reviewer(folder: Path) -> Path:
    """Policy A whose team leads review only their own team's calls (``support_lead``: ``own_team``) and whose
    review purpose needs the recorded employee's consent: none of the shipped policies has a team-scoped
    reviewer or a review purpose a reviewer can be refused, so the quality views' scope and the decision on
    reading an item's reviews are tested on this variant. A second team (billing) is recorded, outside the
    leads' scope. Spot checks leave live monitoring (a live call
    cannot carry the employee's consent, so the policy would not load with it there)."""
    from tests.conftest import POLICY_A

    doc = yaml.safe_load(POLICY_A.read_text(encoding="utf-8"))
    doc["roles"]["support_lead"]["content_scope"] = "own_team"
    doc["recording_scope"]["teams"].append("billing")  # a second recorded team, outside the team leads' scope
    doc["purposes"]["spot_check"]["employee_consent_required"] = True
    doc["monitoring"]["purposes"] = [p for p in doc["monitoring"]["purposes"] if p != "spot_check"]
    doc["monitoring"]["default_purpose"] = doc["monitoring"]["purposes"][0]
    policy = folder / "policy-a-team-reviewer.yaml"
    policy.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return policy
