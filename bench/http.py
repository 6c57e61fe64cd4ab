"""HTTP throughput and tail latency of search and metadata under 100 concurrent clients.

    .venv/bin/python -m bench.http [--count 100000] [--clients 100] [--seconds 10] [--database-url URL]

Starts the real server (uvicorn, one process) on loopback over a catalog of ``count`` recordings,
then 100 concurrent keep-alive clients (httpx, asyncio, in this process) hammer
``GET /api/v1/recordings?agent=…`` and ``GET /api/v1/recordings/{id}`` for ``seconds`` each.
Reference in the same run: the same clients against ``/healthz`` (routing + one SELECT 1), the
floor this server and client pair can reach. Target: p99 <= 200 ms. Client and server share the
machine's cores, so absolute figures are conservative.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import threading
import time

import httpx
import uvicorn
from sqlalchemy import select

from bench.catalog import AGENTS, catalog
from callvault.api.app import create_app
from callvault.identity import service as identity
from callvault.policy import service as policy_service
from callvault.recordings.models import Recording
from tests.support.env import _free_port


async def hammer(base: str, token: str, paths: list[str], clients: int, seconds: float) -> tuple[int, list[float]]:
    latencies: list[float] = []
    done = 0
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, limits=limits,
                                 timeout=30) as client:
        async def worker(seed: int) -> None:
            nonlocal done
            rng = random.Random(seed)
            while time.perf_counter() < stop_at:
                start = time.perf_counter()
                resp = await client.get(rng.choice(paths))
                resp.raise_for_status()
                latencies.append((time.perf_counter() - start) * 1000)
                done += 1

        await asyncio.gather(*(worker(i) for i in range(clients)))
    latencies.sort()
    return done, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    with catalog(args.count, args.database_url) as (runtime, _):
        with runtime.db.unit_of_work() as session:
            policy = policy_service.current_policy(session)
            user = identity.create_user(session, actor="bench", policy=policy, username="lead",
                                        role="support_lead", password="quiet-harbour-bench-7")
            identity.acknowledge_policy(session, user=user, policy=policy)
            token = identity.issue_token(session, user=user, ttl_seconds=3600).token
            ids = list(session.scalars(select(Recording.id).limit(500)))
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(runtime), host="127.0.0.1", port=port, log_level="error",
                                               lifespan="off", access_log=False))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        cases = {
            "reference /healthz": ["/healthz"],
            "search by agent": [f"/api/v1/recordings?agent={a}&limit=50" for a, _ in AGENTS],
            "recording metadata": [f"/api/v1/recordings/{i}" for i in ids],
        }
        print(f"database: {runtime.db.dialect}; catalog {args.count:,}; {args.clients} concurrent clients; "
              f"{args.seconds:g} s per case; one server process")
        results = {}
        for name, paths in cases.items():
            done, lat = asyncio.run(hammer(base, token, paths, args.clients, args.seconds))
            rps = done / args.seconds
            results[name] = rps
            p50, p99 = lat[len(lat) // 2], lat[int(len(lat) * 0.99) - 1]
            reference = results["reference /healthz"]
            ratio = f"  ({rps / reference:.2f} of reference)" if name != "reference /healthz" else ""
            print(f"{name:22s} {rps:8.0f} req/s   p50 {p50:6.1f} ms   p99 {p99:6.1f} ms{ratio}")
        server.should_exit = True
        thread.join(timeout=10)
    print("target: p99 <= 200 ms")


if __name__ == "__main__":
    main()
