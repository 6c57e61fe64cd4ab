"""Imports every ORM model so ``Base.metadata`` is complete (Alembic, test schema checks)."""

from callvault.access.models import AccessGrant, AccessRequest, EmployeeConsent
from callvault.audit.models import AuditAlarm, AuditCheckpoint, AuditEntry
from callvault.capture.imports.models import PbxImport, TwilioRecording
from callvault.capture.models import CaptureNode, RecordingControl
from callvault.identity.models import (
    ApiToken,
    MfaCredential,
    MfaRecoveryCode,
    OidcIdentity,
    OidcLoginState,
    PolicyAcknowledgement,
    SignInThrottle,
    User,
    WebSession,
)
from callvault.integrations.crm.models import CrmEvent, CrmIdentity, CrmTicket
from callvault.integrations.webhooks_out.models import WebhookDelivery, WebhookSubscription
from callvault.live.models import ActiveCall, MonitoringSession
from callvault.notify.models import OutboxMail
from callvault.oversight.models import MisuseReport
from callvault.policy.models import PolicyVersion
from callvault.quality.models import QaComment, QaReview, QaReviewItem, QaSample, TrainingClip
from callvault.recordings.models import DataKey, Recording
from callvault.retention.models import Case, DestructionRecord, KeyDestruction, LegalHold
from callvault.subject_requests.models import DeliveryLink, SubjectRequest, SubjectRequestRecording
from callvault.transcription.models import CrmNote, CrmWebhookDelivery, Transcript, TranscriptTerm

__all__ = ["ApiToken", "AuditEntry", "DataKey", "PolicyAcknowledgement", "PolicyVersion", "Recording", "User"]
__all__ += ["CaptureNode", "Case", "DestructionRecord", "KeyDestruction", "LegalHold", "RecordingControl"]
__all__ += ["AccessGrant", "AccessRequest", "EmployeeConsent", "MfaCredential", "MfaRecoveryCode",
            "OidcIdentity", "OidcLoginState", "SignInThrottle", "WebSession"]
__all__ += ["DeliveryLink", "SubjectRequest", "SubjectRequestRecording"]
__all__ += ["CrmNote", "CrmWebhookDelivery", "Transcript", "TranscriptTerm"]
__all__ += ["AuditAlarm", "AuditCheckpoint", "MisuseReport", "OutboxMail"]
__all__ += ["ActiveCall", "MonitoringSession"]
__all__ += ["QaComment", "QaReview", "QaReviewItem", "QaSample", "TrainingClip"]
__all__ += ["PbxImport", "TwilioRecording"]
__all__ += ["CrmEvent", "CrmIdentity", "CrmTicket", "WebhookDelivery", "WebhookSubscription"]
