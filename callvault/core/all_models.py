"""Imports every ORM model so ``Base.metadata`` is complete (Alembic, test schema checks)."""

from callvault.audit.models import AuditEntry
from callvault.identity.models import ApiToken, PolicyAcknowledgement, User
from callvault.policy.models import PolicyVersion
from callvault.recordings.models import DataKey, Recording

__all__ = ["ApiToken", "AuditEntry", "DataKey", "PolicyAcknowledgement", "PolicyVersion", "Recording", "User"]
