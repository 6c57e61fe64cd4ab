"""Encrypted blob storage: ``blobstore`` (where bytes live), ``crypto`` (chunked AES-256-GCM
blob format, seekable for Range requests), ``keys`` (KEKs that wrap per-recording data keys).

Nothing in this package writes plaintext audio to disk.
"""
