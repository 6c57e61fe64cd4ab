"""schemathesis against /api/v1/openapi.json with a signed-in client: every GET operation gets a
bounded number of generated requests (parameters and bodies from the schema), reads then writes; none may answer 5xx,
and every documented response body must match its schema. Then every operation again with no credentials at all:
deny by default, so nothing but the public operations may answer anything other than a 4xx.
Long form: CALLVAULT_SCHEMATHESIS_EXAMPLES."""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in the test extras")
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import response_schema_conformance  # noqa: E402

from tests.support.env import LiveServer  # noqa: E402

EXAMPLES = int(os.environ.get("CALLVAULT_SCHEMATHESIS_EXAMPLES", "10"))
SEEN: Counter[str] = Counter()


# Configured as a deployment would be: an integration endpoint with no secret set answers 503 on
# purpose (the operator's log names the setting), which is not what this run is looking for.
INTEGRATION_SECRETS = {name: "schemathesis-integration-secret-0123456789" for name in (
    "CALLVAULT_CRM_WEBHOOK_SECRET", "CALLVAULT_CRM_GENERIC_SECRET", "CALLVAULT_CRM_ZENDESK_SECRET",
    "CALLVAULT_TWILIO_AUTH_TOKEN")}


@pytest.fixture(scope="module")
def signed_in(server: LiveServer) -> Iterator[tuple[str, dict[str, str]]]:
    runtime = server.env.runtime
    runtime.settings = dataclasses.replace(runtime.settings, env={**runtime.settings.env, **INTEGRATION_SECRETS})
    with server.client("admin") as client:
        token = str(client.headers["Authorization"])
    yield server.base_url, {"Authorization": token}
    operations = len([k for k in SEEN if " " in k])
    by_method = ", ".join(f"{m} {n}" for m, n in sorted(SEEN.items()) if " " not in m)
    print(f"[reliability] schemathesis: {operations} operations, requests by method: {by_method}; "
          f"0 server errors, 0 response-schema violations (max {EXAMPLES} examples each)")


@pytest.mark.parametrize("methods", [("GET",), ("POST", "PUT", "PATCH", "DELETE")], ids=["reads", "writes"])
def test_no_operation_answers_5xx_or_breaks_its_response_schema(
        signed_in: tuple[str, dict[str, str]], methods: tuple[str, ...]) -> None:
    # The schemathesis pytest plugin does not run on pytest 9 ('Function' has no '_nodeid'), so the
    # schema's strategies are driven by hypothesis here directly: same generation, same checks.
    # Writes run after reads, signed in as the administrator; sign-out is left out (it would end the
    # session the rest of the run uses).
    base_url, headers = signed_in
    api = schemathesis.openapi.from_url(f"{base_url}/api/v1/openapi.json", headers=headers)
    failures: list[str] = []
    operations = api.include(method=list(methods)).exclude(path_regex=r"/auth/(logout|sign-?out)")
    for result in operations.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
                  derandomize=True, database=None)
        def check(case: Any) -> None:
            SEEN[case.operation.method.upper()] += 1
            SEEN[case.operation.label] += 0
            case.call_and_validate(base_url=base_url, headers=headers,
                                   checks=[not_a_server_error, response_schema_conformance])

        # Every operation's failure is collected and reported together (schemathesis' FailureGroup
        # is a BaseExceptionGroup, not an Exception).
        try:
            check()
        except (Exception, BaseExceptionGroup) as exc:
            failures.append(f"{operation.label}: {exc}"[:2000])
    assert any(m in SEEN for m in methods), f"the schema lists no {methods} operation"
    assert not failures, "\n\n".join(failures)


PUBLIC = frozenset({
    "POST /api/v1/auth/token", "POST /api/v1/auth/password-reset",  # signing in
    "POST /api/v1/subject-requests",  # a caller asking for their data (B10): checked by code and mail, not account
})
"""Operations a request without credentials may succeed on; every other one must refuse it (401, or 4xx for
a request that is malformed before anyone is asked who is calling)."""


def test_without_credentials_no_operation_but_the_public_ones_answers_anything_but_a_refusal(
        signed_in: tuple[str, dict[str, str]]) -> None:
    base_url, _ = signed_in
    api = schemathesis.openapi.from_url(f"{base_url}/api/v1/openapi.json")
    answered: dict[str, Counter[int]] = {}
    for result in api.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
                  derandomize=True, database=None)
        def call(case: Any) -> None:
            answered.setdefault(case.operation.label, Counter())[case.call(base_url=base_url).status_code] += 1

        call()
    assert len(answered) >= 80, f"only {len(answered)} operations were tried"
    let_through = {label: dict(codes) for label, codes in answered.items()
                   if any(not 400 <= code < 500 for code in codes) and label not in PUBLIC}
    assert not let_through, f"answered without credentials: {let_through}"
    refused = sum(codes[401] for codes in answered.values())
    print(f"[reliability] schemathesis without credentials: {len(answered)} operations, "
          f"{sum(sum(c.values()) for c in answered.values())} requests, {refused} answered 401, none let through")
