"""The whole policy document and its cross-reference checks."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from typing import Annotated, Any

from pydantic import (
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from callvault.policy.schema.access import NetworkRules, PurposeRule, ReviewRules, RoleRule
from callvault.policy.schema.common import Identifier, PolicySlug, Text, _Model, add_months
from callvault.policy.schema.emergency import DisclosureAccountingRules, EmergencyAccessRules
from callvault.policy.schema.quality import QualityReviewRules
from callvault.policy.schema.recording import ConsentRules, ControlRules, RecordingScope
from callvault.policy.schema.retention import RetentionRules
from callvault.policy.schema.rights import Contact, MisuseRules, NoticeRules, SubjectRequestRules
from callvault.policy.schema.services import IntegrationRules, MonitoringRules, TranscriptionRules


# ------------------------------------------------------------------------------------------- document
def _error(loc: tuple[str | int, ...], message: str, value: Any) -> InitErrorDetails:
    return InitErrorDetails(
        type=PydanticCustomError("policy_reference", "{detail}", {"detail": message}), loc=loc, input=value
    )


class PolicyDocument(_Model):
    """A whole call-recording policy, as loaded from one YAML file."""

    policy_id: PolicySlug
    version: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
    title: Text
    organisation: Text
    effective_from: date
    jurisdiction: Text
    """Where the policy applies, e.g. ``CA-ON`` or ``AU, GB``."""
    laws: tuple[Text, ...] = ()
    source: Text
    """Which written policy this file expresses, so a reviewer can compare clause by clause."""
    review: ReviewRules
    acknowledgement_required: bool = True
    roles: dict[Identifier, RoleRule] = Field(min_length=1)
    purposes: dict[Identifier, PurposeRule] = Field(min_length=1)
    recording_scope: RecordingScope
    consent: ConsentRules
    controls: ControlRules = ControlRules()
    retention: RetentionRules
    network: NetworkRules
    subject_requests: SubjectRequestRules
    misuse: MisuseRules
    notice: NoticeRules
    contacts: tuple[Contact, ...] = ()
    transcription: TranscriptionRules = TranscriptionRules()
    quality_review: QualityReviewRules | None = None
    integrations: IntegrationRules = IntegrationRules()
    monitoring: MonitoringRules = MonitoringRules()
    emergency_access: EmergencyAccessRules | None = None
    """Break-the-glass access (optional; absent: nobody may declare an emergency)."""
    accounting_of_disclosures: DisclosureAccountingRules = DisclosureAccountingRules()
    """Who may read a caller's accounting of disclosures (absent: nobody)."""

    _sha256: str | None = PrivateAttr(default=None)

    @property
    def content_sha256(self) -> str:
        """The hash that names this document's content: the one its stored version carries
        (``policy_versions.sha256``, computed when it was loaded) when it came from the database, else
        ``canonical_sha256``, computed once (``decide`` asks on every call).

        An acknowledgement counts for this hash alone (A10, B13): another policy that reuses the version
        string is other content and needs its own, while the same content loaded again keeps it. The
        stored hash is preferred so that a later release whose schema adds a defaulted key (which changes
        the canonical form) does not void every acknowledgement of a policy nobody changed. A copy made
        with ``model_copy(update=...)`` keeps this document's hash: parse a changed policy instead."""
        if self._sha256 is None:
            self._sha256 = canonical_sha256(self)
        return self._sha256

    def stored_as(self, sha256: str) -> PolicyDocument:
        """This document, as the stored version whose hash is ``sha256`` (returns ``self``)."""
        self._sha256 = sha256
        return self

    @model_validator(mode="after")
    def _cross_references(self) -> PolicyDocument:
        """Every role named anywhere must be defined; each problem is reported at its own location."""
        errors: list[InitErrorDetails] = []
        known = set(self.roles)
        listing = ", ".join(sorted(known))

        def need_role(loc: tuple[str | int, ...], role: str) -> None:
            if role not in known:
                errors.append(_error(loc, f"unknown role {role!r}; the roles defined are: {listing}", role))

        for pid, purpose in self.purposes.items():
            for i, role in enumerate(purpose.roles):
                need_role(("purposes", pid, "roles", i), role)
                rule = self.roles.get(role)
                if rule is not None and rule.content_scope == "none":
                    errors.append(_error(
                        ("purposes", pid, "roles", i),
                        f"role {role!r} has content_scope none, so it could never use purpose {pid!r}",
                        role,
                    ))
            for i, role in enumerate(purpose.approval.approver_roles):
                need_role(("purposes", pid, "approval", "approver_roles", i), role)
            for i, role in enumerate(purpose.approval.alternate_roles):
                need_role(("purposes", pid, "approval", "alternate_roles", i), role)
            for requester, approvers in purpose.approval.approver_roles_by_requester.items():
                loc: tuple[str | int, ...] = ("purposes", pid, "approval", "approver_roles_by_requester", requester)
                if requester not in purpose.roles:
                    errors.append(_error(loc, f"role {requester!r} may not use purpose {pid!r} (open to: "
                                              f"{', '.join(purpose.roles)}), so it never files a request", requester))
                for i, role in enumerate(approvers):
                    need_role((*loc, i), role)
        errors.extend(self._reach_errors())
        for i, role in enumerate(self.monitoring.roles):
            need_role(("monitoring", "roles", i), role)
        for i, pid in enumerate(self.monitoring.purposes):
            used = self.purposes.get(pid)
            if used is None:
                errors.append(_error(("monitoring", "purposes", i), f"unknown purpose {pid!r}; the purposes "
                                     f"defined are: {', '.join(sorted(self.purposes))}", pid))
            elif used.approval.required or used.employee_consent_required or used.serves != "original":
                errors.append(_error(("monitoring", "purposes", i), f"purpose {pid!r} needs an approval, the "
                                     "employee's consent or an anonymised copy, none of which a live call can "
                                     "have; remove it from monitoring.purposes", pid))
            elif used.reaches != "any_in_scope" or "monitor" not in used.actions:
                errors.append(_error(("monitoring", "purposes", i), f"purpose {pid!r} does not allow live "
                                     "listening (it reaches only sampled or requested recordings, or its actions "
                                     "leave out monitor); remove it from monitoring.purposes", pid))
        for role in self.network.per_role:
            need_role(("network", "per_role", role), role)
        for i, role in enumerate(self.misuse.report_to_roles):
            need_role(("misuse", "report_to_roles", i), role)
        for i, role in enumerate(self.retention.legal_hold.roles):
            need_role(("retention", "legal_hold", "roles", i), role)
        for i, role in enumerate(self.retention.extension.roles):
            need_role(("retention", "extension", "roles", i), role)
        if self.emergency_access is not None:
            for i, role in enumerate(self.emergency_access.roles):
                need_role(("emergency_access", "roles", i), role)
            for i, role in enumerate(self.emergency_access.reviewer_roles):
                need_role(("emergency_access", "reviewer_roles", i), role)
        for i, role in enumerate(self.accounting_of_disclosures.roles):
            need_role(("accounting_of_disclosures", "roles", i), role)
        errors.extend(self._integration_role_errors(need_role))
        if self.quality_review is not None:
            errors.extend(self._quality_review_errors(need_role))
        if self.recording_scope.trunk_numbers:
            # Where the policy lists its recorded numbers, a standing rule on any other would vouch for
            # calls that are never recorded: a typo, most likely, that would leave the real route quarantined.
            listed = {t.number for t in self.recording_scope.trunk_numbers}
            for i, standing in enumerate(self.consent.standing_evidence):
                for j, number in enumerate(standing.numbers):
                    if number not in listed:
                        errors.append(_error(
                            ("consent", "standing_evidence", i, "numbers", j),
                            f"{number} is not among recording_scope.trunk_numbers ({', '.join(sorted(listed))})",
                            number,
                        ))
        if self.subject_requests.enabled:
            for i, trunk in enumerate(self.recording_scope.trunk_numbers):
                if trunk.region not in self.subject_requests.regions:
                    errors.append(_error(
                        ("recording_scope", "trunk_numbers", i, "region"),
                        f"region {trunk.region!r} has no working-day calendar in subject_requests.regions",
                        trunk.region,
                    ))
        if errors:
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        return self

    def _integration_role_errors(self, need_role: Any) -> list[InitErrorDetails]:
        """``controls.integration_roles`` relay the agent's controls for any call (A14, B4): such an account must
        reach no content and run nothing, or relaying would be a way to hear, or to wipe, anyone's calls."""
        errors: list[InitErrorDetails] = []
        fix = ("an integration role only relays the agent's controls: give it content_scope: none and "
               "can_administer: false, and name it in no purpose and not in monitoring.roles (A14, B4)")
        for i, role in enumerate(self.controls.integration_roles):
            loc: tuple[str | int, ...] = ("controls", "integration_roles", i)
            need_role(loc, role)
            rule = self.roles.get(role)
            if rule is None:
                continue
            if rule.content_scope != "none":
                errors.append(_error(loc, f"role {role!r} has content_scope {rule.content_scope}; {fix}", role))
            if rule.can_administer:
                errors.append(_error(loc, f"role {role!r} can administer the system; {fix}", role))
            purposes = sorted(pid for pid, purpose in self.purposes.items() if role in purpose.roles)
            if purposes:
                errors.append(_error(loc, f"role {role!r} may use purpose(s) {', '.join(purposes)}; {fix}", role))
            if role in self.monitoring.roles:
                errors.append(_error(loc, f"role {role!r} is in monitoring.roles (live listening); {fix}", role))
        return errors

    def _reach_errors(self) -> list[InitErrorDetails]:
        """A purpose that reaches only sampled calls needs a QA review whose reviewers are its roles; one that
        reaches only requested recordings needs subject requests switched on (else it could open nothing)."""
        errors: list[InitErrorDetails] = []
        qr = self.quality_review
        for pid, purpose in self.purposes.items():
            loc: tuple[str | int, ...] = ("purposes", pid, "reaches")
            if purpose.reaches == "quality_sample":
                if qr is None:
                    errors.append(_error(loc, f"purpose {pid!r} reaches only calls in a QA sample, but the policy has "
                                              "no quality_review section to draw samples; add one or use "
                                              "any_in_scope", purpose.reaches))
                    continue
                for i, role in enumerate(purpose.roles):
                    if role not in qr.reviewer_roles:
                        errors.append(_error(("purposes", pid, "roles", i), f"role {role!r} is not one of "
                                             "quality_review.reviewer_roles, so it could never use purpose "
                                             f"{pid!r}, which reaches only calls in a QA sample", role))
            if purpose.reaches == "matched_request" and not self.subject_requests.enabled:
                errors.append(_error(loc, f"purpose {pid!r} reaches only recordings matched to a subject request, "
                                          "but subject_requests.enabled is false", purpose.reaches))
        if qr is not None:
            review = self.purposes.get(qr.purpose)
            if review is not None and "play" not in review.actions:
                errors.append(_error(("purposes", qr.purpose, "actions"), f"purpose {qr.purpose!r} is "
                                     "quality_review.purpose, so reviewers must be able to play the call; add play",
                                     list(review.actions)))
        return errors

    def _quality_review_errors(self, need_role: Any) -> list[InitErrorDetails]:
        """The review purpose must exist and be open to every reviewer role; likewise the training library."""
        qr = self.quality_review
        assert qr is not None
        errors: list[InitErrorDetails] = []

        def need_purpose(loc: tuple[str | int, ...], pid: str, roles: tuple[str, ...], what: str) -> None:
            rule = self.purposes.get(pid)
            if rule is None:
                errors.append(_error(loc, f"unknown purpose {pid!r}; the purposes defined are: "
                                          f"{', '.join(self.purposes)}", pid))
                return
            for i, role in enumerate(roles):
                if role not in rule.roles:
                    errors.append(_error((*loc[:-1], what, i), f"role {role!r} may not use purpose {pid!r} "
                                         f"(open to: {', '.join(rule.roles)})", role))

        for i, role in enumerate(qr.reviewer_roles):
            need_role(("quality_review", "reviewer_roles", i), role)
        need_purpose(("quality_review", "purpose"), qr.purpose, qr.reviewer_roles, "reviewer_roles")
        if qr.training is not None:
            for i, role in enumerate(qr.training.library_roles):
                need_role(("quality_review", "training", "library_roles", i), role)
            need_purpose(("quality_review", "training", "purpose"), qr.training.purpose, qr.training.library_roles,
                         "library_roles")
            rule = self.purposes.get(qr.training.purpose)
            if rule is not None and rule.serves != "anonymised_derivative":
                errors.append(_error(("quality_review", "training", "purpose"),
                                     f"purpose {qr.training.purpose!r} serves the original audio; the training "
                                     "library needs a purpose that serves only an anonymised derivative (A6)",
                                     qr.training.purpose))
        return errors

    def review_due_on(self) -> date:
        """When the next scheduled review falls due (B13)."""
        return add_months(self.effective_from, self.review.interval_months)


def canonical_sha256(doc: PolicyDocument) -> str:
    """Hash of the canonical JSON form: comments, key order and number formatting don't change it."""
    canonical = json.dumps(doc.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
