"""`callvault config show` lists every setting the settings loader reads, so an operator can see them all."""

from __future__ import annotations

import re
from pathlib import Path

import callvault.core.settings as settings_module
from callvault.ops.config_report import SPECS


def test_every_setting_the_loader_reads_is_in_the_report() -> None:
    source = Path(settings_module.__file__).read_text(encoding="utf-8")
    read = {name.removesuffix("_FILE") for name in re.findall(r"CALLVAULT_[A-Z0-9_]+", source)}
    reported = {spec.env for spec in SPECS}
    assert sorted(read - reported) == []
