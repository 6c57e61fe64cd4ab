"""Imports every domain's ``jobs`` module so their jobs register. Add a line per domain."""

import callvault.access.jobs
import callvault.audit.jobs
import callvault.capture.imports.jobs
import callvault.capture.jobs
import callvault.integrations.webhooks_out.jobs
import callvault.notify.jobs
import callvault.oversight.jobs
import callvault.quality.jobs
import callvault.recordings.jobs
import callvault.retention.jobs
import callvault.subject_requests.jobs
import callvault.transcription.jobs  # noqa: F401
