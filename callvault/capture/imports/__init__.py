"""Recordings made elsewhere: PBX recording folders (Asterisk/FreePBX, FreeSWITCH) and cloud callbacks (Twilio).

Everything here ends in ``capture.ingest.ingest_recording``, so admission (scope, consent,
announcement, control events), encryption and audit are the same as for an upload.
"""
