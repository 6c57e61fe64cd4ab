"""The role-aware home page: what needs me now, with counts (each links to the page that deals with it)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy import func, select

from callvault.access import service as access
from callvault.api.deps import Caller
from callvault.oversight import service as oversight
from callvault.recordings.models import Recording, RecordingState
from callvault.retention import service as retention
from callvault.runtime import Runtime
from callvault.subject_requests import service as subject_requests
from callvault.web.common import abilities, render


@dataclass(frozen=True)
class Tile:
    title: str
    count: int
    href: str
    empty: str
    """What the tile says when there is nothing to do."""
    urgent: bool = False


def dashboard(request: Request, caller: Caller, runtime: Runtime) -> Response:
    can = abilities(caller)
    tiles: list[Tile] = []
    me = oversight.Reporter(username=caller.user.username, role=caller.user.role, source_ip=caller.source_ip)
    with runtime.db.unit_of_work() as session:
        pending = access.visible_requests(session, actor=caller.actor, status="pending", limit=500)
        to_decide = [r for r in pending if r.requester_id != caller.user.id]
        mine = [r for r in pending if r.requester_id == caller.user.id]
        if can["approver"]:
            tiles.append(Tile("Access requests waiting for your decision", len(to_decide), "/access?status=pending",
                              "No request waits for you.", urgent=bool(to_decide)))
        tiles.append(Tile("Your requests awaiting approval", len(mine), "/access", "You have no request waiting."))
        grants = access.active_grants(session, user_id=caller.user.id, now=runtime.clock.now())
        tiles.append(Tile("Your access grants in force", len(grants), "/access#grants", "You hold no grant."))
        if can["admin"]:
            quarantined = session.scalar(select(func.count()).select_from(Recording).where(
                Recording.quarantined.is_(True), Recording.state == RecordingState.AVAILABLE)) or 0
            tiles.append(Tile("Quarantined recordings (no consent evidence)", int(quarantined), "/quarantine",
                              "Nothing is quarantined.", urgent=bool(quarantined)))
        if can["requests_staff"]:
            waiting = subject_requests.summary(session, clock=runtime.clock)
            counts: dict[str, int] = waiting["counts"]  # type: ignore[assignment]
            overdue = int(waiting["overdue"])  # type: ignore[call-overload]
            open_count = counts.get("to_review", 0) + counts.get("ready", 0)
            tiles.append(Tile("Callers' requests waiting" + (f" ({overdue} overdue)" if overdue else ""), open_count,
                              "/requests", "No caller's request waits.", urgent=bool(overdue)))
        if can["misuse_recipient"]:
            open_reports = oversight.list_reports(session, policy=caller.policy, viewer=me, status="open", limit=500)
            tiles.append(Tile("Open misuse reports", len(open_reports), "/misuse", "No open misuse report.",
                              urgent=bool(open_reports)))
        if can["manage_retention"]:
            cases = [c for c in retention.list_cases(session) if c.status == "open"]
            holds = retention.list_holds(session, active_only=True)
            tiles.append(Tile("Open cases", len(cases), "/cases", "No open case."))
            tiles.append(Tile("Legal holds in force", len(holds), "/cases#holds", "No legal hold."))
    return render(request, "home.html", {"caller": caller, "tiles": tiles, "can": can})
