"""Child process for the kill -9 test: scan and import a PBX folder when told ``GO`` (then exit)."""

from __future__ import annotations

import sys
from pathlib import Path

from callvault.capture.imports import pbx
from callvault.capture.imports.settings import PbxSettings
from callvault.core.settings import load_settings
from callvault.runtime import build_runtime


def main() -> None:
    data_dir, db_url, root = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    runtime = build_runtime(load_settings(data_dir, env={"CALLVAULT_DATABASE_URL": db_url}))
    settings = PbxSettings(quiet_seconds=1, retry_seconds=1)
    print("READY", flush=True)
    if sys.stdin.readline().strip() != "GO":
        return
    pbx.scan_folder(runtime, flavour="asterisk", root=root, cdr_file=None, settings=settings)
    for state, n in pbx.import_ready(runtime, settings=settings, root=root).counts.items():
        print(f"{state} {n}", flush=True)
    runtime.close()


if __name__ == "__main__":
    main()
