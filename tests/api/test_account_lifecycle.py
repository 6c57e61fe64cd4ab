"""Account lifecycle over real HTTP and the CLI (issue 24 point 7): an MFA reset, a deactivation or a
password change ends every bearer token and web session of the account at once; MFA set-up needs an
administrator's one-time enrolment code; administrators deactivate, reactivate and reset passwords."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from callvault.cli.main import app as cli_app
from tests.support.env import CallvaultEnv, LiveServer


@pytest.fixture()
def live(isolated_env: CallvaultEnv) -> Iterator[LiveServer]:
    live = LiveServer(isolated_env)
    live.start()
    yield live
    live.stop()


def cli(env: CallvaultEnv, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli_app, [*args, "--data-dir", str(env.data_dir)], env=env.cli_env)
    return result.exit_code, result.output


def test_an_mfa_reset_on_the_cli_ends_the_users_bearer_tokens_at_once(live: LiveServer) -> None:
    with live.client("alice") as alice:
        assert alice.get("/api/v1/me").status_code == 200
        code, output = cli(live.env, "users", "mfa-reset", "alice")
        assert code == 0, output
        assert alice.get("/api/v1/me").status_code == 401
