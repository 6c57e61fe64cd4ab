"""Key-encryption keys: wrapping data keys, loading the keyring, rotation."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from callvault.core.errors import ConfigurationError, IntegrityError, InvalidInput
from callvault.storage.crypto import new_data_key
from callvault.storage.keys import Keyring, WrappedKey, create_kek, load_keyring

KEK_A = bytes(range(32))
KEK_B = bytes(range(32, 64))


def _b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def _ring() -> Keyring:
    return Keyring({"kek-a": KEK_A, "kek-b": KEK_B}, "kek-b")


def test_a_wrapped_data_key_unwraps_for_its_recording() -> None:
    ring = _ring()
    data_key = new_data_key()
    wrapped = ring.wrap(data_key, recording_id="rec-1")
    assert wrapped.kek_id == "kek-b"
    assert data_key not in wrapped.wrapped
    assert ring.unwrap(wrapped, recording_id="rec-1") == data_key


def test_unwrapping_with_another_recording_id_fails() -> None:
    ring = _ring()
    wrapped = ring.wrap(new_data_key(), recording_id="rec-1")
    with pytest.raises(IntegrityError, match="rec-2"):
        ring.unwrap(wrapped, recording_id="rec-2")


def test_a_tampered_wrapped_key_fails_to_unwrap() -> None:
    ring = _ring()
    wrapped = ring.wrap(new_data_key(), recording_id="rec-1")
    tampered = bytearray(wrapped.wrapped)
    tampered[20] ^= 1
    with pytest.raises(IntegrityError):
        ring.unwrap(WrappedKey(wrapped.kek_id, bytes(tampered)), recording_id="rec-1")
    with pytest.raises(IntegrityError):
        ring.unwrap(WrappedKey(wrapped.kek_id, wrapped.wrapped[:-1]), recording_id="rec-1")


def test_a_wrapped_key_relabelled_with_another_kek_id_fails() -> None:
    ring = Keyring({"kek-a": KEK_A, "kek-b": KEK_A}, "kek-b")  # same bytes: only the AAD differs
    wrapped = ring.wrap(new_data_key(), recording_id="rec-1")
    with pytest.raises(IntegrityError):
        ring.unwrap(WrappedKey("kek-a", wrapped.wrapped), recording_id="rec-1")


def test_unwrapping_with_an_unknown_kek_names_the_missing_key() -> None:
    wrapped = _ring().wrap(new_data_key(), recording_id="rec-1")
    other = Keyring({"kek-z": KEK_A}, "kek-z")
    with pytest.raises(ConfigurationError, match="kek-b"):
        other.unwrap(wrapped, recording_id="rec-1")


def test_wrapping_refuses_a_data_key_of_the_wrong_length() -> None:
    with pytest.raises(InvalidInput):
        _ring().wrap(b"short", recording_id="rec-1")


def test_a_keyring_refuses_short_keys_and_an_absent_current_id() -> None:
    with pytest.raises(ConfigurationError, match="32"):
        Keyring({"kek-a": b"x" * 16}, "kek-a")
    with pytest.raises(ConfigurationError, match="kek-c"):
        Keyring({"kek-a": KEK_A}, "kek-c")


def test_the_keyring_repr_does_not_show_key_bytes() -> None:
    text = repr(_ring())
    assert "kek-a" in text
    assert KEK_A.hex() not in text
    assert repr(KEK_A) not in text


def test_init_creates_a_private_key_file_and_makes_it_current(tmp_path: Path) -> None:
    key_dir = tmp_path / "keys"
    kek_id = create_kek(key_dir)
    assert kek_id.startswith("kek-")
    assert stat.S_IMODE((key_dir / f"{kek_id}.kek").stat().st_mode) == 0o600
    assert stat.S_IMODE(key_dir.stat().st_mode) == 0o700
    assert (key_dir / "CURRENT").read_text().strip() == kek_id
    assert [p.name for p in key_dir.iterdir() if p.name.startswith(".")] == []
    ring = load_keyring(key_dir, {})
    assert ring.current_id == kek_id


def test_key_files_readable_by_others_are_refused(tmp_path: Path) -> None:
    kek_id = create_kek(tmp_path)
    path = tmp_path / f"{kek_id}.kek"
    os.chmod(path, 0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        load_keyring(tmp_path, {})


def test_rotation_keeps_old_wrapped_keys_readable_and_rewrap_moves_them(tmp_path: Path) -> None:
    old_id = create_kek(tmp_path)
    data_key = new_data_key()
    wrapped = load_keyring(tmp_path, {}).wrap(data_key, recording_id="rec-1")
    new_id = create_kek(tmp_path)
    assert new_id != old_id
    ring = load_keyring(tmp_path, {})
    assert ring.current_id == new_id
    assert ring.unwrap(wrapped, recording_id="rec-1") == data_key
    moved = ring.rewrap(wrapped, "rec-1")
    assert moved.kek_id == new_id
    assert ring.unwrap(moved, recording_id="rec-1") == data_key
    # Once rewrapped, the old key can be retired without losing the recording.
    (tmp_path / f"{old_id}.kek").unlink()
    assert load_keyring(tmp_path, {}).unwrap(moved, recording_id="rec-1") == data_key


def test_a_kek_from_the_environment_becomes_current(tmp_path: Path) -> None:
    file_id = create_kek(tmp_path)
    ring = load_keyring(tmp_path, {"CALLVAULT_KEK": _b64(KEK_A), "CALLVAULT_KEK_ID": "kek-env"})
    assert ring.current_id == "kek-env"
    assert ring.kek_ids == {file_id, "kek-env"}


def test_an_unnamed_environment_kek_gets_an_id_derived_from_the_key(tmp_path: Path) -> None:
    ring_a = load_keyring(tmp_path / "none", {"CALLVAULT_KEK": _b64(KEK_A)})
    ring_a2 = load_keyring(tmp_path / "none", {"CALLVAULT_KEK": _b64(KEK_A)})
    ring_b = load_keyring(tmp_path / "none", {"CALLVAULT_KEK": _b64(KEK_B)})
    assert ring_a.current_id == ring_a2.current_id != ring_b.current_id


def test_a_kek_can_come_from_a_file_named_in_the_environment(tmp_path: Path) -> None:
    secret = tmp_path / "kek.txt"
    secret.write_text(_b64(KEK_B) + "\n")
    ring = load_keyring(tmp_path / "none", {"CALLVAULT_KEK_FILE": str(secret), "CALLVAULT_KEK_ID": "kek-s"})
    wrapped = ring.wrap(new_data_key(), recording_id="r")
    assert Keyring({"kek-s": KEK_B}, "kek-s").unwrap(wrapped, recording_id="r")


def test_no_key_at_all_is_a_clear_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="callvault init"):
        load_keyring(tmp_path / "missing", {})


@pytest.mark.parametrize(
    "env",
    [
        {"CALLVAULT_KEK": "not base64!"},
        {"CALLVAULT_KEK": base64.b64encode(b"x" * 16).decode()},
        {"CALLVAULT_KEK": base64.b64encode(KEK_A).decode(), "CALLVAULT_KEK_FILE": "/x"},
        {"CALLVAULT_KEK": base64.b64encode(KEK_A).decode(), "CALLVAULT_KEK_ID": "bad|id"},
        {"CALLVAULT_KEK_FILE": "/nonexistent/kek"},
    ],
)
def test_a_broken_environment_key_is_refused(tmp_path: Path, env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError):
        load_keyring(tmp_path, env)


def test_a_key_dir_without_current_is_refused(tmp_path: Path) -> None:
    kek_id = create_kek(tmp_path)
    (tmp_path / "CURRENT").unlink()
    with pytest.raises(ConfigurationError, match="CURRENT"):
        load_keyring(tmp_path, {})
    assert load_keyring(tmp_path, {"CALLVAULT_KEK": _b64(KEK_A)}).kek_ids > {kek_id}


def test_current_naming_a_missing_key_file_is_refused(tmp_path: Path) -> None:
    create_kek(tmp_path)
    (tmp_path / "CURRENT").write_text("kek-gone\n")
    with pytest.raises(ConfigurationError, match="kek-gone"):
        load_keyring(tmp_path, {})


def test_a_corrupted_key_file_is_refused(tmp_path: Path) -> None:
    kek_id = create_kek(tmp_path)
    path = tmp_path / f"{kek_id}.kek"
    path.write_text("AAAA\n")
    with pytest.raises(ConfigurationError, match="bytes"):
        load_keyring(tmp_path, {})
