"""Bounded form of the HTTP-upload kill campaign (tests/reliability/crash_upload.py); long form in tests/soak/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.crash_upload import crash_upload
from tests.support.retention import World, world_for


@pytest.fixture()
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    yield from world_for(request, tmp_path, "a")


def test_every_acknowledged_upload_survives_the_server_killed_mid_body_or_mid_commit(world: World) -> None:
    tally = crash_upload(world, trials=6, seed=21)
    tally.report()
    assert tally.counts["killed_mid_body"] == 3 and tally.killed == 6
    assert tally.counts["acknowledged"] > 0
