"""Long form of tests/reliability/test_schemathesis.py: EVERY operation of /api/v1/openapi.json (all
methods), once signed in as a low-privilege role (alice, a specialist who hears only extension 2001)
and once as the administrator (who administers and hears nothing), with real recordings in the
catalog so that generated requests reach them.

Per generated request it asserts what issue 24's outside tester checked: no 5xx, the response matches
the documented schema, and no 2xx hands content (audio, a transcript, a CRM check of the transcript,
a training clip) of a call the policy keeps from that caller: the administrator's role has
``content_scope: none`` and alice's ``own_extension``, so bob's calls (2002) are never hers. Half of
the requests have their ``recording_id`` replaced by a real one (hers, bob's, or an unknown id), and half
of those naming a ``purpose`` name one of the policy's, which random strings never hit; so alice does play
her own calls during the run (``content 2xx as alice`` counts the answers the leak check examined).

    CALLVAULT_SOAK=1 CALLVAULT_SOAK_SCHEMATHESIS_EXAMPLES=30 \
        .venv/bin/pytest tests/soak/test_schemathesis_soak.py -s [--db=postgres]

``CALLVAULT_SOAK_SCHEMATHESIS_EXAMPLES`` is the most examples per operation and persona (hypothesis stops
early where an operation has fewer distinct inputs). The run prints one ``[soak] schemathesis …`` line.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in the test extras")
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import response_schema_conformance  # noqa: E402

from tests.reliability.test_schemathesis import INTEGRATION_SECRETS  # noqa: E402
from tests.support.audio import metadata, upload, wav_bytes  # noqa: E402
from tests.support.env import LiveServer  # noqa: E402

EXAMPLES = int(os.environ.get("CALLVAULT_SOAK_SCHEMATHESIS_EXAMPLES", "30"))
CONTENT_PATH = re.compile(r"/(audio|transcript|crm-note|training-clip|clips)(/|$)|/crm/notes$|/transcripts/search$")
"""Operations whose 2xx body is (or is derived from) a call's audio or words."""
PURPOSES = {"alice": ["self_review"],
            "admin": ["self_review", "spot_check", "complaint_investigation", "regulatory_compliance", "training"]}
"""Policy A's purposes each persona might name (alice's role may name only self_review; the administrator's
none, so any): half the requests that name a purpose name one of these (random text never does)."""
LAST = re.compile(r"/auth/(logout|sign-?out|revoke)|/me/(password|mfa)")
"""Run after everything else: they may end or change the session the rest of the run uses."""


@dataclasses.dataclass
class Calls:
    """Real recordings: alice's own (ext 2001) and bob's (ext 2002)."""

    alices: list[str]
    bobs: list[str]


@pytest.fixture(scope="module")
def calls(server: LiveServer) -> Calls:
    runtime = server.env.runtime
    runtime.settings = dataclasses.replace(runtime.settings, env={**runtime.settings.env, **INTEGRATION_SECRETS})
    ids: dict[str, list[str]] = {"alice": [], "bob": []}
    with server.client("admin") as admin:
        for i in range(6):
            who, ext = ("alice", "2001") if i % 2 == 0 else ("bob", "2002")
            resp = upload(admin, wav_bytes(0.5, seed=900 + i), metadata(agent=who, extension=ext))
            assert resp.status_code == 201, resp.text
            ids[who].append(resp.json()["id"])
    return Calls(alices=ids["alice"], bobs=ids["bob"])


def _forbidden(persona: str, calls: Calls) -> set[str]:
    """The calls whose content the policy never gives this persona, whatever the purpose or approval."""
    return set(calls.alices + calls.bobs) if persona == "admin" else set(calls.bobs)


def _content_leak(persona: str, forbidden: set[str], case: Any, response: Any) -> str | None:
    if not 200 <= response.status_code < 300 or not CONTENT_PATH.search(case.operation.path):
        return None
    asked = str((case.path_parameters or {}).get("recording_id", ""))
    body = response.content[:2_000_000].decode("latin-1")
    named = [rec for rec in forbidden if rec == asked or rec in body]
    if named:
        return (f"{case.method} {case.formatted_path} answered {response.status_code} to {persona} with content of "
                f"{named} (the policy keeps these calls from {persona})")
    return None


@pytest.fixture(scope="module")
def tally() -> Iterator[Counter[str]]:
    seen: Counter[str] = Counter()
    yield seen
    counts = ", ".join(f"{k} {v}" for k, v in sorted(seen.items()) if k.startswith(("as ", "status ", "content ")))
    print(f"[soak] schemathesis: {seen['operations']} operations, {seen['cases']} requests ({counts}); "
          f"max {EXAMPLES} examples per operation and persona")


@pytest.mark.parametrize("persona", ["alice", "admin"])
def test_every_operation_as_each_role_answers_without_5xx_schema_breaks_or_content_the_policy_keeps_back(
        server: LiveServer, calls: Calls, tally: Counter[str], persona: str) -> None:
    with server.client(persona) as client:
        headers = {"Authorization": str(client.headers["Authorization"])}
    base_url = server.base_url
    forbidden = _forbidden(persona, calls)
    real_ids = [*calls.alices, *calls.bobs, "rec_unknown0000000000000000"]
    api = schemathesis.openapi.from_url(f"{base_url}/api/v1/openapi.json", headers=headers)
    operations = [result.ok() for result in api.get_all_operations()]
    operations.sort(key=lambda op: (bool(LAST.search(op.path)), op.method.upper() != "GET", op.path))
    failures: list[str] = []
    for operation in operations:
        tally["operations"] += persona == "alice"

        @given(case=operation.as_strategy(), pick=st.one_of(st.none(), st.sampled_from(real_ids)),
               purpose=st.one_of(st.none(), st.sampled_from(PURPOSES[persona])))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
                  derandomize=True, database=None, phases=[Phase.explicit, Phase.generate])
        def check(case: Any, pick: str | None, purpose: str | None) -> None:
            if pick is not None and case.path_parameters and "recording_id" in case.path_parameters:
                case.path_parameters["recording_id"] = pick
            if purpose is not None and "{recording_id}" in case.operation.path:  # unknown parameters are ignored
                case.query = {**(case.query or {}), "purpose": purpose}
            response = case.call(base_url=base_url, headers=headers)
            tally["cases"] += 1
            tally[f"as {persona}"] += 1
            tally[f"status {response.status_code // 100}xx"] += 1
            if 200 <= response.status_code < 300 and CONTENT_PATH.search(case.operation.path):
                tally[f"content 2xx as {persona}"] += 1  # the leak check below had something to look at
            leak = _content_leak(persona, forbidden, case, response)
            assert leak is None, leak
            case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

        # Every operation's failure is collected and reported together (schemathesis' FailureGroup
        # is a BaseExceptionGroup, not an Exception).
        try:
            check()
        except (Exception, BaseExceptionGroup) as exc:
            failures.append(f"{persona} {operation.label}: {exc}"[:3000])
    assert operations, "the schema lists no operation"
    assert not failures, f"{len(failures)} operation(s) failed:\n\n" + "\n\n".join(failures)
