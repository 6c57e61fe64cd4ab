"""Catalog search latency on a large catalog, as the UI and API run it.

    .venv/bin/python bench/search.py [--count 1000000] [--database-url postgresql://postgres@127.0.0.1/DB]

Builds a catalog of ``count`` recordings (bulk insert), then times the searches people run —
first page unfiltered, by extension, by agent, by remote number, direction + a week, a specialist's
own calls, and paging deep with the cursor — through ``recordings.service.search`` (scope
filtering included). Prints p50/p95 per search and, as the reference measured in the same run,
a primary-key lookup of one row. Target: p95 <= 50 ms.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select

from bench.catalog import AGENTS, EPOCH, catalog
from callvault.identity.models import User
from callvault.policy import service as policy_service
from callvault.policy.decide import Actor
from callvault.recordings import service as recordings
from callvault.recordings.models import Recording
from callvault.recordings.schemas import RecordingFilters


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    with catalog(args.count, args.database_url) as (runtime, insert_seconds):
        with runtime.db.unit_of_work() as session:
            policy = policy_service.current_policy(session)
            admin = session.scalar(select(User).where(User.username == "admin"))
            assert admin is not None
        acknowledged = policy.content_sha256
        lead = Actor(user_id="bench", username="lead", role="support_lead", acknowledged_policy_sha256=acknowledged)
        specialist = Actor(user_id="bench2", username="agent007", role="specialist", extension=AGENTS[7][1],
                           acknowledged_policy_sha256=acknowledged)
        agent, ext = AGENTS[3]

        def run(actor: Actor, deep: int = 0, **filters: object) -> Callable[[], object]:
            def go() -> object:
                with runtime.db.unit_of_work() as session:
                    rows, cursor = recordings.search(session, policy=policy, actor=actor,
                                                     filters=RecordingFilters(**filters), limit=50)
                    for _ in range(deep):
                        rows, cursor = recordings.search(session, policy=policy, actor=actor,
                                                         filters=RecordingFilters(**filters), limit=50,
                                                         cursor=cursor)
                    return rows
            return go

        with runtime.db.unit_of_work() as session:
            some_id = session.scalar(select(Recording.id).limit(1))

        def pk_lookup() -> object:
            with runtime.db.unit_of_work() as session:
                return session.get(Recording, some_id)

        cases = {
            "first page, no filter": run(lead),
            "by extension": run(lead, extension=ext),
            "by agent": run(lead, agent=agent),
            "by remote number": run(lead, remote_number="+14165550042"),
            "inbound in one week": run(lead, direction="inbound", started_from=EPOCH + timedelta(days=30),
                                       started_to=EPOCH + timedelta(days=37)),
            "specialist: own calls": run(specialist),
            "page 10 via cursor": run(lead, deep=9),
        }
        ref50, ref95 = timed(pk_lookup, args.repeats)
        print(f"database: {runtime.db.dialect}; catalog: {args.count:,} recordings "
              f"(bulk insert {args.count / insert_seconds:,.0f} rows/s)")
        print(f"reference, primary-key lookup: p50 {ref50:.2f} ms, p95 {ref95:.2f} ms")
        worst = 0.0
        for name, fn in cases.items():
            fn()  # warm
            p50, p95 = timed(fn, args.repeats)
            worst = max(worst, p95)
            print(f"{name:28s} p50 {p50:7.2f} ms   p95 {p95:7.2f} ms   ({p95 / max(ref95, 1e-6):.0f}x reference)")
        print(f"worst p95: {worst:.1f} ms (target <= 50 ms)")


if __name__ == "__main__":
    main()
