"""Signed outgoing webhooks: ``emit`` writes outbox rows in the caller's transaction, the worker job
posts them (HMAC-SHA-256 signature, retries with exponential backoff), and the rows are the delivery log."""
