"""Audit over HTTP: verify the chain, read one recording's trail (administrators)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from callvault.api.deps import Caller, get_caller, get_runtime
from callvault.audit import service as audit
from callvault.core.errors import AccessDenied
from callvault.runtime import Runtime

router = APIRouter(tags=["audit"])


def _require_admin(caller: Caller) -> None:
    role = caller.policy.roles.get(caller.user.role)
    if not (role and role.can_administer):
        raise AccessDenied(f"role {caller.user.role} may not read the audit log")


@router.get("/audit/verify")
def verify(caller: Caller = Depends(get_caller), runtime: Runtime = Depends(get_runtime)) -> dict[str, Any]:
    """Walk the hash chain; report the first bad entry, if any."""
    _require_admin(caller)
    with runtime.db.unit_of_work() as session:
        result = audit.verify_chain(session)
    return {"intact": result.intact, "entries_checked": result.entries_checked,
            "first_bad_seq": result.first_bad_seq, "problem": result.problem, "head_hash": result.head_hash}


@router.get("/recordings/{recording_id}/audit")
def recording_trail(recording_id: str, caller: Caller = Depends(get_caller),
                    runtime: Runtime = Depends(get_runtime)) -> list[dict[str, Any]]:
    """Every decision and event about one recording, newest first."""
    _require_admin(caller)
    with runtime.db.unit_of_work() as session:
        return [audit.as_dict(e) for e in audit.entries_for_object(session, "recording", recording_id)]
