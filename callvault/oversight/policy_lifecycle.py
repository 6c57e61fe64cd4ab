"""Policy lifecycle (B13): comparing stored versions, review-due reminders, who still owes an acknowledgement.

Re-acknowledgement itself needs nothing here: ``decide()`` admits only users who acknowledged the
policy in force, matched by its content hash, so loading a new version (or another policy that reuses
the version string) locks everyone out of content until they acknowledge it; ``unacknowledged_users``
is the list an administrator chases.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from callvault.core.clock import Clock, system_clock
from callvault.core.errors import InvalidInput, NotFound
from callvault.identity.models import PolicyAcknowledgement, User
from callvault.notify import service as notify
from callvault.policy import service as policy_service
from callvault.policy.loader import parse_policy_text, policy_to_json
from callvault.policy.models import PolicyVersion
from callvault.policy.schema import PolicyDocument

REMIND_DAYS_BEFORE = 30


def find_version(session: Session, ref: str) -> PolicyVersion:
    """A stored version by ``VERSION`` or ``POLICY_ID@VERSION``."""
    policy_id, _, version = ref.rpartition("@")
    query = select(PolicyVersion).where(PolicyVersion.version == version)
    if policy_id:
        query = query.where(PolicyVersion.policy_id == policy_id)
    rows = list(session.scalars(query))
    if not rows:
        known = ", ".join(f"{r.policy_id}@{r.version}" for r in session.scalars(
            select(PolicyVersion).order_by(PolicyVersion.loaded_at)))
        raise NotFound(f"no stored policy version {ref!r}; stored: {known or 'none'}")
    if len(rows) > 1:
        raise InvalidInput(f"version {version!r} exists for several policies; write POLICY_ID@{version}")
    return rows[0]


def _flatten(value: Any, path: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{path}.{key}" if path else str(key)))
        return out or {path: {}}
    return {path: value}


@dataclass(frozen=True)
class PolicyDiff:
    old: PolicyVersion
    new: PolicyVersion
    changes: list[tuple[str, Any, Any]]
    """(dotted path, old value or None, new value or None) for every rule that differs."""
    text_diff: list[str]
    """Unified diff of the two YAML documents as loaded."""

    def render(self) -> str:
        lines = [f"policy {self.old.policy_id}@{self.old.version} (effective {self.old.effective_from}) → "
                 f"{self.new.policy_id}@{self.new.version} (effective {self.new.effective_from})", ""]
        if not self.changes:
            lines.append("No rule differs.")
        for path, old, new in self.changes:
            if old is None:
                lines.append(f"+ {path}: {new!r}")
            elif new is None:
                lines.append(f"- {path}: {old!r}")
            else:
                lines.append(f"~ {path}: {old!r} → {new!r}")
        if self.text_diff:
            lines += ["", "YAML as loaded:", *self.text_diff]
        return "\n".join(lines) + "\n"


def diff_versions(session: Session, old_ref: str, new_ref: str) -> PolicyDiff:
    """What changed between two stored versions: rule by rule, and the YAML text."""
    old, new = find_version(session, old_ref), find_version(session, new_ref)
    old_doc = policy_to_json(parse_policy_text(old.document_yaml, source=f"{old.policy_id}@{old.version}"))
    new_doc = policy_to_json(parse_policy_text(new.document_yaml, source=f"{new.policy_id}@{new.version}"))
    a, b = _flatten(old_doc), _flatten(new_doc)
    changes = [(path, a.get(path), b.get(path)) for path in sorted(set(a) | set(b)) if a.get(path) != b.get(path)]
    text = [line.rstrip("\n") for line in difflib.unified_diff(
        old.document_yaml.splitlines(), new.document_yaml.splitlines(),
        fromfile=f"{old.policy_id}@{old.version}", tofile=f"{new.policy_id}@{new.version}", lineterm="")]
    return PolicyDiff(old=old, new=new, changes=changes, text_diff=text)


def unacknowledged_users(session: Session, *, policy: PolicyDocument) -> list[dict[str, Any]]:
    """Active users who have not acknowledged the policy in force (its content, by hash), with the last
    version they did."""
    acked = {uid for (uid,) in session.execute(
        select(PolicyAcknowledgement.user_id).where(PolicyAcknowledgement.policy_sha256 == policy.content_sha256))}
    out = []
    for user in session.scalars(select(User).where(User.active.is_(True)).order_by(User.username)):
        if user.id in acked:
            continue
        last = session.scalar(select(PolicyAcknowledgement.policy_version)
                              .where(PolicyAcknowledgement.user_id == user.id)
                              .order_by(PolicyAcknowledgement.acknowledged_at.desc()).limit(1))
        out.append({"username": user.username, "role": user.role, "last_acknowledged_version": last})
    return out


@dataclass(frozen=True)
class ReviewStatus:
    policy_id: str
    version: str
    effective_from: date
    review_due_on: date
    days_left: int

    @property
    def stage(self) -> str | None:
        if self.days_left < 0:
            return "overdue"
        if self.days_left <= REMIND_DAYS_BEFORE:
            return "due_soon"
        return None


def review_status(session: Session, *, clock: Clock = system_clock) -> ReviewStatus:
    """When the policy in force is due for review (its effective date plus ``review.interval_months``)."""
    doc = policy_service.current_policy(session, clock=clock)
    due = doc.review_due_on()
    return ReviewStatus(policy_id=doc.policy_id, version=doc.version, effective_from=doc.effective_from,
                        review_due_on=due, days_left=(due - clock.now().date()).days)


def send_review_reminders(session: Session, *, mail_domain: str = "localhost", clock: Clock = system_clock) -> int:
    """Mail every administrator once when review falls due within 30 days, and once more when overdue."""
    status = review_status(session, clock=clock)
    stage = status.stage
    if stage is None:
        return 0
    doc = policy_service.current_policy(session, clock=clock)
    admin_roles = [name for name, role in doc.roles.items() if role.can_administer]
    queued = 0
    when = (f"is overdue since {status.review_due_on}" if stage == "overdue"
            else f"is due on {status.review_due_on} ({status.days_left} days)")
    smtp = notify.SmtpSettings(mail_domain=mail_domain)
    also = " and after any significant change to the recording system" if doc.review.also_on_significant_change else ""
    for user in session.scalars(select(User).where(User.role.in_(admin_roles), User.active.is_(True))):
        body = (f"The review of policy {doc.policy_id} version {doc.version} (effective {doc.effective_from}) "
                f"{when}.\nThe policy is reviewed every {doc.review.interval_months} months{also} (B13).\n\n"
                "Load the reviewed version with `callvault policy load FILE`; everyone will be asked to "
                "acknowledge it again.\n")
        mail = notify.enqueue(
            session, to=notify.address_for(user.username, getattr(user, "email", None), smtp),
            recipient_user=user.username, subject=f"[callvault] Policy review {when}"[:300], body=body,
            dedup_key=f"policy-review:{doc.policy_id}@{doc.version}:{stage}:{user.username}"[:200], clock=clock)
        queued += mail is not None
    return queued

