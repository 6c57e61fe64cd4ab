"""``callvault capture pbx scan`` (folder import, backfill) and ``callvault capture pbx-done`` (the PBX's hook)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from callvault.capture.imports import pbx
from callvault.capture.imports.settings import FLAVOURS, pbx_settings
from callvault.cli.capture_commands import capture_app
from callvault.cli.main import DataDir, err, handle_errors, open_runtime, print_json
from callvault.core.errors import InvalidInput

pbx_app = typer.Typer(help="Import recordings from PBX folders (Asterisk/FreePBX, FreeSWITCH).", no_args_is_help=True)
capture_app.add_typer(pbx_app, name="pbx")


@pbx_app.command("scan")
@handle_errors
def scan(
    folder: Annotated[Path, typer.Argument(help="the PBX's recording folder (e.g. /var/spool/asterisk/monitor)")],
    flavour: Annotated[str, typer.Option("--flavour", help="asterisk (incl. FreePBX) or freeswitch")] = "asterisk",
    cdr: Annotated[Path | None, typer.Option("--cdr", help="CDR CSV to correlate with (Master.csv, "
                                                            "mod_cdr_csv, or a CSV export with a header)")] = None,
    quiet_seconds: Annotated[int | None, typer.Option(
        "--quiet-seconds", help="a file unchanged this long is complete [CALLVAULT_PBX_QUIET_SECONDS]")] = None,
    data_dir: DataDir = None,
) -> None:
    """Record every recording file in FOLDER in the ledger and import the complete ones (rescans are no-ops)."""
    if flavour not in FLAVOURS:
        raise InvalidInput(f"--flavour must be one of {', '.join(FLAVOURS)}")
    runtime = open_runtime(data_dir)
    try:
        settings = pbx_settings(runtime.settings.env)
        if quiet_seconds is not None:
            from dataclasses import replace

            settings = replace(settings, quiet_seconds=max(1, quiet_seconds))
        seen = pbx.scan_folder(runtime, flavour=flavour, root=folder.absolute(), cdr_file=cdr.absolute()
                               if cdr else None, settings=settings)
        done = pbx.import_ready(runtime, settings=settings, root=folder.absolute())
        print_json({"scanned": seen.counts, "this_pass": done.counts,
                    "ledger": pbx.ledger_counts(runtime, root=folder.absolute())})
    finally:
        runtime.close()


@capture_app.command("pbx-done")
@handle_errors
def pbx_done(
    path: Annotated[str | None, typer.Argument(help="the finished recording (FreeSWITCH's ${record_path}, or a "
                                                    "MixMonitor file name without caller ids)")] = None,
    uniqueid: Annotated[str | None, typer.Option("--uniqueid", help="instead of PATH: the call's Asterisk "
                                                                    "${UNIQUEID} / FreeSWITCH ${uuid}")] = None,
    data_dir: DataDir = None,
) -> None:
    """The PBX's post-recording hook: the recording is complete; import it now (or queue it until its CDR arrives)."""
    if (path is None) == (uniqueid is None):
        raise InvalidInput("give the recording's PATH or --uniqueid ID (one of them)")
    runtime = open_runtime(data_dir)
    try:
        settings = pbx_settings(runtime.settings.env)
        if uniqueid is not None:
            row_ids = pbx.mark_done_by_id(runtime, uniqueid=uniqueid, settings=settings)
        else:
            assert path is not None
            row_ids = [pbx.mark_done(runtime, path=os.fsencode(path), settings=settings)]
        outcomes: dict[str, int] = {}
        for row_id in row_ids:
            for state, n in pbx.import_ready(runtime, settings=settings, row_id=row_id, limit=1).counts.items():
                outcomes[state] = outcomes.get(state, 0) + n
        err.print(f"{path or uniqueid}: {', '.join(outcomes) or 'recorded in the ledger'}", highlight=False)
    finally:
        runtime.close()
