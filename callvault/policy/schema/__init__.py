"""The policy file as typed data: every enforceable clause of a call-recording policy.

Why pydantic models rather than free-form YAML: the product must *enforce* the written policy, so a
policy that is ambiguous (a purpose naming a role that does not exist, an approval with no approver,
a network rule that is not a network) must be refused when it is loaded, not discovered when someone
is wrongly let in or locked out. Every model forbids unknown keys (a misspelt key would otherwise be
silently ignored, and an ignored rule is an unenforced rule) and is frozen (the policy in force must
not change under a running request).

Cross-references (roles named by purposes, the network rules and the misuse routing; trunk regions
needing a working-day calendar) are checked on the whole document and reported with the exact
location, e.g. ``purposes.training.roles[1]``, so the loader can point at the YAML line.
"""

from __future__ import annotations

from callvault.policy.schema.access import (
    ApprovalRule,
    NetworkRules,
    PurposeRule,
    RecordingFilter,
    ReviewRules,
    RoleRule,
)
from callvault.policy.schema.common import (
    CONTENT_ACTION_NAMES,
    PURPOSE_VOCABULARY,
    ROLE_VOCABULARY,
    SHARING_ACTION_NAMES,
    ContentActionName,
    ContentScope,
    Reach,
    Serves,
    add_months,
)
from callvault.policy.schema.document import PolicyDocument, canonical_sha256
from callvault.policy.schema.emergency import DisclosureAccountingRules, EmergencyAccessRules
from callvault.policy.schema.quality import (
    QualityReviewRules,
    SamplingRule,
    Scorecard,
    ScorecardQuestion,
    ScorecardSection,
    TrainingLibraryRules,
)
from callvault.policy.schema.recording import (
    AnnouncementPrompt,
    ConsentRules,
    ControlRules,
    JurisdictionRule,
    RecordingScope,
    ScopeCheck,
    StandingEvidence,
    TrunkNumber,
)
from callvault.policy.schema.retention import LegalHoldRules, RetentionExtension, RetentionRules
from callvault.policy.schema.rights import (
    Contact,
    Deadline,
    IdentityCheck,
    MisuseDetection,
    MisuseRules,
    NoticeRules,
    RepresentativeRules,
    SubjectRequestRegion,
    SubjectRequestRules,
)
from callvault.policy.schema.services import CrmIntegrationRules, IntegrationRules, MonitoringRules, TranscriptionRules

__all__ = [
    "CONTENT_ACTION_NAMES",
    "PURPOSE_VOCABULARY",
    "ROLE_VOCABULARY",
    "SHARING_ACTION_NAMES",
    "AnnouncementPrompt",
    "ApprovalRule",
    "ConsentRules",
    "Contact",
    "ContentActionName",
    "ContentScope",
    "ControlRules",
    "CrmIntegrationRules",
    "Deadline",
    "DisclosureAccountingRules",
    "EmergencyAccessRules",
    "IdentityCheck",
    "IntegrationRules",
    "JurisdictionRule",
    "LegalHoldRules",
    "MisuseDetection",
    "MisuseRules",
    "MonitoringRules",
    "NetworkRules",
    "NoticeRules",
    "PolicyDocument",
    "PurposeRule",
    "QualityReviewRules",
    "Reach",
    "RecordingFilter",
    "RecordingScope",
    "RepresentativeRules",
    "RetentionExtension",
    "RetentionRules",
    "ReviewRules",
    "RoleRule",
    "SamplingRule",
    "ScopeCheck",
    "Scorecard",
    "ScorecardQuestion",
    "ScorecardSection",
    "Serves",
    "StandingEvidence",
    "SubjectRequestRegion",
    "SubjectRequestRules",
    "TrainingLibraryRules",
    "TranscriptionRules",
    "TrunkNumber",
    "add_months",
    "canonical_sha256",
]

