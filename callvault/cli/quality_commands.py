"""``callvault quality``: draw a review sample now, re-derive a sample for an audit, sweep training clips."""

from __future__ import annotations

from datetime import date
from typing import Annotated

import typer

from callvault.cli.main import CLI_ACTOR, DataDir, app, handle_errors, open_runtime, out, print_json
from callvault.core.errors import FieldProblem, InvalidInput
from callvault.policy import service as policy_service
from callvault.quality import sampling, training

quality_app = typer.Typer(help="Quality review (B8): random samples, audit re-derivation, training clips (A6).",
                          no_args_is_help=True)
app.add_typer(quality_app, name="quality")


def _day(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInput("cannot sample:", [FieldProblem(name, f"{value!r} is not a date as YYYY-MM-DD")]) from None


@quality_app.command("sample")
@handle_errors
def sample(
    first: Annotated[str | None, typer.Option("--from", help="first day of one whole period (YYYY-MM-DD, policy's "
                                                               "time zone)")] = None,
    last: Annotated[str | None, typer.Option("--to", help="last day of that period, inclusive")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the sample as JSON")] = False,
    data_dir: DataDir = None,
) -> None:
    """Draw a random review sample now (default: the last complete period) and queue the chosen calls.

    --from/--to name one whole period of the policy's rule that has ended and was never sampled: an
    administrator's way to fill a gap (a period before quality review was set up); reviewers draw only the
    last complete period. A period is sampled once; each draw and each refusal is audited."""
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            policy = policy_service.current_policy(session, clock=runtime.clock)
        row = sampling.draw_on_demand(runtime.db, policy=policy, first=_day(first, "--from") if first else None,
                                      last=_day(last, "--to") if last else None, actor=CLI_ACTOR,
                                      latest_only=False, clock=runtime.clock)
        summary = {"sample_id": row.id, "period_start": row.period_start.isoformat(),
                   "period_end": row.period_end.isoformat(), "population": len(row.population),
                   "selected": len(row.selected), "excluded": row.excluded, "seed": row.seed,
                   "population_sha256": row.population_sha256}
    finally:
        runtime.close()
    if as_json:
        print_json(summary)
    else:
        out.print(f"sample {summary['sample_id']}: {summary['selected']} of {summary['population']} calls queued "
                  f"for review ({summary['period_start']} to {summary['period_end']}); excluded: "
                  f"{summary['excluded'] or 'none'}")


@quality_app.command("verify")
@handle_errors
def verify(sample_id: str, data_dir: DataDir = None) -> None:
    """Re-derive SAMPLE_ID's selection from its recorded seed and population; exit 1 if it differs."""
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            row = sampling.get_sample(session, sample_id)
            again, stored = sampling.rederive(row), sorted(row.selected)
    finally:
        runtime.close()
    if again != stored:
        out.print(f"sample {sample_id}: the recorded selection does NOT follow from its seed and population")
        raise typer.Exit(1)
    out.print(f"sample {sample_id}: {len(stored)} calls re-derived from the seed and population; they match")


@quality_app.command("sweep-clips")
@handle_errors
def sweep_clips(data_dir: DataDir = None) -> None:
    """Destroy training clips past their retention or whose employee withdrew consent (the worker does it too)."""
    runtime = open_runtime(data_dir)
    try:
        with runtime.db.unit_of_work() as session:
            policy = policy_service.current_policy(session, clock=runtime.clock)
            keys = training.sweep(session, policy=policy, keyring=runtime.keyring, clock=runtime.clock)
        training.delete_blobs(runtime.store, keys)
    finally:
        runtime.close()
    out.print(f"destroyed {len(keys)} training clip(s)")
