"""`callvault config show` lists every setting the settings loader reads, so an operator can see them all."""

from __future__ import annotations

import json
import re
from pathlib import Path

import callvault.core.settings as settings_module
from callvault.ops.config_report import SPECS, redact_url


def test_every_setting_the_loader_reads_is_in_the_report() -> None:
    source = Path(settings_module.__file__).read_text(encoding="utf-8")
    read = {name.removesuffix("_FILE") for name in re.findall(r"CALLVAULT_[A-Z0-9_]+", source)}
    reported = {spec.env for spec in SPECS}
    assert sorted(read - reported) == []


def test_config_show_redacts_credentials_in_every_url_like_setting(tmp_path: Path) -> None:
    """Credentials may sit in a URL's user part (an S3 key pair, a database password) or its query
    (``?password=``, ``?secret_key=``); ``config show`` is for support tickets, so none may appear,
    in any setting that holds a URL, while the rest (host, bucket, database) stays readable."""
    from typer.testing import CliRunner

    from callvault.cli.main import app

    env = {"CALLVAULT_DATA_DIR": str(tmp_path),
           "CALLVAULT_STORAGE_URL": "s3://AKIAEXAMPLEKEY:wJalrSecretKey@archive-bucket/calls?endpoint=https://s3.example",
           "CALLVAULT_DATABASE_URL": "postgresql://cv:pg-pass-1@db.example/cv?sslpassword=pg-ssl-2",
           "CALLVAULT_REDIS_URL": "redis://:redis-pass-3@cache.example:6379/0",
           "CALLVAULT_SMS_URL": "https://sms-user:sms-pass-4@sms.example/send?token=sms-token-5&to=x",
           "CALLVAULT_PUBLIC_URL": "https://calls.example/?access_key=pub-key-6"}
    result = CliRunner().invoke(app, ["config", "show", "--json"], env=env)
    assert result.exit_code == 0, result.output
    for secret in ("AKIAEXAMPLEKEY", "wJalrSecretKey", "pg-pass-1", "pg-ssl-2", "redis-pass-3", "sms-pass-4",
                   "sms-token-5", "pub-key-6"):
        assert secret not in result.output, secret
    shown = {row["name"]: row["value"] for row in json.loads(result.output)}
    assert shown["CALLVAULT_STORAGE_URL"] == "s3://***:***@archive-bucket/calls?endpoint=https://s3.example"
    assert shown["CALLVAULT_DATABASE_URL"] == "postgresql+psycopg://cv:***@db.example/cv?sslpassword=***"
    assert shown["CALLVAULT_SMS_URL"] == "https://***:***@sms.example/send?token=***&to=x"
    assert redact_url("postgresql://cv:pw@[::1") == "(set, redacted: not a valid URL)"  # unparsable: hide it all
