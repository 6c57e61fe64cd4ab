"""Audit over HTTP: verify the chain, read one recording's trail (administrators)."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse

from callvault.api.deps import Caller, get_caller, get_runtime
from callvault.audit import checkpoints
from callvault.audit import service as audit
from callvault.audit.anchor import CheckpointAnchor
from callvault.audit.signing import load_signer, public_key_pem, signing_key_path
from callvault.core.errors import AccessDenied, ConfigurationError, NotFound
from callvault.runtime import Runtime

router = APIRouter(tags=["audit"])


def _require_admin(caller: Caller) -> None:
    role = caller.policy.roles.get(caller.user.role)
    if not (role and role.can_administer):
        raise AccessDenied(f"role {caller.user.role} may not read the audit log")


def _public_key(runtime: Runtime) -> Ed25519PublicKey | None:
    try:
        return load_signer(signing_key_path(runtime.settings.key_dir, runtime.settings.env)).public_key
    except ConfigurationError:
        return None


@router.get("/audit/verify")
def verify(caller: Caller = Depends(get_caller), runtime: Runtime = Depends(get_runtime)) -> dict[str, Any]:
    """Check the hash chain, the Merkle roots and signatures of every checkpoint, and their consistency."""
    _require_admin(caller)
    with runtime.db.unit_of_work() as session:
        result = checkpoints.verify_log(session, public_key=_public_key(runtime),
                                        anchored=CheckpointAnchor(runtime.settings.anchor_dir).latest())
    return {"intact": result.intact, "entries_checked": result.entries_checked,
            "first_bad_seq": result.first_bad_seq, "first_bad_checkpoint": result.first_bad_checkpoint,
            "checkpoints_checked": result.checkpoints_checked, "problem": result.problem,
            "head_hash": result.head_hash, "notes": result.notes}


@router.get("/audit/checkpoints/latest")
def latest_checkpoint(caller: Caller = Depends(get_caller), runtime: Runtime = Depends(get_runtime)) -> dict[str, Any]:
    """The newest signed checkpoint (tree size, root, time, signature): worth copying somewhere else."""
    _require_admin(caller)
    with runtime.db.unit_of_work() as session:
        cp = checkpoints.latest_checkpoint(session)
        if cp is None:
            raise NotFound("no checkpoint has been published yet")
        return checkpoints.checkpoint_dict(cp)


@router.get("/audit/entries/{seq}/proof")
def entry_proof(seq: int, caller: Caller = Depends(get_caller),
                runtime: Runtime = Depends(get_runtime)) -> dict[str, Any]:
    """An RFC 9162 inclusion proof of one entry against the latest checkpoint."""
    _require_admin(caller)
    with runtime.db.unit_of_work() as session:
        return checkpoints.inclusion_proof(session, seq)


@router.get("/audit/public-key", response_class=PlainTextResponse)
def public_key(caller: Caller = Depends(get_caller), runtime: Runtime = Depends(get_runtime)) -> str:
    """The Ed25519 public key (PEM) that checkpoints are signed with."""
    _require_admin(caller)
    key = _public_key(runtime)
    if key is None:
        raise NotFound("no audit signing key is configured")
    return public_key_pem(key)


@router.get("/recordings/{recording_id}/audit")
def recording_trail(recording_id: str, caller: Caller = Depends(get_caller),
                    runtime: Runtime = Depends(get_runtime)) -> list[dict[str, Any]]:
    """Every decision and event about one recording, newest first."""
    _require_admin(caller)
    with runtime.db.unit_of_work() as session:
        return [audit.as_dict(e) for e in audit.entries_for_object(session, "recording", recording_id)]
