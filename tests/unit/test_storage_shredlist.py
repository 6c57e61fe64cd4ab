"""The key-destruction list: durable, shared between processes, honoured by every unwrap."""

from __future__ import annotations

import secrets
import stat
from pathlib import Path

import pytest

from callvault.core.errors import IntegrityError, NotFound
from callvault.storage.keys import Keyring, create_kek, load_keyring
from callvault.storage.shredlist import ShredList, fingerprint


def test_a_listed_key_is_seen_by_another_reader_of_the_same_file(tmp_path: Path) -> None:
    writer, reader = ShredList(tmp_path / "SHREDDED"), ShredList(tmp_path / "SHREDDED")
    fp = fingerprint(b"wrapped-1")
    assert fp not in reader
    writer.add([fp, fp])
    assert fp in reader and len(reader) == 1
    assert (tmp_path / "SHREDDED").read_text() == fp + "\n"
    assert stat.S_IMODE((tmp_path / "SHREDDED").stat().st_mode) == 0o600


def test_a_list_that_disappears_under_a_running_process_is_an_alarm(tmp_path: Path) -> None:
    shredded = ShredList(tmp_path / "SHREDDED")
    shredded.add([fingerprint(b"x")])
    (tmp_path / "SHREDDED").unlink()
    with pytest.raises(IntegrityError, match="disappeared"):
        _ = fingerprint(b"x") in shredded


def test_garbage_is_not_a_fingerprint(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        ShredList(tmp_path / "SHREDDED").add(["not-a-fingerprint"])


def test_keyring_refuses_a_destroyed_key_even_in_a_fresh_process(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    create_kek(keys)
    ring = load_keyring(keys, {})
    data_key = secrets.token_bytes(32)
    wrapped = ring.wrap(data_key, recording_id="rec-1")
    other = ring.wrap(data_key, recording_id="rec-2")
    ring.record_destroyed([wrapped])
    with pytest.raises(NotFound, match="destroyed"):
        ring.unwrap(wrapped, recording_id="rec-1")
    with pytest.raises(NotFound):
        load_keyring(keys, {}).unwrap(wrapped, recording_id="rec-1")
    assert load_keyring(keys, {}).unwrap(other, recording_id="rec-2") == data_key


def test_a_keyring_without_a_list_cannot_destroy_keys() -> None:
    ring = Keyring({"k1": secrets.token_bytes(32)}, "k1")
    with pytest.raises(Exception, match="key-destruction list"):
        ring.record_destroyed([ring.wrap(secrets.token_bytes(32), recording_id="r")])
