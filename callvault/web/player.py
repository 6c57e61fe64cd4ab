"""What the shared player (``static/player.js``) is given by the recording page and the QA review page alike:
the markers on its time axis and the offers (download, transcript) beside it.

Markers are metadata, not content: when the recording was paused or stopped (the control timeline) and
where capture lost media (``media_gaps``). They are drawn only once the page's content decision allowed
playing. Redaction spans come from the transcript itself (its ``removed`` list), which the browser fetches
through the purpose-checked, audited transcript route, so this module never reads the transcript.
"""

from __future__ import annotations

import json
from typing import Any

from callvault.capture import control
from callvault.core.clock import Clock
from callvault.policy.decide import Action, Actor, Decision, Grant, RecordingFacts, decide
from callvault.policy.schema import PolicyDocument

MARKER_LABELS = {"paused": "recording paused", "stopped": "recording stopped", "gap": "media gap (silence)"}


def control_spans(row: Any, events: list[Any]) -> list[tuple[float, float, str]]:
    """Paused / stopped spans, in seconds from the first stored sample."""
    origin = control.audio_origin(row)
    end = float(row.duration_seconds)
    spans: list[tuple[float, float, str]] = []
    open_pause: float | None = None
    for e in events:
        if e.at is None:
            continue
        t = max(0.0, (e.at - origin).total_seconds())
        if e.kind == "pause" and open_pause is None:
            open_pause = t
        elif e.kind == "resume" and open_pause is not None:
            spans.append((open_pause, min(t, end), "paused"))
            open_pause = None
        elif e.kind == "stop":
            spans.append((t, end, "stopped"))
    if open_pause is not None:
        spans.append((open_pause, end, "paused"))
    return [s for s in spans if s[1] > s[0]]


def gap_spans(row: Any) -> list[tuple[float, float, str]]:
    """Capture's media gaps, moved from "seconds from the INVITE" (how capture records them) to seconds of
    the stored audio, which starts later when a removed announcement was cut off the front."""
    gaps = getattr(row, "media_gaps", None) or []
    shift = (control.audio_origin(row) - row.started_at).total_seconds()
    end = float(row.duration_seconds)
    out = []
    for start, stop in gaps:
        a, b = max(0.0, float(start) - shift), min(end, float(stop) - shift)
        if b > a:
            out.append((a, b, "gap"))
    return out


def gap_lines(row: Any) -> list[str]:
    """Each media gap as the page names it beside the player (``0:01.0``, an en dash, ``0:03.5 (2.5 s)``), in
    the player's time (``gap_spans``), so a person can find it on the time axis. Metadata: shown before any
    purpose is named."""
    return [f"{_clock(a)}\u2013{_clock(b)} ({round(b - a, 1):g} s)" for a, b, _ in gap_spans(row)]


def _clock(seconds: float) -> str:
    """``m:ss.s``: tenths matter for a gap of under a second."""
    minutes, rest = divmod(round(seconds, 1), 60)
    return f"{int(minutes)}:{rest:04.1f}"


def capture_summary(row: Any) -> str:
    """What capture got of the call, in words (the search's CSV column): ``failed: <reason>`` (no audio
    kept), ``incomplete: N s without media`` or ``complete``."""
    if row.state == "failed":
        return f"failed: {row.failure_reason or 'no reason recorded'}"
    if (row.missing_seconds or 0) > 0:
        return f"incomplete: {round(row.missing_seconds, 1):g} s without media"
    return "complete"


def markers_json(spans: list[tuple[float, float, str]]) -> str:
    """The ``data-markers`` attribute: ``[{"start", "end", "kind", "label"}]`` (JSON in an attribute, not an
    inline script, which the Content-Security-Policy forbids)."""
    return json.dumps([{"start": round(a, 2), "end": round(b, 2), "kind": kind, "label": MARKER_LABELS.get(kind, kind)}
                       for a, b, kind in spans])


def offers(*, policy: PolicyDocument, actor: Actor, facts: RecordingFacts, purpose: str,
           grants: tuple[Grant, ...], clock: Clock) -> dict[str, Decision | None]:
    """What a page may offer besides the player, so it never shows a link the policy will refuse.

    These are ``decide()``'s answers for download and transcript, not audited: they serve nothing. Following
    the link is decided and audited like any other request; a refusal here is shown with its reason and,
    where an approval would lift it, a link to ask for exactly that action (``Decision.request_actions``).
    """
    return {action.value: decide(policy=policy, actor=actor, action=action, recording=facts,
                                 purpose=purpose, grants=grants, now=clock.now())
            for action in (Action.DOWNLOAD, Action.TRANSCRIPT)}
