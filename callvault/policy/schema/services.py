"""Transcription, integrations and live monitoring: the product services a policy switches on."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    model_validator,
)

from callvault.policy.schema.common import ClauseId, Identifier, _Model


# ------------------------------------------------------------------------------------- transcription
class TranscriptionRules(_Model):
    """Speech-to-text of recordings (A6, B5) and removal of card data from them (PCI DSS)."""

    enabled: bool = False
    """The worker transcribes new recordings only when this is true."""
    engine: Literal["faster_whisper", "pocketsphinx"] = "faster_whisper"
    redact_card_data: bool = True
    """Spoken card numbers and security codes, and keyed DTMF tones, are removed from the stored audio
    and transcript (not just hidden); the recording notes that a removal happened."""



# -------------------------------------------------------------------------------------- integrations
class CrmIntegrationRules(_Model):
    """What a CRM connector may do on the CRM's word (B5, B6, A9). Everything is off unless named.

    The connector never reaches content. It acts through the same services as a person: a request it
    files is checked as if the linked requester filed it, an approval it relays is checked against
    the linked approver's role (and no self-approval), so these switches only say whether the
    organisation lets the CRM carry those decisions at all. Ending grants and reopening cases only
    reduce access or keep recordings longer, so a configured connector may always do them.
    """

    file_access_requests: bool = False
    """A ticket asking for recordings becomes an access request filed by the ticket's requester (B6)."""
    relay_approvals: bool = False
    """An approval recorded on the ticket by a linked approver approves the request (B6, B9)."""
    resolve_cases: bool = False
    """A resolved ticket resolves the case of the same reference, starting its grace period (A9)."""


class IntegrationRules(_Model):
    crm: CrmIntegrationRules = CrmIntegrationRules()


# ---------------------------------------------------------------------------------------- monitoring
class MonitoringRules(_Model):
    """Live monitoring of calls in progress (A7, A13): who may listen, why, to whom, and what the agent sees.

    Off unless a policy turns it on. A listener names one of ``purposes`` (each still checked by
    ``decide()`` against the purpose's roles and the role's scope); a purpose that needs an approval
    per recording, the employee's consent or an anonymised copy cannot be used live and is refused
    when the policy is loaded. Monitoring ends at once when the call is paused, stopped or marked
    personal (A7: "leave the line immediately").
    """

    enabled: bool = False
    roles: tuple[Identifier, ...] = ()
    """Roles that may listen live (each still needs a purpose open to it)."""
    purposes: tuple[Identifier, ...] = ()
    default_purpose: Identifier | None = None
    """Offered first in the live view (policy A: ``spot_check``)."""
    parties: Literal["both", "agent"] = "both"
    """What a listener hears: both parties, or only the agent's side."""
    notify_agent: bool = True
    """The agent sees that they are monitored, and by whom."""
    clause_ids: tuple[ClauseId, ...] = ("A7",)

    @model_validator(mode="after")
    def _consistent(self) -> MonitoringRules:
        if self.enabled and (not self.roles or not self.purposes):
            raise ValueError("monitoring is enabled but names no roles or no purposes; name both, or disable it")
        if self.default_purpose is not None and self.default_purpose not in self.purposes:
            raise ValueError(f"default_purpose {self.default_purpose!r} is not one of monitoring.purposes")
        return self


