"""Who may reach content, for which purpose, with whose approval, and from where (A6, A9, A11, A13, B5-B9, B13)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    Field,
    field_validator,
    model_validator,
)

from callvault.policy.schema.common import (
    CONTENT_ACTION_NAMES,
    ClauseId,
    ContentActionName,
    ContentScope,
    Identifier,
    Reach,
    Serves,
    Text,
    _Model,
    _no_duplicates,
)


# --------------------------------------------------------------------------------------------- review
class ReviewRules(_Model):
    """When the policy must be looked at again (B13)."""

    interval_months: int = Field(ge=1, le=120)
    also_on_significant_change: bool = True


# ---------------------------------------------------------------------------------------------- roles
class RoleRule(_Model):
    """What a role may reach. ``content_scope`` bounds which recordings; purposes bound why (A9)."""

    description: Text
    content_scope: ContentScope
    can_administer: bool = False
    """Runs the system (users, policy, quarantine). Grants no content access by itself."""
    mfa_required: bool = False


# ------------------------------------------------------------------------------------------- purposes
ApproverFallback = Literal["another_holder", "alternate_roles", "self_authorise_and_report"]
"""Who approves a request made by a holder of one of the purpose's approver roles (nobody approves their own)."""


class ApprovalRule(_Model):
    """Whether using a purpose needs someone else's approval first (B6, B9), and who gives it when the
    approver role itself asks (B9 names one approver, the Head of Customer Success, who may need a
    recording for their own investigation: without a rule such a request could never be granted)."""

    required: bool = False
    approver_roles: tuple[Identifier, ...] = ()
    when_requester_is_approver: ApproverFallback = "another_holder"
    """When the requester holds one of ``approver_roles``: ``another_holder`` (the default) - another person
    holding an approver role decides; ``alternate_roles`` - only the roles in ``alternate_roles`` decide
    (where one person holds the approver role, or peers should not approve each other);
    ``self_authorise_and_report`` - the requester may authorise it with a written reason, and every such
    authorisation is reported to ``misuse.report_to_roles`` (B12) and audited."""
    alternate_roles: tuple[Identifier, ...] = ()
    """The roles that decide a request of an approver-role holder under ``alternate_roles``. Deciding
    gives the alternate no content access: only the requester's grant is created."""
    approver_roles_by_requester: dict[Identifier, tuple[Identifier, ...]] = Field(default_factory=dict)
    """Approvers chosen by the requester's role (FCA SYSC 10A / firm's escalation: the desk head approves a
    trader, compliance approves a desk head), e.g. ``{trader: [desk_head], desk_head: [compliance]}``. A
    requester whose role is listed here is decided only by those roles; any other by ``approver_roles``."""

    @field_validator("approver_roles", "alternate_roles")
    @classmethod
    def _unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _no_duplicates(value, "role")

    @field_validator("approver_roles_by_requester")
    @classmethod
    def _by_requester(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for requester, approvers in value.items():
            if not approvers:
                raise ValueError(f"requester role {requester!r} names no approver; name at least one role")
            _no_duplicates(approvers, "role")
            if requester in approvers:
                raise ValueError(f"requester role {requester!r} approves its own requests; name another role")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ApprovalRule:
        # Both directions are refused: an approval nobody can give locks the purpose for good, and
        # approvers on a purpose that needs no approval suggest the author expected a check that won't happen.
        if not self.required and self.approver_roles_by_requester:
            raise ValueError("approver_roles_by_requester is named but required is false; set required: true "
                             "or remove it")
        if self.required and not self.approver_roles and not self.approver_roles_by_requester:
            raise ValueError("approval is required but no approver_roles are named; name at least one role")
        if not self.required and self.approver_roles:
            raise ValueError(
                "approver_roles are named but required is false; set required: true or remove them"
            )
        if self.when_requester_is_approver == "alternate_roles" and not self.alternate_roles:
            raise ValueError("when_requester_is_approver is alternate_roles but no alternate_roles are named; "
                             "name the roles that decide an approver's own request")
        if self.alternate_roles and self.when_requester_is_approver != "alternate_roles":
            raise ValueError("alternate_roles are named but when_requester_is_approver is "
                             f"{self.when_requester_is_approver}; set it to alternate_roles or remove them")
        overlap = [r for r in self.alternate_roles if r in self.approver_roles]
        if overlap:
            raise ValueError(f"alternate role {overlap[0]!r} is already an approver role; an alternate must be "
                             "a role that does not approve this purpose otherwise")
        return self

    def approvers_for(self, requester_role: str) -> tuple[str, ...]:
        """The roles that may decide a request made by someone holding ``requester_role``."""
        if requester_role in self.approver_roles_by_requester:
            return self.approver_roles_by_requester[requester_role]
        if requester_role in self.approver_roles and self.when_requester_is_approver == "alternate_roles":
            return self.alternate_roles
        return self.approver_roles

    def may_self_authorise(self, requester_role: str) -> bool:
        """Whether a holder of ``requester_role`` may authorise their own request (reported, B12)."""
        return (self.when_requester_is_approver == "self_authorise_and_report"
                and requester_role in self.approver_roles)


class RecordingFilter(_Model):
    """Recordings a purpose can open, on top of the role's scope: every named dimension must match."""

    teams: tuple[Identifier, ...] = ()
    directions: tuple[Literal["inbound", "outbound"], ...] = ()

    def admits(self, *, team: str | None, direction: str | None) -> str | None:
        """None when the recording passes; else what it fails, for the denial's reason."""
        if self.teams and team not in self.teams:
            return f"team {team or '(none)'} is not one of {', '.join(self.teams)}"
        if self.directions and direction not in self.directions:
            return f"direction {direction or '(unknown)'} is not {' or '.join(self.directions)}"
        return None


class PurposeRule(_Model):
    """One reason a recording may be retrieved, who may name it, and on what conditions (A6, A13, B5)."""

    description: Text
    clause_ids: tuple[ClauseId, ...] = Field(min_length=1)
    roles: tuple[Identifier, ...] = Field(min_length=1)
    approval: ApprovalRule = ApprovalRule()
    employee_consent_required: bool = False
    """The recorded employee must have consented to this purpose (A6: training)."""
    serves: Serves = "original"
    """What the purpose may be given: the original audio, or only an anonymised derivative (A6)."""
    reaches: Reach = "any_in_scope"
    """Which recordings naming this purpose can open, on top of the role's ``content_scope``.

    Why: a purpose is a reason to hear *some* calls, and for some reasons the policy text says which
    ones. ``any_in_scope`` (the default, so files written before this field keep their meaning): any
    recording in the role's scope, the person choosing (A13 lets management spot-check any call).
    ``quality_sample``: only a call drawn into a QA sample (B8 "selected at random"), and only by a
    reviewer of samples (a ``quality_review.reviewer_roles`` role, never the call's own agent), whether its
    review item is open or scored (a second reviewer scores it for calibration). ``matched_request``: only
    a recording matched to a verified caller's request or an operator's own request (B7, B10) that is
    being handled (not by the requester), and once released only by the releaser while a delivery link
    is live: the request chooses the recordings, never the person using the purpose."""
    actions: tuple[ContentActionName, ...] = CONTENT_ACTION_NAMES
    """The content actions this purpose allows: listening (``play``, ``transcript``, ``monitor``) and
    sharing a copy (``download``, ``export``). Why: A13 lists fewer reasons for sharing recordings than
    A6 lists for retrieving them, so a purpose may allow listening but not sharing. Default: all."""
    role_actions: dict[Identifier, tuple[ContentActionName, ...]] = Field(default_factory=dict)
    """Narrows ``actions`` for some roles (e.g. ``{trader: [play]}``: a trader may listen, not take a copy);
    each list a subset of ``actions``. A role not named keeps ``actions``."""
    recordings: RecordingFilter = Field(default_factory=lambda: RecordingFilter())
    """Which recordings the purpose can open at all, narrowing the role's scope (e.g. only the ``rates``
    desk's calls for a rates complaint); empty: no narrowing."""

    def actions_for(self, role: str) -> tuple[str, ...]:
        """The content actions a holder of ``role`` may take under this purpose."""
        return self.role_actions.get(role, self.actions)

    @field_validator("actions")
    @classmethod
    def _unique_actions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("name at least one action (play, transcript, monitor, download, export); a purpose "
                             "that allows none would never open anything: remove the purpose instead")
        return _no_duplicates(value, "action")

    @model_validator(mode="after")
    def _role_actions_within(self) -> PurposeRule:
        for role, actions in self.role_actions.items():
            if role not in self.roles:
                raise ValueError(f"role_actions names role {role!r}, which may not use this purpose "
                                 f"(open to: {', '.join(self.roles)})")
            if not actions:
                raise ValueError(f"role_actions.{role} names no action; remove the role from roles instead")
            _no_duplicates(actions, "action")
            wider = [a for a in actions if a not in self.actions]
            if wider:
                raise ValueError(f"role_actions.{role} adds {', '.join(wider)}, which the purpose's actions "
                                 f"({', '.join(self.actions)}) leave out; it may only narrow them")
        return self

    @field_validator("roles")
    @classmethod
    def _unique_roles(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _no_duplicates(value, "role")

    @field_validator("clause_ids")
    @classmethod
    def _unique_clauses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _no_duplicates(value, "clause id")


# -------------------------------------------------------------------------------------------- network
def _check_cidr(value: str) -> str:
    try:
        network = ipaddress.ip_network(value.strip(), strict=True)
    except ValueError as exc:
        # strict=True: "10.20.0.1/16" is refused rather than widened silently to 10.20.0.0/16.
        raise ValueError(
            f"{value!r} is not a network in CIDR form (e.g. 10.20.0.0/16 or ::1/128): {exc}"
        ) from exc
    return str(network)


Cidr = Annotated[str, AfterValidator(_check_cidr)]


class NetworkRules(_Model):
    """Where content may be reached from (A11). ``per_role`` narrows ``allow`` for those roles."""

    allow: tuple[Cidr, ...] = Field(min_length=1)
    per_role: dict[Identifier, tuple[Cidr, ...]] = Field(default_factory=dict)
    require_device_certificate: bool = False
    """Company devices only (A11): needs a client certificate verified by the trusted reverse proxy."""

    def permits(self, address: str, role: str | None = None) -> bool:
        """Whether a client address may reach the system, for ``role`` if given. Bad addresses: no."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False

        def inside(cidrs: Iterable[str]) -> bool:
            return any(ip in ipaddress.ip_network(c) for c in cidrs)

        if not inside(self.allow):
            return False
        if role is not None and role in self.per_role:
            return inside(self.per_role[role])
        return True


