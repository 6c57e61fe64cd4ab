"""Drawing a quality-review sample (B8) from a large period: is the HMAC-ordered selection cheap enough?

    .venv/bin/python bench/quality_sampling.py [--calls 200000] [--agents 400]

Builds a synthetic population (``calls`` calls over ``agents`` agents, two teams, both directions),
then times ``sampling.select_calls`` (2 calls per agent, stratified by team and direction) and
``population_digest`` (the SHA-256 stored for auditors). Reference, measured in the same run: Python's
``sorted`` of the same population by recording id, the least any selection that orders calls must do.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import time
import uuid
from collections.abc import Callable

from callvault.policy.schema import SamplingRule
from callvault.quality import sampling


def timed(fn: Callable[[], object], repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--agents", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    population = sorted((str(uuid.uuid4()), f"agent{i % args.agents:04d}", ("sales", "support")[i % 2],
                         ("inbound", "outbound")[i % 3 == 0]) for i in range(args.calls))
    rule = SamplingRule(calls_per_agent=2)
    seed = secrets.token_hex(16)
    select_ms = timed(lambda: sampling.select_calls(seed, population, rule), args.repeats)
    digest_ms = timed(lambda: sampling.population_digest(population), args.repeats)
    reference_ms = timed(lambda: sorted(population, key=lambda e: e[0][::-1]), args.repeats)
    chosen = len(sampling.select_calls(seed, population, rule))
    print(f"population {args.calls} calls, {args.agents} agents -> {chosen} chosen")
    print(f"select_calls        {select_ms:8.1f} ms  ({select_ms / reference_ms:.1f}x the reference sort)")
    print(f"population_digest   {digest_ms:8.1f} ms  ({digest_ms / reference_ms:.1f}x the reference sort)")
    print(f"reference: sorted() {reference_ms:8.1f} ms")


if __name__ == "__main__":
    main()
