"""Valid but risky: what ``callvault policy check`` warns about in a policy that loads (issue 23).

The schema refuses what cannot work; this module names what works and is probably not meant: a network
rule that admits (almost) anyone, loopback admitted where a same-host reverse proxy would make every
client look local, a device check no proxy can satisfy, a role that reaches content on a password alone.
Each warning carries the YAML location and line, and says what to do. Whether a proxy is trusted is a
deployment setting (``CALLVAULT_TRUSTED_PROXIES``), so the caller passes the configured networks.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import yaml

from callvault.policy.loader import format_location
from callvault.policy.schema import PolicyDocument

WIDE_PREFIX = {4: 8, 6: 16}
"""A network shorter than this prefix (more than 16.7 million IPv4 addresses, or a /16 of IPv6) is
"very wide": wider than any office network, so most likely a mistake or a way around the rule."""

_LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


@dataclass(frozen=True)
class PolicyRisk:
    """One warning: where in the file, and what to do about it."""

    location: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = self.location if self.line is None else f"{self.location} (line {self.line})"
        return f"{where}: {self.message}"


def _line(root: yaml.Node | None, loc: tuple[str | int, ...]) -> int | None:
    node = root
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            found = node.value[part]
        else:
            found = None
        if found is None:
            break
        node, line = found, found.start_mark.line + 1
    return line


def _covered(net: ipaddress.IPv4Network | ipaddress.IPv6Network, proxies: Sequence[str]) -> bool:
    """Whether a trusted proxy sits inside ``net`` (a same-host proxy on 127.0.0.1 is listed), so that
    what it forwards is believed and its clients are checked by their own addresses."""
    trusted = [ipaddress.ip_network(p, strict=False) for p in proxies]
    return any(net.version == t.version and net.overlaps(t) for t in trusted)


def _network_risks(doc: PolicyDocument, proxies: Sequence[str]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    lists: list[tuple[tuple[str | int, ...], tuple[str, ...]]] = [(("network", "allow"), doc.network.allow)]
    lists += [(("network", "per_role", role), cidrs) for role, cidrs in doc.network.per_role.items()]
    for path, cidrs in lists:
        for i, cidr in enumerate(cidrs):
            net = ipaddress.ip_network(cidr)
            if net.prefixlen == 0:
                yield (*path, i), (f"{cidr} admits every address on the internet (A11: access only from the "
                                   "secured network); list your office or VPN networks instead")
            elif net.prefixlen < WIDE_PREFIX[net.version]:
                yield (*path, i), (f"{cidr} is very wide ({net.num_addresses:,} addresses), wider than any office "
                                   "network; list your office or VPN networks instead")
            loopback = next((lo for lo in _LOOPBACK if lo.version == net.version and lo.overlaps(net)), None)
            if loopback is not None and net.prefixlen and not _covered(loopback, proxies):
                yield (*path, i), (f"{cidr} admits loopback ({loopback}) but no trusted proxy covers it: behind a "
                                   "reverse proxy on this host every client would look like loopback and be "
                                   "admitted from anywhere. Set CALLVAULT_TRUSTED_PROXIES to the proxy's address "
                                   "(e.g. 127.0.0.1/32), or remove the entry")
    if doc.network.require_device_certificate and not proxies:
        yield ("network", "require_device_certificate"), (
            "company devices are required, but CALLVAULT_TRUSTED_PROXIES is not set here: only a trusted "
            "TLS-terminating proxy can vouch for a client certificate, so every request would be refused. "
            "Configure the proxy (docs/operations.md) and list it in CALLVAULT_TRUSTED_PROXIES")


def _role_risks(doc: PolicyDocument) -> Iterator[tuple[tuple[str | int, ...], str]]:
    for name, role in doc.roles.items():
        if (role.content_scope != "none" or role.can_administer) and not role.mfa_required:
            what = "reaches recordings" if role.content_scope != "none" else "administers the system"
            yield ("roles", name, "mfa_required"), (
                f"role {name!r} {what} on a password alone; set mfa_required: true (A12 asks for a password, "
                "a stolen one should not be enough)")
    if not doc.acknowledgement_required:
        yield ("acknowledgement_required",), (
            "users reach recordings without acknowledging the policy (A10 asks that they have); set it to true")


def policy_risks(doc: PolicyDocument, text: str, *, trusted_proxies: Sequence[str]) -> list[PolicyRisk]:
    """Warnings for a valid policy ``doc`` parsed from ``text``, given the deployment's trusted proxies."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        root = None
    found = [*_network_risks(doc, trusted_proxies), *_role_risks(doc)]
    return [PolicyRisk(format_location(loc), message, _line(root, loc)) for loc, message in found]
