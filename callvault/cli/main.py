"""The ``callvault`` command line. Errors become a message and an exit code here, never a traceback:

exit 0 success · 1 check failed (e.g. audit not intact) · 2 invalid input · 3 configuration ·
4 conflict · 5 not found / denied.
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from callvault.core.errors import (
    AccessDenied,
    AuthenticationFailed,
    CallvaultError,
    ConfigurationError,
    Conflict,
    IntegrityError,
    InvalidInput,
    NotFound,
)
from callvault.core.settings import Settings, load_settings
from callvault.runtime import Runtime, build_runtime

app = typer.Typer(name="callvault", help="Call recording that enforces your call-recording policy.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
policy_app = typer.Typer(help="Validate, load and show policy files.", no_args_is_help=True)
users_app = typer.Typer(help="Manage local accounts.", no_args_is_help=True)
audit_app = typer.Typer(help="Check the tamper-evident audit log.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")
app.add_typer(users_app, name="users")
app.add_typer(audit_app, name="audit")

err = Console(stderr=True)
out = Console()

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="data directory [env CALLVAULT_DATA_DIR, "
                                                                  "default ./callvault-data]")]
F = TypeVar("F", bound=Callable[..., Any])

EXIT_CODES: list[tuple[type[CallvaultError], int]] = [
    (InvalidInput, 2), (ConfigurationError, 3), (Conflict, 4), (NotFound, 5), (AccessDenied, 5),
    (AuthenticationFailed, 5), (IntegrityError, 1),
]


def handle_errors(func: F) -> F:
    """Turn callvault errors into a readable message and a documented exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except CallvaultError as exc:
            code = next((c for cls, c in EXIT_CODES if isinstance(exc, cls)), 1)
            err.print(f"[bold red]error:[/] {exc.message}", highlight=False, soft_wrap=True)
            if isinstance(exc, InvalidInput) and exc.problems and not exc.message.endswith(str(exc.problems[-1])):
                for problem in exc.problems:
                    err.print(f"  - {problem}", highlight=False, soft_wrap=True)
            raise typer.Exit(code) from None

    return wrapper  # type: ignore[return-value]


CLI_ACTOR = f"cli:{getpass.getuser()}"[:64]
"""Who the audit log names for work done from the command line."""


def settings_for(data_dir: Path | None) -> Settings:
    return load_settings(data_dir)


def open_runtime(data_dir: Path | None) -> Runtime:
    """The runtime for an existing data directory; a clear error if there is none yet."""
    settings = settings_for(data_dir)
    if settings.is_sqlite and not settings.data_dir.exists():
        raise ConfigurationError(f"{settings.data_dir} is not a callvault data directory; run `callvault init` first")
    return build_runtime(settings)


def read_secret_file(path: Path, what: str) -> str:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read the {what} file {path}: {exc}") from exc
    if not value:
        raise InvalidInput(f"the {what} file {path} is empty")
    return value


def main() -> None:
    """Console entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


# Registers every command on ``app``; at the bottom because the command modules import the names
# above. One module per domain; add yours to this list.
from callvault.cli import (  # noqa: E402, F401
    access_commands,
    account_commands,
    capture_commands,
    commands,
    emergency_commands,
    integration_commands,
    keys_commands,
    ops_commands,
    oversight_commands,
    pbx_commands,
    quality_commands,
    retention_commands,
    sso_commands,
    subject_commands,
    transcription_commands,
)
