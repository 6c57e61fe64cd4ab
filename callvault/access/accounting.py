"""Reading a caller's accounting of disclosures (``accounting_of_disclosures``), decided and audited.

``emergency.disclosures`` gathers the list from the audit log; this module is the gate in front of it that
the API, the CLI and the web page share: only the roles the policy names may read it (deny by default),
the number must be a phone number (E.164 after normalising), and every reading, allowed or refused, is
an audit entry, because the list says who looked at a caller's calls and why.
"""

from __future__ import annotations

import csv
import io
from datetime import date

from sqlalchemy.orm import Session

from callvault.access.emergency import Disclosure, disclosures
from callvault.audit import service as audit
from callvault.capture.metadata import normalise_number
from callvault.core.clock import Clock, system_clock
from callvault.core.errors import AccessDenied, FieldProblem, InvalidInput
from callvault.policy.decide import Actor
from callvault.policy.schema import PolicyDocument

ACTION = "disclosures.read"


def may_read(policy: PolicyDocument, role: str) -> bool:
    """Whether ``role`` is one the policy names for the accounting (none named: nobody)."""
    return bool(role) and role in policy.accounting_of_disclosures.roles


def _clauses(policy: PolicyDocument) -> tuple[str, ...]:
    return tuple(c for c in (policy.accounting_of_disclosures.clause,) if c)


def parse_number(value: str, *, default_region: str) -> str:
    """The caller's number in E.164, or ``InvalidInput`` naming the ``number`` field."""
    text = (value or "").strip()
    if not text:
        raise InvalidInput("invalid number:", [FieldProblem("number", "give the caller's phone number, "
                                                                      "e.g. +14165550142")])
    try:
        return normalise_number(text[:40], default_region)
    except ValueError as exc:
        raise InvalidInput("invalid number:", [FieldProblem("number", f"{exc}; give it like +14165550142")]) from exc


def account(
    session: Session, *, policy: PolicyDocument, actor: Actor, number: str, default_region: str,
    since: date | None = None, form: str = "list", source_ip: str | None = None, clock: Clock = system_clock,
) -> list[Disclosure]:
    """The accounting of disclosures for ``number``, for a role the policy names; the reading is audited
    (a refusal raises ``AccessDenied``: the edges put it on record with ``refusals.on_record``)."""
    account_gate(policy, actor.role)
    e164 = parse_number(number, default_region=default_region)
    found = disclosures(session, number=e164, since=since)
    audit.append(session, audit.AuditEvent(
        actor=actor.username, actor_role=actor.role, action=ACTION, decision="allow", object_type="caller_number",
        object_id=e164, reason="accounting of disclosures", clauses=_clauses(policy), source_ip=source_ip,
        details={"entries": len(found), "since": since.isoformat() if since else None, "format": form}), clock=clock)
    return found


CSV_HEADER = ("date_utc", "recording_id", "what", "who", "role", "why_purpose", "reason", "emergency_declaration",
              "audit_seq")


def _cell(value: object) -> str:
    """A CSV cell a spreadsheet will not run as a formula (a leading = + - @ gets a ')."""
    text = "" if value is None else str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not (text[:1] == "+" and text[1:].isdigit()):
        return "'" + text
    return text


def to_csv(found: list[Disclosure]) -> str:
    """The accounting as CSV, one row per disclosure, oldest first."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    for d in found:
        writer.writerow([_cell(v) for v in (
            d.at.isoformat(), d.recording_id, d.action.removeprefix("recording."), d.actor, d.actor_role, d.purpose,
            d.reason, d.emergency_declaration, d.audit_seq)])
    return out.getvalue()


def account_gate(policy: PolicyDocument, role: str) -> None:
    """``AccessDenied`` with the policy's reason unless ``role`` may read the accounting (the page checks
    before it shows even the empty form)."""
    if not may_read(policy, role):
        named = ", ".join(policy.accounting_of_disclosures.roles) or "none"
        reason = (f"role {role} may not read callers' accounting of disclosures "
                  f"(accounting_of_disclosures.roles: {named})")
        raise AccessDenied(reason, reason=reason, clauses=_clauses(policy))
