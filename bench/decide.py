"""Access decisions per second: the policy engine alone, as every request runs it.

    .venv/bin/python -m bench.decide [--count 200000]

Times ``decide()`` over a mix of roles, actions, purposes and scopes for both example policies,
and, as the reference measured in the same run, a plain dict lookup + comparison doing the
least work any permission check must do. Target: >= 20,000 decisions/s.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

from callvault.policy.decide import Action, Actor, RecordingFacts, decide
from callvault.policy.loader import load_policy_file

POLICIES = Path(__file__).resolve().parents[1] / "examples" / "policies"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200_000)
    args = parser.parse_args()
    for name in ("policy-a.yaml", "policy-b.yaml"):
        policy = load_policy_file(POLICIES / name)
        actors = [Actor(user_id=f"u{i}", username=f"user{i}", role=role, extension=str(2000 + i), team="t",
                        acknowledged_policy_sha256=policy.content_sha256)
                  for i, role in enumerate(policy.roles)]
        recordings = [RecordingFacts(recording_id=f"r{i}", extension=str(2000 + i), agent=f"user{i}", team="t")
                      for i in range(len(actors))]
        purposes = [*policy.purposes, "curiosity", None]
        cases = list(itertools.product(actors, [Action.PLAY, Action.DOWNLOAD, Action.VIEW_METADATA],
                                       recordings, purposes))
        start = time.perf_counter()
        allowed = 0
        for i in range(args.count):
            actor, action, rec, purpose = cases[i % len(cases)]
            allowed += decide(policy=policy, actor=actor, action=action, recording=rec, purpose=purpose).allowed
        rate = args.count / (time.perf_counter() - start)

        table = {(a.role, p): True for a in actors for p in policy.purposes}
        start = time.perf_counter()
        for i in range(args.count):
            actor, action, rec, purpose = cases[i % len(cases)]
            _ = table.get((actor.role, purpose or "")) and actor.extension == rec.extension
        reference = args.count / (time.perf_counter() - start)
        print(f"{policy.policy_id}: {rate:,.0f} decisions/s ({allowed / args.count:.0%} allowed); "
              f"reference dict lookup {reference:,.0f}/s; ratio {rate / reference:.2f}; target >= 20,000/s")


if __name__ == "__main__":
    main()
