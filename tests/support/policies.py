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
