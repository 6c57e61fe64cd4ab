"""The web forms' step-up (RELIABILITY 17) for actions other than a download.

Approving a caller's request, creating an API token, resetting someone's MFA or password, issuing an
enrolment code and loading a policy need the same fresh one-time code as a download
(``identity.step_up``, ``CALLVAULT_STEP_UP_SECONDS``): a browser left signed in, or a stolen session
cookie, must not mail recordings out, destroy them, or make credentials. As on the recording page, the
form takes the code in place (a "Your one-time code" field, shown while this session has no fresh
step-up): a right code stamps the session, as ``POST /recordings/{id}/step-up`` does, and the action goes
on; a wrong one is counted towards the sign-in guessing limits and audited by ``step_up.confirm``.
"""

from __future__ import annotations

from typing import Any

from jinja2 import pass_context

from callvault.api.deps import Caller, require_step_up
from callvault.core.errors import StepUpRequired
from callvault.identity import step_up
from callvault.runtime import Runtime
from callvault.web.common import templates

WRONG_CODE = ("That one-time code is wrong, already used, or too many attempts were made. Nothing was done: "
              "enter the current code from your authenticator app in “Your one-time code” and submit again.")


def fresh(runtime: Runtime, caller: Caller, action: str) -> bool:
    """Whether this session confirmed a one-time code recently enough to do ``action`` without another."""
    try:
        require_step_up(runtime, caller, action)
    except StepUpRequired:
        return False
    return True


def missing_code(runtime: Runtime, action: str) -> str:
    """What a form sent without a code (and with no fresh step-up) says: why, and what to do."""
    window = step_up.minutes(runtime.settings.step_up_seconds)
    return (f"Nothing was done: {action} needs your one-time code. Enter the current code from your "
            f"authenticator app in “Your one-time code” and submit again (it is asked again once {window} "
            f"have passed since the last one).")


def refusal(runtime: Runtime, caller: Caller, code: str, action: str) -> str | None:
    """None when this session may do ``action`` now: it stepped up within the window, or ``code`` confirms
    it now (stamping the session); else what the page says. A wrong code's failure count and audit entry
    are committed before the refusal is shown, as the recording page's step-up does."""
    if fresh(runtime, caller, action):
        return None
    if not code.strip():
        return missing_code(runtime, action)
    with runtime.db.unit_of_work() as session:
        ok = step_up.confirm(session, user=caller.user, via=caller.via, credential_id=caller.credential_id,
                             code=code, keyring=runtime.keyring, counters=runtime.counters,
                             source_ip=caller.source_ip, clock=runtime.clock)
    return None if ok else WRONG_CODE


@pass_context
def step_up_fresh(context: Any, caller: Caller) -> bool:
    """For templates: whether to leave out the "Your one-time code" field (this session stepped up recently).
    Any action counts the same window, so the approval's words stand for all of them."""
    runtime: Runtime = context["request"].app.state.runtime
    return fresh(runtime, caller, step_up.APPROVE_REQUEST)


templates.env.globals["step_up_fresh"] = step_up_fresh
