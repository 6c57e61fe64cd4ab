#!/usr/bin/env python3
"""Check a callvault audit bundle offline: no callvault, no database, no network.

    python verify_audit_bundle.py BUNDLE.json [--public-key KEY.pem] [--checkpoint SAVED.json ...]

Needs Python 3.11+ and the ``cryptography`` package (for Ed25519); everything else is the standard
library. It checks, and on the first failure prints what is wrong and exits 1 (2 for a file it cannot
read at all):

1. every entry's hash: SHA-256 over the previous entry's hash (ASCII hex) and the canonical JSON of
   its fields, and that the entries link to each other with consecutive seqs;
2. every checkpoint's Ed25519 signature, made by the bundle's key, or by ``--public-key`` when given
   (pin the key you got from the operator earlier: a bundle's own key proves only self-consistency);
3. that each checkpoint extends the one before it (RFC 9162 consistency proofs);
4. that every entry is in the tree the newest checkpoint signed (RFC 9162 inclusion proofs);
5. that the entries are exactly the ``range`` the bundle declares (none left out at either end);
6. with ``--checkpoint``: that checkpoints you saved earlier (``callvault audit checkpoint``) are in
   the bundle unchanged, so a history rewritten since then is caught.

Exit 0 means: these entries are exactly the ones the log held when its key signed the newest checkpoint.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

FORMAT = "callvault-audit-bundle/1"
GENESIS = "0" * 64
FIELDS = ("seq", "at", "actor", "actor_role", "action", "object_type", "object_id", "purpose", "decision",
          "reason", "clauses", "source_ip", "details")


class Bad(Exception):
    """The bundle failed a check; the message names the entry or checkpoint."""


# ----------------------------------------------------------------------------------- RFC 9162 hashing
def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _leaf(entry_hash_hex: str) -> bytes:
    return hashlib.sha256(b"\x00" + bytes.fromhex(entry_hash_hex)).digest()


def verify_inclusion(leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes) -> bool:
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _node(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(m: int, n: int, old_root: bytes, new_root: bytes, proof: list[bytes]) -> bool:
    if not 0 <= m <= n:
        return False
    if m == n:
        return not proof and old_root == new_root
    if m == 0:
        return not proof and old_root == hashlib.sha256(b"").digest()
    if not proof:
        return False
    path = ([old_root] if m & (m - 1) == 0 else []) + list(proof)
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = _node(c, fr), _node(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = _node(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0


# ------------------------------------------------------------------------------------------- checks
def entry_hash(entry: dict[str, Any]) -> str:
    fields = {name: entry[name] for name in FIELDS}
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.sha256(entry["prev_hash"].encode() + canonical).hexdigest()


def checkpoint_message(cp: dict[str, Any]) -> bytes:
    when = datetime.fromisoformat(cp["published_at"]).astimezone(UTC).isoformat(timespec="microseconds")
    return (f"callvault-audit-checkpoint/1\nseq {cp['seq']}\nsize {cp['tree_size']}\nroot {cp['root_hash']}\n"
            f"time {when}\nkey {cp['key_id']}\n").encode()


def _hexes(values: Any, what: str) -> list[bytes]:
    try:
        return [bytes.fromhex(v) for v in values]
    except (TypeError, ValueError) as exc:
        raise Bad(f"{what} is not a list of hex hashes") from exc


def load_key(pem: bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise Bad("the public key is not an Ed25519 key")
    return key


def key_id(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def check_entries(entries: list[dict[str, Any]]) -> None:
    prev: dict[str, Any] | None = None
    for entry in entries:
        seq = entry.get("seq")
        try:
            computed = entry_hash(entry)
        except (KeyError, TypeError, AttributeError) as exc:
            raise Bad(f"entry #{seq}: malformed ({exc})") from exc
        if prev is not None:
            if seq != prev["seq"] + 1:
                raise Bad(f"entry #{prev['seq'] + 1}: missing (the bundle jumps from #{prev['seq']} to #{seq})")
            if entry["prev_hash"] != prev["entry_hash"]:
                raise Bad(f"entry #{seq}: does not link to entry #{prev['seq']}")
        elif seq == 1 and entry["prev_hash"] != GENESIS:
            raise Bad("entry #1: does not start from the genesis hash")
        if computed != entry["entry_hash"]:
            raise Bad(f"entry #{seq}: altered (its fields do not hash to its entry_hash)")
        prev = entry


def check_range(entries: list[dict[str, Any]], declared: Any) -> None:
    """The entries are exactly the range the bundle says it holds: none dropped at either end."""
    if not isinstance(declared, dict):
        raise Bad("range: the bundle does not say which entries it holds (first_seq, last_seq)")
    first, last = declared["first_seq"], declared["last_seq"]
    held = (entries[0]["seq"], entries[-1]["seq"]) if entries else None
    if held != (first, last):
        span = f"#{held[0]}..#{held[1]}" if held else "none"
        raise Bad(f"entries: the bundle declares entries #{first}..#{last} but holds {span} "
                  "(entries were left out)")


def check_checkpoints(checkpoints: list[dict[str, Any]], consistency: list[dict[str, Any]],
                      key: Ed25519PublicKey) -> None:
    trusted_id = key_id(key)
    proofs = {(p.get("from_checkpoint"), p.get("to_checkpoint")): p.get("proof") for p in consistency}
    prev: dict[str, Any] | None = None
    for cp in checkpoints:
        seq = cp.get("seq")
        if prev is None and seq != 1:
            raise Bad("checkpoint #1: missing (a bundle carries every checkpoint from #1 to its anchor)")
        if prev is not None and seq != prev["seq"] + 1:
            raise Bad(f"checkpoint #{prev['seq'] + 1}: missing")
        if cp.get("key_id") != trusted_id:
            raise Bad(f"checkpoint #{seq}: signed by key {cp.get('key_id')}, not the trusted key {trusted_id}")
        try:
            key.verify(bytes.fromhex(cp["signature"]), checkpoint_message(cp))
        except (InvalidSignature, ValueError, KeyError, TypeError):
            raise Bad(f"checkpoint #{seq}: signature does not match its contents") from None
        if prev is not None:
            proof = _hexes(proofs.get((prev["seq"], seq)), f"consistency proof #{prev['seq']}→#{seq}")
            if not verify_consistency(prev["tree_size"], cp["tree_size"], bytes.fromhex(prev["root_hash"]),
                                      bytes.fromhex(cp["root_hash"]), proof):
                raise Bad(f"checkpoint #{seq}: not consistent with checkpoint #{prev['seq']} "
                          "(the log was rewritten between them)")
        prev = cp


def check_bundle(bundle: dict[str, Any], *, pinned: Ed25519PublicKey | None = None,
                 saved: list[dict[str, Any]] | None = None) -> str:
    """Raise ``Bad`` at the first problem; return a one-line summary when everything holds."""
    if bundle.get("format") != FORMAT:
        raise Bad(f"not a {FORMAT} file")
    key = pinned or load_key(bundle["public_key"]["pem"].encode())
    entries: list[dict[str, Any]] = bundle["entries"]
    checkpoints: list[dict[str, Any]] = bundle["checkpoints"]
    check_entries(entries)
    check_range(entries, bundle.get("range"))
    check_checkpoints(checkpoints, bundle.get("consistency_proofs", []), key)
    anchor = next((c for c in checkpoints if c["seq"] == bundle.get("anchor_checkpoint")), None)
    if anchor is None or anchor is not checkpoints[-1]:
        raise Bad(f"checkpoint #{bundle.get('anchor_checkpoint')}: the anchor is not the newest checkpoint")
    root = bytes.fromhex(anchor["root_hash"])
    for entry in entries:
        seq = entry["seq"]
        proof = _hexes(bundle["inclusion_proofs"].get(str(seq)), f"inclusion proof of entry #{seq}")
        if not verify_inclusion(_leaf(entry["entry_hash"]), seq - 1, anchor["tree_size"], proof, root):
            raise Bad(f"entry #{seq}: not in the tree signed by checkpoint #{anchor['seq']}")
    by_seq = {c["seq"]: c for c in checkpoints}
    for item in saved or []:
        if by_seq.get(item.get("seq")) != item:
            raise Bad(f"checkpoint #{item.get('seq')}: the saved copy differs from the bundle's "
                      "(history was rewritten, or the bundle omits it)")
    span = f"#{entries[0]['seq']}..#{entries[-1]['seq']}" if entries else "none"
    return (f"bundle intact: entries {span} ({len(entries)}), {len(checkpoints)} checkpoint(s) consistent, "
            f"anchored in checkpoint #{anchor['seq']} (size {anchor['tree_size']}) signed by {key_id(key)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify a callvault audit bundle offline.")
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--public-key", type=Path, help="pinned Ed25519 public key (PEM)")
    parser.add_argument("--checkpoint", type=Path, action="append", default=[],
                        help="a checkpoint JSON saved earlier; must appear unchanged")
    args = parser.parse_args(argv)
    try:
        bundle = json.loads(args.bundle.read_text(encoding="utf-8"))
        pinned = load_key(args.public_key.read_bytes()) if args.public_key else None
        saved = [json.loads(p.read_text(encoding="utf-8")) for p in args.checkpoint]
    except (OSError, ValueError, Bad) as exc:
        print(f"cannot read input: {exc}", file=sys.stderr)
        return 2
    try:
        print(check_bundle(bundle, pinned=pinned, saved=saved))
    except Bad as exc:
        print(f"NOT intact: {exc}", file=sys.stderr)
        return 1
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        print(f"NOT intact: the bundle is malformed ({type(exc).__name__}: {exc})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
