"""Integrations with other systems: CRM connectors in (``crm``) and signed webhooks out (``webhooks_out``).

Both sides share one signature scheme (``signing``): HMAC-SHA-256 over ``<timestamp>.<body>``, with
the timestamp checked against a replay window, so a receiver needs a dozen lines to verify either.
"""
