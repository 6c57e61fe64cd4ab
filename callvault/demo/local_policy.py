"""A loopback variant of a policy file, for the demo and the test suite only.

The shipped policy files admit no loopback address: behind a reverse proxy on the same host that is not
listed in ``CALLVAULT_TRUSTED_PROXIES``, every client would look like ``127.0.0.1`` and loopback in the
allow-list would open access from anywhere (issue 23). The demo, though, serves a browser on the same
machine with no proxy at all. Rather than a switch in the product that widens the network rule at run
time, the demo writes *its own policy file*: the shipped text, comments and all, with loopback added to
``network.allow`` (and to each ``per_role`` list) and the company-device check off, under a header that
says so. The widening is then visible where every rule is: in the policy in force, its hash and audit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from callvault.core.errors import InvalidInput
from callvault.policy.loader import parse_policy_text

LOOPBACK = ("127.0.0.0/8", "::1/128")
"""What the variant adds: this machine, over IPv4 and IPv6."""

HEADER = (
    "# LOCAL DEMO/TEST VARIANT of {source}, written by callvault. It differs from that file only in\n"
    "# `network`: loopback ({loopback}) is admitted and the company-device check is off, so a browser on\n"
    "# this machine reaches a server with no reverse proxy in front. Never load this file in production:\n"
    "# behind a same-host proxy it admits every client (see `callvault policy check`).\n"
)


def _network_block(lines: list[str]) -> tuple[int, int]:
    """(first, end) line indexes of the top-level ``network:`` mapping; its trailing blank lines excluded."""
    start = next((i for i, line in enumerate(lines) if line.startswith("network:")), None)
    if start is None:
        raise InvalidInput("the policy has no top-level network section to add loopback to")
    end = start + 1
    while end < len(lines) and (lines[end][:1] in (" ", "\t") or not lines[end].strip()):
        end += 1
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    return start, end


def loopback_variant_text(text: str, *, source: str) -> str:
    """``text`` with loopback admitted and the device check off; every other line is kept as written."""
    shipped = parse_policy_text(text, source=source)  # a broken file is reported as the file it is
    network: dict[str, Any] = shipped.network.model_dump(mode="json")
    network["allow"] = [*network["allow"], *(c for c in LOOPBACK if c not in network["allow"])]
    network["per_role"] = {role: [*cidrs, *(c for c in LOOPBACK if c not in cidrs)]
                           for role, cidrs in network["per_role"].items()}
    network["require_device_certificate"] = False
    lines = text.splitlines(keepends=True)
    start, end = _network_block(lines)
    block = yaml.safe_dump({"network": network}, sort_keys=False, default_flow_style=False)
    variant = (HEADER.format(source=source, loopback=", ".join(LOOPBACK))
               + "".join(lines[:start]) + block + "".join(lines[end:]))
    parse_policy_text(variant, source=f"loopback variant of {source}")  # must still be a valid policy
    return variant


def write_loopback_variant(policy_file: Path, target: Path) -> Path:
    """Write the loopback variant of ``policy_file`` to ``target`` (see the module doc) and return it."""
    try:
        text = policy_file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read policy file {policy_file}: {exc}") from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(loopback_variant_text(text, source=str(policy_file)), encoding="utf-8")
    return target
