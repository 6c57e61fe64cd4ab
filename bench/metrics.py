"""Cost of a Prometheus scrape's database part on a large catalog.

    .venv/bin/python -m bench.metrics [--count 1000000] [--database-url postgresql://postgres@127.0.0.1/DB]

``/metrics`` computes the cluster-wide figures (recordings by state, queue depths, the retention
backlog) with a few COUNT queries at each scrape, on every node. This builds a catalog of ``count``
recordings (bulk insert, as bench/search.py) and times ``DatabaseCollector.collect()``; the
reference, measured in the same run, is the primary-key lookup of one recording. Budget: a scrape
every 15 s per node should cost well under a second of database time.
"""

from __future__ import annotations

import argparse

from sqlalchemy import select

from bench.catalog import catalog
from bench.search import timed
from callvault.ops.metrics import DatabaseCollector
from callvault.recordings.models import Recording


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    with catalog(args.count, args.database_url) as (runtime, insert_seconds):
        collector = DatabaseCollector(runtime.db, runtime.clock)
        with runtime.db.unit_of_work() as session:
            some_id = session.scalar(select(Recording.id).limit(1))

        def lookup() -> object:
            with runtime.db.unit_of_work() as session:
                return session.get(Recording, some_id)

        families = list(collector.collect())
        assert any(f.name == "callvault_database_up" and f.samples[0].value == 1 for f in families)
        p50, p95 = timed(lambda: list(collector.collect()), args.repeats)
        ref50, ref95 = timed(lookup, args.repeats)
        print(f"{runtime.db.dialect}, {args.count:,} recordings (inserted in {insert_seconds:.1f} s)")
        print(f"  metrics scrape (database part): p50 {p50:8.1f} ms   p95 {p95:8.1f} ms")
        print(f"  reference, one-row lookup:      p50 {ref50:8.2f} ms   p95 {ref95:8.2f} ms")
        print(f"  ratio p50: {p50 / ref50:.0f}x")


if __name__ == "__main__":
    main()
