"""Imports every domain's ``jobs`` module so their jobs register. Add a line per domain."""

import callvault.capture.jobs  # noqa: F401
