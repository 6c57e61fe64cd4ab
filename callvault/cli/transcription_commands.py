"""``callvault transcribe``: transcribe one recording now (operators; the worker does it for new calls)."""

from __future__ import annotations

from typing import Annotated

import typer

from callvault.cli.main import DataDir, app, handle_errors, out, print_json, settings_for
from callvault.runtime import build_runtime
from callvault.transcription.jobs import transcribe_one


@app.command()
@handle_errors
def transcribe(
    recording: Annotated[str, typer.Argument(help="recording id")],
    again: Annotated[bool, typer.Option(
        "--again", help="re-run a recording already transcribed (a failed one is re-run without it)")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the outcome as JSON")] = False,
    data_dir: DataDir = None,
) -> None:
    """Transcribe RECORDING now, removing card data if the policy says so. Prints counts, never content."""
    runtime = build_runtime(settings_for(data_dir))
    try:
        outcome = transcribe_one(runtime, recording, again=again)
    finally:
        runtime.close()
    if outcome is None:
        out.print("nothing to do: already transcribed (use --again), or another worker holds it")
        return
    summary = {"recording_id": outcome.recording_id, "words": outcome.words,
               "audio_seconds": round(outcome.seconds_audio, 2),
               "processing_seconds": round(outcome.seconds_processing, 2),
               "real_time_factor": round(outcome.seconds_processing / max(outcome.seconds_audio, 1e-9), 3),
               "removed": dict(outcome.removed)}
    if as_json:
        print_json(summary)
    else:
        out.print(f"transcribed {outcome.recording_id}: {outcome.words} words, "
                  f"{summary['audio_seconds']}s of audio in {summary['processing_seconds']}s; "
                  f"removed: {summary['removed'] or 'nothing'}")
