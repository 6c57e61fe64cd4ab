"""Recordings made the way SIPREC capture makes them, for tests of what capture leaves on record.

``reserve_as_captured`` is the call admitted (a pending row and its blob key); ``store_with_gaps`` is the
call stored with the spans in which no media arrived, as capture measured them (``media_gaps``,
``missing_seconds``). Failed calls go through the product's own ``fail_recording``.
"""

from __future__ import annotations

import io
from datetime import timedelta

from callvault.capture.audio import probe_audio
from callvault.capture.ingest import CHUNK_SIZE, encrypt_audio, finalise_recording, reserve_recording
from callvault.capture.metadata import CallMetadata
from callvault.core.clock import Clock
from callvault.policy import service as policy_service
from callvault.recordings.models import Recording
from callvault.runtime import Runtime
from callvault.storage.crypto import new_data_key


def reserve_as_captured(runtime: Runtime, meta: CallMetadata, audio: bytes, clock: Clock) -> tuple[str, str]:
    """Step 3 of the ingest pipeline, as SIPREC capture runs it when a call is admitted: (id, blob key)."""
    with runtime.db.unit_of_work() as session:
        policy = policy_service.current_policy(session, clock=clock)
        row = reserve_recording(session, policy=policy, meta=meta, info=probe_audio(io.BytesIO(audio)),
                                actor="siprec", store=runtime.store, clock=clock, stale_after=timedelta(minutes=5))
        assert isinstance(row, Recording)
        return row.id, row.blob_key


def store_with_gaps(runtime: Runtime, meta: CallMetadata, audio: bytes, gaps: list[list[float]],
                    clock: Clock) -> str:
    """The call admitted, its audio encrypted and stored with the media gaps capture measured; its id."""
    rec_id, blob_key = reserve_as_captured(runtime, meta, audio, clock)
    data_key = new_data_key()
    with runtime.store.writer(blob_key) as sink:
        result = encrypt_audio(io.BytesIO(audio), sink, data_key=data_key, context=rec_id.encode(),
                               chunk_size=CHUNK_SIZE)
    with runtime.db.unit_of_work() as session:
        row = session.get(Recording, rec_id)
        assert row is not None
        row.media_gaps, row.missing_seconds = gaps, round(sum(b - a for a, b in gaps), 3)
        finalise_recording(session, rec_id=rec_id, result=result, data_key=data_key, keyring=runtime.keyring,
                           chunk_size=CHUNK_SIZE, actor="siprec", call_id=meta.call_id,
                           consent_state=meta.consent_state, clock=clock, action="recording.captured")
    return rec_id
