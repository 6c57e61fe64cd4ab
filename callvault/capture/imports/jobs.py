"""Worker jobs: scan the configured PBX folders and import what is complete; fetch queued Twilio recordings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from callvault.capture.imports import pbx, twilio
from callvault.capture.imports.models import TwilioRecording, TwilioState
from callvault.capture.imports.settings import pbx_settings, twilio_settings
from callvault.jobs.registry import job

if TYPE_CHECKING:
    from callvault.runtime import Runtime


@job("capture.pbx_import", every_seconds=30)
def pbx_import(runtime: Runtime) -> int:
    """Scan CALLVAULT_PBX_FOLDERS, then import complete files and retry those waiting for their CDR."""
    settings = pbx_settings(runtime.settings.env)
    handled = 0
    for folder in settings.folders:
        handled += pbx.scan_folder(runtime, flavour=folder.flavour, root=folder.root, cdr_file=folder.cdr_file,
                                   settings=settings).handled
    return handled + pbx.import_ready(runtime, settings=settings).handled


@job("capture.twilio_fetch", every_seconds=15)
def twilio_fetch(runtime: Runtime) -> int:
    """Fetch and store the recordings Twilio's callbacks announced (retrying failed fetches)."""
    from sqlalchemy import select

    with runtime.db.unit_of_work() as session:  # nothing queued: not configured is not an error here
        if session.scalar(select(TwilioRecording.recording_sid).where(
                TwilioRecording.state.in_((TwilioState.PENDING, TwilioState.FETCHING))).limit(1)) is None:
            return 0
    return twilio.process_due(runtime, twilio_settings(runtime.settings.env))
