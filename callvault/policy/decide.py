"""The single gate for reaching recordings: ``decide()`` says yes or no, why, and under which clauses.

Why one pure function: every path to a recording (API, web UI, export, transcript, CLI) must apply the
same written policy, and every decision must be explainable in the audit log. Keeping the rules here,
free of I/O, means they are tested exhaustively once and the callers only gather facts (who, which
recording, which approvals) and record the answer.

Deny by default: each rule that cannot be shown to hold ends in a denial whose ``reason`` is a sentence
the person can act on and whose ``clauses`` cite the requirement ids (A9, B6, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal

from callvault.policy.schema import PolicyDocument, PurposeRule, RoleRule

__all__ = [
    "CONTENT_ACTIONS",
    "GRANTABLE_ACTIONS",
    "Action",
    "Actor",
    "Decision",
    "EmergencyFacts",
    "Grant",
    "QualityItemFacts",
    "RecordingFacts",
    "Scope",
    "SubjectMatchFacts",
    "allowed_purposes",
    "decide",
    "has_acknowledged",
    "offered_purposes",
    "request_link",
    "role_title",
    "visible_scope",
]


class Action(StrEnum):
    """What the actor wants to do with a recording."""

    PLAY = "play"
    DOWNLOAD = "download"
    VIEW_METADATA = "view_metadata"
    EXPORT = "export"
    TRANSCRIPT = "transcript"
    MONITOR = "monitor"
    """Listen to a call while it happens (the policy's ``monitoring`` section, A7)."""


CONTENT_ACTIONS: frozenset[Action] = frozenset(
    {Action.PLAY, Action.DOWNLOAD, Action.EXPORT, Action.TRANSCRIPT, Action.MONITOR}
)
"""Actions that reach what was said; each needs a purpose (A6, A13, B5)."""

GRANTABLE_ACTIONS: tuple[str, ...] = ("play", "transcript", "download", "export")
"""What an approval may allow (B6, B9), each named by the request and approved one by one: listening,
reading what was said, taking a copy away, and a release's export are different uses of a call."""

REQUEST_PAGE = "/access/new"
"""Where a person asks for an approval; refusals an approval would lift link it, prefilled."""


@dataclass(frozen=True)
class Actor:
    """The signed-in person, as the policy sees them."""

    user_id: str
    username: str
    role: str
    extension: str | None = None
    team: str | None = None
    acknowledged_policy_sha256: str | None = None
    """The content hash of the policy this person acknowledged, when it is the one in force
    (``PolicyDocument.content_sha256``): a version string alone can be reused by another policy."""


@dataclass(frozen=True)
class QualityItemFacts:
    """A QA review item (B8) that holds the recording: what a ``quality_sample`` purpose rests on."""

    item_id: str
    sample_id: str = ""
    open: bool = True
    """Still waiting for its first score. A scored item stays reachable too: a second reviewer scores the
    same call for calibration, and the first may revisit their review; it is still the random draw's call."""


@dataclass(frozen=True)
class SubjectMatchFacts:
    """A verified subject request (B7, B10) the recording is matched to: what ``matched_request`` rests on."""

    request_id: str
    requester_user_id: str | None = None
    """The operator whose own request it is (B10); they may not handle it. None for a caller's request."""
    released_by: str | None = None
    """Once released: the releaser's user id; only they reach it (to serve a live delivery link)."""


@dataclass(frozen=True)
class RecordingFacts:
    """What the policy needs to know about one recording (no content)."""

    recording_id: str
    extension: str | None
    agent: str | None
    team: str | None
    quarantined: bool = False
    employee_consents: frozenset[str] = frozenset()
    """Purposes the recorded employee has consented to (A6)."""
    state: str = "available"
    """Only ``available`` recordings can be reached; any other state (pending, destroyed...) cannot, except
    that a ``failed`` capture's metadata can be seen (it has no content)."""
    quality_items: tuple[QualityItemFacts, ...] = ()
    """The QA review items holding this recording (gathered from the database, never from the client)."""
    subject_matches: tuple[SubjectMatchFacts, ...] = ()
    """The verified subject requests this recording is matched to and that are being handled."""
    direction: str | None = None
    """``inbound`` or ``outbound``: a purpose's ``recordings.directions`` filter reads it."""


@dataclass(frozen=True)
class Grant:
    """An approved access request (B6, B9), limited in time and actions.

    The caller should pass only grants in force; ``decide`` checks again (``ends_at`` against ``now``,
    the actions, and that nobody approved their own request), so a stale list cannot widen access.
    """

    grant_id: str
    user_id: str
    recording_id: str
    purpose: str
    approved_by_role: str
    actions: frozenset[str] = frozenset(GRANTABLE_ACTIONS)
    ends_at: datetime | None = None
    """None only in hand-built grants; a grant created by an approval always ends."""
    approved_by: str = ""
    """The approver's user id; a grant approved by its own holder is ignored."""


@dataclass(frozen=True)
class Decision:
    """The answer, with the reason a person reads and the clauses an auditor checks."""

    allowed: bool
    reason: str
    clauses: tuple[str, ...]
    purpose: str | None
    """The purpose named in the request (also on denials, so the audit log shows what was asked)."""
    serves: str | None
    """``"original"``, ``"anonymised_derivative"`` or ``"redacted"`` when allowed; None when denied."""
    request_actions: tuple[str, ...] = field(default=(), kw_only=True)
    """On a denial an approved access request would lift: the actions to ask for (so a page can offer
    "request download" rather than a dead end). Empty when no request could help."""
    emergency_declaration: str | None = field(default=None, kw_only=True)
    """The emergency declaration that allowed it (``emergency_access``), recorded in the audit entry."""


@dataclass(frozen=True)
class EmergencyFacts:
    """An emergency ("break the glass") declaration by the actor (gathered from the database)."""

    declaration_id: str
    user_id: str
    role: str
    ends_at: datetime


@dataclass(frozen=True)
class Scope:
    """Which recordings an actor may see at all, for filtering searches before any per-item decision."""

    kind: Literal["all", "own_extension", "own_team", "none"]
    extension: str | None = None
    team: str | None = None


_PURPOSE_CLAUSES = ("A6", "A13", "B5")
_ROLE_CLAUSES = ("A9",)
_ACK_CLAUSES = ("A10", "B13")


def _deny(reason: str, clauses: Sequence[str], purpose: str | None) -> Decision:
    return Decision(
        allowed=False, reason=reason, clauses=tuple(dict.fromkeys(clauses)), purpose=purpose, serves=None
    )


_SMALL_WORDS = frozenset({"of", "and", "the", "for", "to"})


def role_title(role_id: str) -> str:
    """``head_of_customer_success`` -> ``Head of Customer Success``, for messages people read."""
    words = role_id.split("_")
    return " ".join(w if (i and w in _SMALL_WORDS) else w[:1].upper() + w[1:] for i, w in enumerate(words))


def _roles_text(roles: Sequence[str]) -> str:
    titles = [role_title(r) for r in roles]
    return titles[0] if len(titles) == 1 else ", ".join(titles[:-1]) + " or " + titles[-1]


def _policy_name(policy: PolicyDocument) -> str:
    return f"policy {policy.policy_id} version {policy.version}"


def has_acknowledged(policy: PolicyDocument, actor: Actor) -> bool:
    """Whether ``actor`` acknowledged exactly this policy: its content, by hash, not its version string."""
    return actor.acknowledged_policy_sha256 is not None and actor.acknowledged_policy_sha256 == policy.content_sha256


def _acknowledged(policy: PolicyDocument, actor: Actor) -> bool:
    return not policy.acknowledgement_required or has_acknowledged(policy, actor)


def allowed_purposes(policy: PolicyDocument, role: str) -> list[str]:
    """The purposes ``role`` may name, in the policy's order; none for an unknown role."""
    return [pid for pid, rule in policy.purposes.items() if role in rule.roles]


def visible_scope(*, policy: PolicyDocument, actor: Actor) -> Scope:
    """The recordings ``actor`` may see listed. Anything uncertain (unknown role, no extension on file,
    policy not acknowledged) gives ``none``: a search must never show more than ``decide()`` would allow.
    """
    role = policy.roles.get(actor.role)
    if role is None or not _acknowledged(policy, actor):
        return Scope(kind="none")
    if role.content_scope == "all":
        return Scope(kind="all")
    if role.content_scope == "own_extension" and actor.extension:
        return Scope(kind="own_extension", extension=actor.extension)
    if role.content_scope == "own_team" and actor.team:
        return Scope(kind="own_team", team=actor.team)
    return Scope(kind="none")


def _scope_denial(
    role_id: str, role: RoleRule, actor: Actor, recording: RecordingFacts, purpose: str | None
) -> Decision | None:
    """None when the recording is within the role's reach; otherwise the denial explaining why."""
    if role.content_scope == "all":
        return None
    if role.content_scope == "own_extension":
        if not actor.extension:
            return _deny(
                f"Role {role_id!r} may only reach recordings of its own extension, and no extension is "
                f"on file for {actor.username}.", _ROLE_CLAUSES, purpose,
            )
        if recording.extension != actor.extension:
            return _deny(
                f"Role {role_id!r} may only reach recordings of its own extension ({actor.extension}); "
                f"this recording is on extension {recording.extension or '(none)'}.", _ROLE_CLAUSES, purpose,
            )
        return None
    if role.content_scope == "own_team":
        if not actor.team:
            return _deny(
                f"Role {role_id!r} may only reach recordings of its own team, and no team is on file "
                f"for {actor.username}.", _ROLE_CLAUSES, purpose,
            )
        if recording.team != actor.team:
            return _deny(
                f"Role {role_id!r} may only reach recordings of its own team ({actor.team}); "
                f"this recording belongs to team {recording.team or '(none)'}.", _ROLE_CLAUSES, purpose,
            )
        return None
    return _deny(f"Role {role_id!r} has no access to recordings.", _ROLE_CLAUSES, purpose)


def _grant_covers(grant: Grant, action: Action) -> bool:
    return action.value in grant.actions


def request_link(recording_id: str, purpose: str, action: str) -> str:
    """The request page, prefilled to ask for ``action`` on one recording for ``purpose``."""
    return f"{REQUEST_PAGE}?recording={recording_id}&purpose={purpose}&actions={action}"


def _grant_counts(grant: Grant, actor: Actor, rule: PurposeRule) -> bool:
    """Whether the grant's approver could approve this actor's request under the purpose's rule (B9)."""
    if grant.approved_by_role not in rule.approval.approvers_for(actor.role):
        return False
    if grant.approved_by == actor.user_id:  # nobody approves their own request, unless the policy says so
        return rule.approval.may_self_authorise(actor.role) and grant.approved_by_role == actor.role
    return True


def _grant_denial(
    actor: Actor, action: Action, recording: RecordingFacts, purpose_id: str, rule: PurposeRule,
    grants: Sequence[Grant], now: datetime | None,
) -> Decision | None:
    if not rule.approval.required:
        return None
    approvers = rule.approval.approvers_for(actor.role)
    matching = [
        g for g in grants
        if g.user_id == actor.user_id and g.recording_id == recording.recording_id and g.purpose == purpose_id
        and _grant_counts(g, actor, rule) and (now is None or g.ends_at is None or g.ends_at > now)
    ]
    clauses = tuple(dict.fromkeys(("B6", "B9", *rule.clause_ids)))
    if any(_grant_covers(g, action) for g in matching):
        return None
    link = request_link(recording.recording_id, purpose_id, action.value)
    if matching:
        allowed = [a for a in GRANTABLE_ACTIONS if any(a in g.actions for g in matching)]
        return Decision(
            allowed=False, purpose=purpose_id, serves=None, clauses=clauses, request_actions=(action.value,),
            reason=f"The approval {actor.username} holds for purpose {purpose_id!r} on this recording allows only "
                   f"{', '.join(allowed)}, not {action.value}; ask for {action.value} on the request page: {link}",
        )
    return Decision(
        allowed=False, purpose=purpose_id, serves=None, clauses=clauses, request_actions=(action.value,),
        reason=f"Purpose {purpose_id!r} needs approval by {_roles_text(approvers)} for this recording before "
               f"{actor.username} may {action.value} it (it needs approval from {' or '.join(approvers)}); file an "
               f"access request with the CRM ticket on the request page and wait for approval: {link}",
    )


_ACTION_NAME = {Action.PLAY: "play", Action.TRANSCRIPT: "transcript", Action.MONITOR: "monitor",
                Action.DOWNLOAD: "download", Action.EXPORT: "export"}
_LISTENING = ("play", "transcript", "monitor")


def _action_denial(policy: PolicyDocument, purpose_id: str, rule: PurposeRule, action: Action,
                   role: str = "") -> Decision | None:
    """None when the purpose allows ``action`` (for ``role``); else a denial naming the purposes that do (A13)."""
    wanted = _ACTION_NAME[action]
    if wanted in rule.actions and wanted in rule.actions_for(role):
        return None
    if wanted in rule.actions:
        narrowed = rule.actions_for(role)
        return _deny(
            f"Purpose {purpose_id!r} allows role {role!r} only {', '.join(narrowed)} "
            f"(purposes.{purpose_id}.role_actions), not {action.value}.",
            (*rule.clause_ids, *_PURPOSE_CLAUSES), purpose_id,
        )
    others = [pid for pid, r in policy.purposes.items() if wanted in r.actions and pid != purpose_id]
    kind = "listening" if all(a in _LISTENING for a in rule.actions) else "only " + ", ".join(rule.actions)
    return _deny(
        f"Purpose {purpose_id!r} allows {kind} ({', '.join(rule.actions)}), not {action.value}; "
        f"{action.value} needs one of the purposes that allow it: {', '.join(others) or 'none'}.",
        (*rule.clause_ids, *_PURPOSE_CLAUSES), purpose_id,
    )


def _reach_denial(
    policy: PolicyDocument, actor: Actor, recording: RecordingFacts, purpose_id: str, rule: PurposeRule
) -> Decision | None:
    """None when ``recording`` is one this purpose can open for ``actor`` (``PurposeRule.reaches``)."""
    if rule.reaches == "quality_sample":
        clauses = (*rule.clause_ids, "B8")
        qr = policy.quality_review
        if qr is None or actor.role not in qr.reviewer_roles:
            return _deny(f"Purpose {purpose_id!r} reaches only calls in a QA sample, and role {actor.role!r} does "
                         "not review samples.", clauses, purpose_id)
        if recording.agent and recording.agent == actor.username.lower():
            return _deny(f"Purpose {purpose_id!r} reaches only calls in a QA sample reviewed by someone else; "
                         "nobody reviews their own calls.", clauses, purpose_id)
        if recording.quality_items:
            return None
        return _deny(f"{purpose_id!r} reaches only calls in a QA sample you review, and this call was not drawn "
                     "into one; for other calls file an access request naming a purpose.", clauses, purpose_id)
    if rule.reaches == "matched_request":
        clauses = (*rule.clause_ids, "B7", "B10")
        for match in recording.subject_matches:
            if match.requester_user_id == actor.user_id:
                continue
            if match.released_by is None or match.released_by == actor.user_id:
                return None
        own = any(m.requester_user_id == actor.user_id for m in recording.subject_matches)
        return _deny(
            f"{purpose_id!r} reaches only recordings matched to a verified request for them that you are handling"
            + ("; this is your own request, so another member of the team must handle it." if own else
               "; open the request in the subject-request queue and choose its recordings there, or for other "
               "reasons file an access request naming a purpose."), clauses, purpose_id)
    return None


def offered_purposes(policy: PolicyDocument, actor: Actor, recording: RecordingFacts) -> list[str]:
    """The purposes to offer ``actor`` for ``recording``: open to their role and able to reach it
    (approvals and consents are still decided on use). A picker offering only these never offers a purpose
    ``decide`` refuses for its reach (a spot check of an unsampled call, a subject access nobody asked for)."""
    return [pid for pid in allowed_purposes(policy, actor.role)
            if _reach_denial(policy, actor, recording, pid, policy.purposes[pid]) is None]


def _monitor_denial(policy: PolicyDocument, actor: Actor, purpose: str | None) -> Decision | None:
    """Live monitoring's own gate, before the common content rules (purpose, scope, consent)."""
    rules = policy.monitoring
    clauses = rules.clause_ids or ("A7",)
    if not rules.enabled:
        return _deny(f"{_policy_name(policy)} does not offer live monitoring of calls.", clauses, purpose)
    if actor.role not in rules.roles:
        return _deny(f"Role {actor.role!r} may not monitor calls live; the policy allows: "
                     f"{_roles_text(rules.roles)}.", (*clauses, *_ROLE_CLAUSES), purpose)
    if purpose is not None and purpose not in rules.purposes:
        return _deny(f"Purpose {purpose!r} is not a reason to monitor a call live; name one of: "
                     f"{', '.join(rules.purposes)}.", (*clauses, *_PURPOSE_CLAUSES), purpose)
    return None


def decide(
    *,
    policy: PolicyDocument,
    actor: Actor,
    action: Action,
    recording: RecordingFacts,
    purpose: str | None,
    grants: Sequence[Grant] = (),
    now: datetime | None = None,
    emergency: EmergencyFacts | None = None,
) -> Decision:
    """``_decide``'s answer; where it is a denial of content, an emergency declaration in force may still
    allow it (``emergency_access``): the actor's own declaration, their role among ``emergency_access.roles``
    (the role at declaration and now), not ended at ``now``, the action among ``emergency_access.actions`` (or
    ``view_metadata``, which every declaration allows).
    Wider than the role's scope and needing no purpose or approval, but never for a recording that is not
    available or whose content is quarantined (no consent evidence, A5, B2), nor before the policy is
    acknowledged; it serves what ``emergency_access.serves`` says."""
    decision = _decide(policy=policy, actor=actor, action=action, recording=recording, purpose=purpose,
                       grants=grants, now=now)
    rules = policy.emergency_access
    # Seeing which call it is (metadata) comes with any declaration: the recording page must open before
    # its player can ask for a purpose; the content itself only for ``rules.actions``.
    reaches = rules is not None and (action == Action.VIEW_METADATA
                                     or (action in CONTENT_ACTIONS and action.value in rules.actions))
    if (decision.allowed or emergency is None or rules is None or not reaches
            or actor.role not in rules.roles or emergency.role != actor.role
            or emergency.user_id != actor.user_id or now is None or now >= emergency.ends_at
            or actor.role not in policy.roles or not _acknowledged(policy, actor) or recording.state != "available"):
        return decision
    clauses = tuple(c for c in (rules.clause,) if c)
    if recording.quarantined and action != Action.VIEW_METADATA:
        return _deny(f"This recording is quarantined until its consent evidence is resolved; declaration "
                     f"{emergency.declaration_id} does not open it (A5, B2). Without it: {decision.reason}",
                     ("A5", "B2", *clauses), purpose)
    return Decision(
        allowed=True,
        reason=f"Emergency access: {actor.username}'s declaration {emergency.declaration_id} (until "
               f"{emergency.ends_at:%Y-%m-%d %H:%M} UTC) allows {action.value} beyond role {actor.role!r}'s scope; "
               f"it will be reviewed. Without it: {decision.reason}",
        clauses=clauses, serves=rules.serves,
        purpose=None if action == Action.VIEW_METADATA else (purpose or "").strip() or "emergency_access",
        emergency_declaration=emergency.declaration_id,
    )


def _failed_metadata(action: Action, recording: RecordingFacts) -> bool:
    """Whether this is a look at a failed capture's metadata: allowed under the same scope and quarantine
    rules as any recording's metadata, so that a call capture lost is visible (issue 25) to the people who
    would have seen it; a failed row holds no content, and no other action reaches it."""
    return action == Action.VIEW_METADATA and recording.state == "failed"


def _decide(
    *,
    policy: PolicyDocument,
    actor: Actor,
    action: Action,
    recording: RecordingFacts,
    purpose: str | None,
    grants: Sequence[Grant] = (),
    now: datetime | None = None,
) -> Decision:
    """Whether ``actor`` may perform ``action`` on ``recording`` for ``purpose`` under ``policy``.

    The checks, in order (the first that fails is the answer): the role exists; the policy is
    acknowledged (A10, B13); the recording is available (or, for metadata only, failed); for metadata, scope
    and quarantine; for content, the role has content access, a purpose is named, it is in the policy and open
    to the role (A6, A13, B5), the purpose allows the action (A13: sharing), the recording is within the role's scope
    (A9), it is not quarantined (A5, B2), the purpose reaches it (a QA sample the actor reviews, B8; a
    subject request the actor handles, B7, B10), the recorded employee consented where the purpose
    needs it (A6), and an approval in force covers this user, recording, purpose and action where the
    purpose needs one (B6, B9). ``grants`` are the
    caller's approvals; with ``now``, grants that have ended are ignored. Every answer carries the
    clause ids and a sentence saying what would make a denial an allowance.
    """
    named = (purpose or "").strip() or None
    role = policy.roles.get(actor.role)
    if role is None:
        return _deny(
            f"Role {actor.role!r} is not defined in {_policy_name(policy)}, so it has no access.",
            _ROLE_CLAUSES, named,
        )
    if not _acknowledged(policy, actor):
        return _deny(
            f"{actor.username} has not acknowledged {_policy_name(policy)}; acknowledge it before reaching "
            "any recording.", _ACK_CLAUSES, named,
        )
    if recording.state != "available" and not _failed_metadata(action, recording):
        return _deny(
            f"This recording is {recording.state}, not available; nobody can reach it.", _ROLE_CLAUSES, named,
        )

    if action == Action.MONITOR:
        denial = _monitor_denial(policy, actor, named)
        if denial is not None:
            return denial

    if action == Action.VIEW_METADATA:
        # Metadata (who, when, which number) is personal data too: same scope, no purpose needed.
        denial = _scope_denial(actor.role, role, actor, recording, named)
        if denial is not None:
            return denial
        if recording.quarantined and not role.can_administer:
            return _deny(
                "This recording is quarantined until its consent evidence is resolved; only an administrator "
                "can see it meanwhile.", ("A5", "B2"), named,
            )
        return Decision(allowed=True, reason=f"Role {actor.role!r} may see this recording's details.",
                        clauses=_ROLE_CLAUSES, purpose=named, serves=None)

    if role.content_scope == "none":
        return _deny(
            f"Role {actor.role!r} administers the system but has no access to recording content."
            if role.can_administer else f"Role {actor.role!r} has no access to recording content.",
            _ROLE_CLAUSES, named,
        )
    if named is None:
        return _deny(
            f"Name a purpose to {action.value} a recording; role {actor.role!r} may use: "
            f"{', '.join(allowed_purposes(policy, actor.role)) or 'none'}.", _PURPOSE_CLAUSES, None,
        )
    rule = policy.purposes.get(named)
    if rule is None:
        return _deny(
            f"Unknown purpose {named!r}: it is not one of the purposes in {_policy_name(policy)}.",
            _PURPOSE_CLAUSES, named,
        )
    if actor.role not in rule.roles:
        return _deny(
            f"Role {actor.role!r} may not use purpose {named!r}; it is open to: {', '.join(rule.roles)}. "
            f"Ask someone in one of those roles, or use one of your purposes: "
            f"{', '.join(allowed_purposes(policy, actor.role)) or 'none'}.",
            (*_ROLE_CLAUSES, *rule.clause_ids), named,
        )
    denial = _action_denial(policy, named, rule, action, actor.role)
    if denial is not None:
        return denial
    denial = _scope_denial(actor.role, role, actor, recording, named)
    if denial is not None:
        return denial
    outside = rule.recordings.admits(team=recording.team, direction=recording.direction)
    if outside is not None:
        return _deny(
            f"Purpose {named!r} reaches only some recordings (purposes.{named}.recordings), and this one's "
            f"{outside}.", (*rule.clause_ids, *_PURPOSE_CLAUSES), named,
        )
    if recording.quarantined:
        return _deny(
            "This recording is quarantined until its consent evidence is resolved; an administrator must "
            "resolve it first.", ("A5", "B2"), named,
        )
    denial = _reach_denial(policy, actor, recording, named, rule)
    if denial is not None:
        return denial
    if rule.employee_consent_required and named not in recording.employee_consents:
        return _deny(
            f"Purpose {named!r} needs the recorded employee's consent ({recording.agent or 'agent unknown'}), "
            f"and none is on file; it becomes possible once they record their consent to {named!r}.",
            ("A6", *rule.clause_ids), named,
        )
    denial = _grant_denial(actor, action, recording, named, rule, grants, now)
    if denial is not None:
        return denial
    what = {"anonymised_derivative": "an anonymised copy of",
            "redacted": "only the redacted copy (minimum necessary) of"}.get(rule.serves, "")
    approved = " with an approval in force" if rule.approval.required else ""
    extra: tuple[str, ...] = ("B6", "B9") if rule.approval.required else ()
    if rule.employee_consent_required:
        extra = (*extra, "A6")
    return Decision(
        allowed=True,
        reason=f"Role {actor.role!r} may {action.value} {what + ' ' if what else ''}this recording "
               f"for purpose {named!r}{approved}.",
        clauses=tuple(dict.fromkeys((*rule.clause_ids, *_ROLE_CLAUSES, *extra))),
        purpose=named,
        serves=rule.serves,
    )
