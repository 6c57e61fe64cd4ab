"""``callvault config show``: the effective settings, where each came from, secrets redacted.

    callvault config show          # a table: setting, value, source (env, file PATH, config.toml, default)
    callvault config show --json   # the same as a JSON list

It only loads the settings (a bad value fails exactly as the server would, naming the variable); it
opens no database and reads no key.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from callvault.cli.main import DataDir, app, handle_errors, out, print_json, settings_for
from callvault.ops.config_report import describe

config_app = typer.Typer(help="Show the effective configuration (secrets redacted).", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("show")
@handle_errors
def show(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    data_dir: DataDir = None,
) -> None:
    """Print every setting's effective value and its source; secrets appear only as '(set, redacted)'."""
    lines = describe(settings_for(data_dir))
    if as_json:
        print_json([{"name": line.name, "value": line.value, "source": line.source} for line in lines])
        return
    table = Table("setting", "value", "source", box=None)
    for line in lines:
        table.add_row(line.name, line.value, line.source)
    out.print(table)
