"""Which capture process writes which pending recording, and what happens to a dead process's calls.

A call's audio is spooled under a data key that lives only in the capture process's memory (nothing
plaintext, no key on disk), so a process that dies mid-call leaves ``pending`` rows nobody can ever
finish. Each capture process therefore registers itself (``capture_nodes``: ``host:pid:start-ms``,
heartbeat every ``HEARTBEAT_SECONDS``) before it answers a call, tags every pending row it reserves
with that id, and deletes its registration after a clean shutdown. At start-up (and every
``SWEEP_SECONDS`` after) a capture process marks ``failed`` the pending rows of nodes that are gone,
with the reason ``CAPTURE_STOPPED``, through ``ingest.fail_recording`` (webhook, audit entry,
compliance report), so the call's absence is on the record instead of a row stuck in ``pending``.

A node is gone when its registration is missing (it shut down, so whatever it left it could not
store), when it ran on this host and its pid no longer runs, or when its heartbeat is older than
``STALE_SECONDS`` (a process on another host that died, or a reused pid). A live node's rows are
never touched, so several capture processes can share one database.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select

from callvault.capture.ingest import fail_recording
from callvault.capture.models import CaptureNode
from callvault.recordings.models import Recording, RecordingState
from callvault.runtime import Runtime

log = logging.getLogger("callvault.siprec")

HEARTBEAT_SECONDS = 10.0
STALE_SECONDS = 120.0
"""A registration not refreshed for this long belongs to a dead process: twelve missed heartbeats, so
a busy or briefly disconnected node is not taken for dead (its calls would be marked failed)."""
SWEEP_SECONDS = 60.0
CAPTURE_STOPPED = "capture stopped before the call was stored"


@dataclass(frozen=True)
class NodeId:
    host: str
    pid: int
    started_ms: int

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.started_ms}"

    @classmethod
    def parse(cls, text: str) -> NodeId | None:
        host, _, rest = text.rpartition(":")
        host, _, pid = host.rpartition(":")
        try:
            return cls(host, int(pid), int(rest))
        except ValueError:
            return None


def this_node(started_at: datetime) -> NodeId:
    return NodeId(socket.gethostname(), os.getpid(), int(started_at.timestamp() * 1000))


def register(runtime: Runtime, node: NodeId) -> None:
    """Record this process as live (before it answers any call). Blocking."""
    now = runtime.clock.now()
    with runtime.db.unit_of_work() as session:
        session.merge(CaptureNode(id=str(node), host=node.host, pid=node.pid, started_at=now, heartbeat_at=now))


def heartbeat(runtime: Runtime, node: NodeId) -> None:
    """Refresh this process's registration (re-created if another node swept it). Blocking."""
    now = runtime.clock.now()
    with runtime.db.unit_of_work() as session:
        row = session.get(CaptureNode, str(node))
        if row is None:
            session.add(CaptureNode(id=str(node), host=node.host, pid=node.pid, started_at=now,
                                    heartbeat_at=now))
        else:
            row.heartbeat_at = now


def unregister(runtime: Runtime, node: NodeId) -> None:
    """A clean shutdown: anything of this node still pending can only be failed by the next start. Blocking."""
    with runtime.db.unit_of_work() as session:
        session.execute(delete(CaptureNode).where(CaptureNode.id == str(node)))


def _pid_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it runs
    return True


def _gone(node_id: str, row: CaptureNode | None, *, me: NodeId, now: datetime) -> bool:
    if node_id == str(me):
        return False
    if row is None:
        return True
    parsed = NodeId.parse(node_id)
    if parsed is not None and parsed.host == me.host and not _pid_runs(parsed.pid):
        return True
    return row.heartbeat_at < now - timedelta(seconds=STALE_SECONDS)


def fail_orphaned_calls(runtime: Runtime, me: NodeId) -> list[str]:
    """Mark failed the pending rows of capture nodes that are gone; returns their ids. Blocking.

    The spool cannot be turned into a recording after the process died (its key was never stored),
    so failing the row is the only honest outcome; the partial spool is deleted with it.
    """
    now = runtime.clock.now()
    with runtime.db.read_only() as session:
        pending = session.execute(select(Recording.id, Recording.blob_key, Recording.capture_node).where(
            Recording.state == RecordingState.PENDING, Recording.capture_node.is_not(None))).all()
        nodes = {row.id: row for row in session.scalars(select(CaptureNode))}
    failed: list[str] = []
    gone_nodes: set[str] = set()
    for rec_id, blob_key, node_id in pending:
        assert node_id is not None  # selected so
        node = nodes.get(node_id)
        if not _gone(node_id, node, me=me, now=now):
            continue
        gone_nodes.add(node_id)
        ended_at = node.heartbeat_at if node is not None else None
        if fail_recording(runtime.db, runtime.store, rec_id, blob_key, reason=CAPTURE_STOPPED, actor="siprec",
                          ended_at=ended_at, details={"source": "siprec", "capture_node": node_id},
                          clock=runtime.clock):
            failed.append(rec_id)
    stale = {n for n, row in nodes.items() if _gone(n, row, me=me, now=now)} | gone_nodes
    if stale:
        with runtime.db.unit_of_work() as session:
            session.execute(delete(CaptureNode).where(CaptureNode.id.in_(sorted(stale))))
    if failed:
        log.warning("%d call(s) of stopped capture processes marked failed: %s", len(failed), CAPTURE_STOPPED)
    return failed
