"""``callvault keys …``: rotate the key-encryption key, rewrap everything under it, retire the old one.

    callvault keys status                    # KEKs on disk, the current one, what each still wraps
    callvault keys rotate                    # a new KEK becomes current; the old ones stay for unwrapping
    callvault keys rewrap [--batch-size N]   # online, idempotent, resumable
    callvault keys retire KEK_ID             # refused while anything is still wrapped under it

Every step is audited under ``cli:<user>`` (docs/operations.md, "Key rotation").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

import typer

from callvault.audit import service as audit
from callvault.cli.main import CLI_ACTOR, DataDir, app, err, handle_errors, open_runtime, out, print_json
from callvault.core.errors import ConfigurationError, Conflict
from callvault.recordings import rekey
from callvault.storage.keys import create_kek, current_kek_id, restore_kek_file, retire_kek_file

keys_app = typer.Typer(help="Key-encryption keys: status, rotate, rewrap, retire.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

JsonOut = Annotated[bool, typer.Option("--json", help="machine-readable output")]


def _refuse_env_key(env: Mapping[str, str]) -> None:
    if (env.get("CALLVAULT_KEK") or env.get("CALLVAULT_KEK_FILE")):
        raise ConfigurationError(
            "the current key-encryption key comes from CALLVAULT_KEK/CALLVAULT_KEK_FILE; rotate it there "
            "(set the new key with a new CALLVAULT_KEK_ID and keep the old key file in the key directory)"
        )


@keys_app.command("status")
@handle_errors
def status_cmd(data_dir: DataDir = None, as_json: JsonOut = False) -> None:
    """The KEKs loaded, the current one, and how many wrapped secrets name each."""
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            used = rekey.kek_usage(session)
        ids = sorted(runtime.keyring.kek_ids | set(used))
        rows = [{"kek_id": k, "current": k == runtime.keyring.current_id, "loaded": k in runtime.keyring.kek_ids,
                 "wrapped_secrets": used.get(k, 0)} for k in ids]
        if as_json:
            print_json(rows)
            return
        for r in rows:
            flag = " (current)" if r["current"] else ""
            missing = "" if r["loaded"] else "  [not loaded!]"
            out.print(f"{r['kek_id']}{flag}: {r['wrapped_secrets']} wrapped secrets{missing}", highlight=False)
    finally:
        runtime.close()


@keys_app.command("rotate")
@handle_errors
def rotate_cmd(data_dir: DataDir = None) -> None:
    """Create a new KEK and make it current. Older KEKs stay so existing keys still unwrap."""
    runtime = open_runtime(data_dir)
    try:
        _refuse_env_key(runtime.settings.env)
        previous = runtime.keyring.current_id
        new_id = create_kek(runtime.settings.key_dir)
        with runtime.db.unit_of_work() as session:
            audit.append(session, audit.AuditEvent(
                actor=CLI_ACTOR, action="keys.rotated", object_type="kek", object_id=new_id,
                reason="a new key-encryption key is current; the previous one stays until rewrap and retire",
                details={"previous": previous, "current": new_id}), clock=runtime.clock)
        out.print(f"{new_id} is now the current key-encryption key (previous: {previous}).\n"
                  "Next: callvault keys rewrap, then callvault keys retire " + previous, highlight=False)
    finally:
        runtime.close()


@keys_app.command("rewrap")
@handle_errors
def rewrap_cmd(
    data_dir: DataDir = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=100_000,
                                            help="rows per transaction")] = rekey.DEFAULT_BATCH,
    as_json: JsonOut = False,
) -> None:
    """Rewrap every data key and MFA secret to the current KEK. Online; safe to rerun or interrupt."""
    runtime = open_runtime(data_dir)
    try:
        def progress(r: rekey.RewrapReport) -> None:
            if not as_json:
                err.print(f"batch {r.batches}: {sum(r.rewrapped.values())} rewrapped so far", highlight=False)

        report = rekey.rewrap_all(runtime.db, runtime.keyring, actor=CLI_ACTOR, batch_size=batch_size,
                                  clock=runtime.clock, on_batch=progress)
        with runtime.db.unit_of_work() as session:
            audit.append(session, audit.AuditEvent(
                actor=CLI_ACTOR, action="keys.rewrap_finished", object_type="kek", object_id=report.current_kek,
                reason="every wrapped secret was checked against the current key-encryption key",
                details={"rewrapped": report.rewrapped, "already_current": report.already_current,
                         "destroyed_skipped": report.destroyed_skipped}), clock=runtime.clock)
            remaining = {k: n for k, n in rekey.kek_usage(session).items() if k != report.current_kek}
        result = {"current_kek": report.current_kek, "rewrapped": report.rewrapped,
                  "already_current": report.already_current, "destroyed_skipped": report.destroyed_skipped,
                  "still_under_old_keys": remaining}
        if as_json:
            print_json(result)
            return
        out.print(f"rewrapped {report.rewrapped['data_keys']} data keys and {report.rewrapped['mfa_credentials']} "
                  f"MFA secrets to {report.current_kek}"
                  + (f" (and {report.rewrapped['webhook_subscriptions']} webhook secrets)"
                     if report.rewrapped["webhook_subscriptions"] else ""), highlight=False)
        if remaining:
            out.print(f"still under older keys: {remaining} (destroyed keys awaiting the retention pass, or "
                      "written by a process that has not seen the rotation yet; rerun rewrap)", highlight=False)
    finally:
        runtime.close()


@keys_app.command("retire")
@handle_errors
def retire_cmd(kek_id: Annotated[str, typer.Argument(help="the KEK id to retire")], data_dir: DataDir = None) -> None:
    """Delete an old KEK's file. Refused while anything is still wrapped under it."""
    runtime = open_runtime(data_dir)
    try:
        key_dir = runtime.settings.key_dir
        if current_kek_id(key_dir) == kek_id or runtime.keyring.current_id == kek_id:
            raise Conflict(f"{kek_id} is the current key-encryption key; run callvault keys rotate first")
        with runtime.db.unit_of_work() as session:
            used = rekey.usage(session, kek_id)
            if sum(used.values()):
                audit.append(session, audit.AuditEvent(
                    actor=CLI_ACTOR, action="keys.retire_refused", decision="deny", object_type="kek",
                    object_id=kek_id, reason="secrets are still wrapped under this key", details=used),
                    clock=runtime.clock)
        if sum(used.values()):
            raise Conflict(f"{kek_id} still wraps {used['data_keys']} data keys and {used['mfa_credentials']} "
                           "MFA secrets; run callvault keys rewrap first")
        key = retire_kek_file(key_dir, kek_id)
        # A process that had not noticed the rotation may have wrapped under it meanwhile: check again.
        with runtime.db.unit_of_work() as session:
            late = rekey.usage(session, kek_id)
            if sum(late.values()):
                restore_kek_file(key_dir, kek_id, key)
            else:
                audit.append(session, audit.AuditEvent(
                    actor=CLI_ACTOR, action="keys.retired", object_type="kek", object_id=kek_id,
                    reason="nothing is wrapped under this key any more; its file was deleted"),
                    clock=runtime.clock)
        if sum(late.values()):
            raise Conflict(f"{kek_id} was used while retiring ({late}); its file was put back. "
                           "Rerun callvault keys rewrap, then retire again")
        out.print(f"retired {kek_id}: its key file is deleted. Backups taken before now need it to be read.",
                  highlight=False)
    finally:
        runtime.close()
