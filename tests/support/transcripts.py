"""A recording transcribed at once by a test's own engine, through the worker's real path (queue, claim,
process: encrypted segments, search index, card-data removal), without a worker process."""

from __future__ import annotations

from callvault.transcription import engines, search, service
from tests.support.env import CallvaultEnv


def transcribe_now(env: CallvaultEnv, recording_id: str, engine: engines.Engine) -> None:
    rt = env.runtime
    service.enqueue_safely(rt.db, engine="scripted")
    assert service.claim(rt.db, worker_id="w", recording_id=recording_id) == recording_id
    key = search.load_search_key(env.settings.key_dir, env.settings.env)
    assert service.process(db=rt.db, store=rt.store, keyring=rt.keyring, engine=engine,
                           recording_id=recording_id, worker_id="w", redact_card_data=True, search_key=key,
                           clock=rt.clock) is not None
