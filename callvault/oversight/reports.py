"""The compliance report (A4, PIPEDA): for a period, what was recorded, who reached it and why, what was
refused, and what was released, destroyed, held or quarantined.

Built from the recordings catalogue and the audit log only, so it works whatever other domains are
installed: lifecycle events are recognised by their audit action names (``retention.*``,
``*.destroyed``, ``*hold*``, ``*quarantine*``, ``subject_request.*``/``*.released``) and counted as found.
Output as CSV (one long table an auditor can pivot) or self-contained HTML with an inline SVG chart.
"""

from __future__ import annotations

import csv
import html
import io
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from callvault.audit.models import AuditEntry
from callvault.capture.models import CaptureIncident
from callvault.oversight.models import MisuseReport
from callvault.oversight.service import overdue_reports
from callvault.recordings.models import Recording, RecordingState
from callvault.retention import service as retention

CONTENT_ACTIONS = ("recording.play", "recording.download", "recording.export", "recording.transcript")
LIFECYCLE_WORDS = ("destroy", "shred", "eras", "hold", "quarantin", "release", "subject_request", "retention",
                   "case.")
CSV_COLUMNS = ("section", "team", "direction", "consent_state", "actor", "role", "action", "purpose", "decision",
               "reason", "week", "count")


@dataclass
class ComplianceReport:
    start: datetime
    end: datetime
    recorded: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    """(team, direction, consent state) → recordings started in the period and still catalogued."""
    by_consent_source: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(direction, evidence source: ``metadata``, ``control_api``, ``standing_rule``, ``none``) → recordings
    started in the period: how much of the consent evidence rests on the policy's standing rules."""
    ingested_events: int = 0
    accessed: Counter[tuple[str, str, str, str, str]] = field(default_factory=Counter)
    """(actor, role, action, purpose, decision) → requests for recording content."""
    per_week: Counter[tuple[date, str]] = field(default_factory=Counter)
    """(Monday of the week, purpose) → allowed content accesses."""
    denied: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(action, reason) → every refusal in the period, content or not."""
    lifecycle: Counter[str] = field(default_factory=Counter)
    """audit action → releases, destructions, holds, quarantines and the like."""
    quarantined_now: int = 0
    capture_failed: int = 0
    """Calls started in the period that capture could not record (no media, process died): ``failed`` rows."""
    with_gaps: int = 0
    """Recordings started in the period with spans where no media arrived (flagged incomplete)."""
    missing_seconds: float = 0.0
    incidents: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(kind, status) → recording incidents (``recording_scope.mandatory``) for calls started in the period:
    calls that must be recorded and were missing, failed, gapped or refused (``capture.incidents``)."""
    open_incidents: list[IncidentLine] = field(default_factory=list)
    """The incidents of the period still open, oldest call first (at most ``MAX_INCIDENT_LINES``)."""
    misuse: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(source, status) → misuse reports filed in the period."""
    overdue_misuse: list[OverdueReportLine] = field(default_factory=list)
    """Misuse and breach reports not closed whose deadline (``misuse.report_deadline_days``) had passed by the
    report's end, whenever they were filed (HIPAA 164.404(b), FCA SUP 15.3)."""
    policy_events: Counter[str] = field(default_factory=Counter)
    holds: list[HoldLine] = field(default_factory=list)
    """Legal holds active when the report was built: who placed them, why, and whether review is overdue."""


@dataclass(frozen=True)
class HoldLine:
    """One active legal hold as the compliance report lists it (A4, A9, B11)."""

    hold_id: str
    held: str
    reason: str
    owner: str
    placed_by: str
    review_on: date
    review_overdue: bool


@dataclass(frozen=True)
class OverdueReportLine:
    """One misuse report past its deadline as the compliance report lists it (summary, never the description)."""

    report_id: str
    summary: str
    status: str
    due_at: datetime
    assignee: str


@dataclass(frozen=True)
class IncidentLine:
    """One open recording incident as the compliance report lists it (no caller number)."""

    incident_id: str
    kind: str
    call_id: str
    started_at: datetime
    extension: str
    team: str
    detail: str
    clause: str


MAX_INCIDENT_LINES = 200


def _week(day: date) -> date:
    return day - timedelta(days=day.weekday())


def build_report(session: Session, *, start: datetime, end: datetime, today: date | None = None) -> ComplianceReport:
    """The report for [start, end); ``today`` (default: the end's date) decides which holds are overdue."""
    report = ComplianceReport(start=start, end=end)
    as_of = today or end.date()
    report.holds = [HoldLine(h.id, f"recording {h.recording_id}" if h.recording_id else f"case {h.case_ref}",
                             h.reason, h.owner, h.placed_by, h.review_on, h.review_on < as_of)
                    for h in retention.list_holds(session)]
    for team, direction, consent, count in session.execute(
        select(Recording.team, Recording.direction, Recording.consent_state, func.count())
        .where(Recording.started_at >= start, Recording.started_at < end)
        .group_by(Recording.team, Recording.direction, Recording.consent_state)
    ):
        report.recorded[(team or "(none)", direction, consent)] += count
    in_period = (Recording.started_at >= start, Recording.started_at < end)
    for direction, source, count in session.execute(
        select(Recording.direction, Recording.consent_source, func.count()).where(*in_period)
        .group_by(Recording.direction, Recording.consent_source)
    ):
        report.by_consent_source[(direction, source)] += count
    report.capture_failed = session.scalar(select(func.count()).select_from(Recording).where(
        *in_period, Recording.state == RecordingState.FAILED)) or 0
    gapped, missing = session.execute(select(func.count(), func.coalesce(func.sum(Recording.missing_seconds), 0.0))
                                      .where(*in_period, Recording.missing_seconds > 0)).one()
    report.with_gaps, report.missing_seconds = int(gapped), round(float(missing), 3)
    report.quarantined_now = session.scalar(
        select(func.count()).select_from(Recording).where(Recording.quarantined.is_(True))) or 0
    rows = session.execute(
        select(AuditEntry.at, AuditEntry.actor, AuditEntry.actor_role, AuditEntry.action, AuditEntry.purpose,
               AuditEntry.decision, AuditEntry.reason)
        .where(AuditEntry.at >= start, AuditEntry.at < end).order_by(AuditEntry.seq)
    )
    for at, actor, role, action, purpose, decision, reason in rows:
        if action == "recording.ingested":
            report.ingested_events += 1
        if action in CONTENT_ACTIONS:
            report.accessed[(actor, role or "", action.removeprefix("recording."), purpose or "(none)",
                             decision)] += 1
            if decision == "allow":
                report.per_week[(_week(at.date()), purpose or "(none)")] += 1
        if decision == "deny":
            report.denied[(action, (reason or "")[:120])] += 1
        elif any(word in action for word in LIFECYCLE_WORDS):
            report.lifecycle[action] += 1
        if action.startswith("policy."):
            report.policy_events[action] += 1
    in_period_incident = (CaptureIncident.started_at >= start, CaptureIncident.started_at < end)
    for kind, status, count in session.execute(
        select(CaptureIncident.kind, CaptureIncident.status, func.count()).where(*in_period_incident)
        .group_by(CaptureIncident.kind, CaptureIncident.status)
    ):
        report.incidents[(kind, status)] += count
    report.open_incidents = [
        IncidentLine(i.id, i.kind, i.call_id, i.started_at, i.extension or "", i.team or "", i.detail, i.clause)
        for i in session.scalars(select(CaptureIncident).where(*in_period_incident, CaptureIncident.status == "open")
                                 .order_by(CaptureIncident.started_at, CaptureIncident.id).limit(MAX_INCIDENT_LINES))]
    for source, status, count in session.execute(
        select(MisuseReport.source, MisuseReport.status, func.count())
        .where(MisuseReport.created_at >= start, MisuseReport.created_at < end)
        .group_by(MisuseReport.source, MisuseReport.status)
    ):
        report.misuse[(source, status)] += count
    report.overdue_misuse = [OverdueReportLine(r.id, r.summary, r.status, r.due_at, r.assignee or "")
                             for r in overdue_reports(session, now=end) if r.due_at is not None]
    return report


def to_csv(report: ComplianceReport) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()

    def row(section: str, count: int, **values: str) -> None:
        writer.writerow({"section": section, "count": count, **values})

    row("period", 0, reason=f"{report.start.isoformat()} to {report.end.isoformat()}")
    for (team, direction, consent), count in sorted(report.recorded.items()):
        row("recorded", count, team=team, direction=direction, consent_state=consent)
    for (direction, source), count in sorted(report.by_consent_source.items()):
        row("consent_evidence", count, direction=direction, reason=f"source: {source}")
    row("ingest_events", report.ingested_events)
    for (actor, role, action, purpose, decision), count in sorted(report.accessed.items()):
        row("accessed", count, actor=actor, role=role, action=action, purpose=purpose, decision=decision)
    for (week, purpose), count in sorted(report.per_week.items()):
        row("accesses_per_week", count, week=week.isoformat(), purpose=purpose)
    for (action, reason), count in sorted(report.denied.items()):
        row("denied", count, action=action, reason=reason)
    for action, count in sorted(report.lifecycle.items()):
        row("lifecycle", count, action=action)
    row("quarantined_now", report.quarantined_now)
    for hold in report.holds:
        row("legal_hold", 1, actor=hold.placed_by, reason=f"{hold.held}: {hold.reason} (owner {hold.owner}, review "
            f"{hold.review_on.isoformat()}{', OVERDUE' if hold.review_overdue else ''})"[:300],
            decision="review_overdue" if hold.review_overdue else "active")
    row("capture_failed", report.capture_failed)
    row("media_gaps", report.with_gaps, reason=f"{report.missing_seconds:g} s without media")
    for (kind, status), count in sorted(report.incidents.items()):
        row("recording_incidents", count, action=kind, decision=status)
    for line in report.open_incidents:
        row("open_incident", 1, action=line.kind, team=line.team, decision="open",
            reason=f"call {line.call_id} at {line.started_at.isoformat()} ext {line.extension or '-'}: {line.detail} "
                   f"({line.clause})"[:300])
    for (source, status), count in sorted(report.misuse.items()):
        row("misuse_reports", count, action=source, decision=status)
    for late in report.overdue_misuse:
        row("misuse_overdue", 1, actor=late.assignee, decision=late.status,
            reason=f"report {late.report_id} due {late.due_at.isoformat()}: {late.summary}"[:300])
    for action, count in sorted(report.policy_events.items()):
        row("policy", count, action=action)
    return buffer.getvalue()


_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
            "#17becf")

PALETTE = _PALETTE
"""The chart's colours, one per purpose in order (the HTML and PDF charts use the same)."""


def weekly_chart_svg(per_week: Counter[tuple[date, str]], labels: dict[str, str] | None = None) -> str:
    """Grouped bars: allowed content accesses per week, one colour per purpose. Plain SVG, no script.

    ``labels``: the policy's names for its purposes, so the legend reads as the policy does (the id
    follows in brackets, as the audit log and the CSV name it). Every purpose charted is in the legend."""
    labels = labels or {}
    if not per_week:
        return "<p>No content was accessed in this period.</p>"
    weeks = sorted({w for w, _ in per_week})
    purposes = sorted({p for _, p in per_week})
    top = max(per_week.values())
    bar, gap, height, left, bottom = 14, 18, 220, 40, 40
    group = bar * len(purposes) + gap
    # Wide enough for the longest legend line too (about 7 px a character at 12 px), so no name is cut.
    longest = max(len(f"{labels.get(p, p)} ({p}): {top}") for p in purposes)
    width = max(left + group * len(weeks) + 20, left + 18 + 7 * longest)
    legend_y = height + bottom
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" '
           f'height="{legend_y + 20 * len(purposes) + 10}" aria-label="content accesses per week per purpose">']
    out.append(f'<line x1="{left}" y1="{height}" x2="{width - 10}" y2="{height}" stroke="#333"/>')
    for frac in (0.5, 1.0):
        y = height - (height - 20) * frac
        out.append(f'<text x="{left - 6}" y="{y + 4:.0f}" font-size="10" text-anchor="end">{round(top * frac)}</text>')
    for wi, week in enumerate(weeks):
        x0 = left + wi * group + gap // 2
        for pi, purpose in enumerate(purposes):
            count = per_week.get((week, purpose), 0)
            h = (height - 20) * count / top
            colour = _PALETTE[pi % len(_PALETTE)]
            out.append(f'<rect x="{x0 + pi * bar}" y="{height - h:.1f}" width="{bar - 2}" height="{h:.1f}" '
                       f'fill="{colour}"><title>{html.escape(labels.get(purpose, purpose))}, week of {week}: {count}'
                       '</title></rect>')
        out.append(f'<text x="{x0}" y="{height + 14}" font-size="10">{week.strftime("%d %b")}</text>')
    for pi, purpose in enumerate(purposes):
        y = legend_y + pi * 20
        out.append(f'<rect x="{left}" y="{y}" width="12" height="12" fill="{_PALETTE[pi % len(_PALETTE)]}"/>')
        name = labels.get(purpose, purpose)
        shown = f"{name} ({purpose})" if name != purpose else purpose
        out.append(f'<text x="{left + 18}" y="{y + 10}" font-size="12">{html.escape(shown)}: '
                   f'{sum(n for (_, p), n in per_week.items() if p == purpose)}</text>')
    out.append("</svg>")
    return "".join(out)


def _table(headers: tuple[str, ...], rows: list[tuple[object, ...]], empty: str) -> str:
    if not rows:
        return f"<p>{html.escape(empty)}</p>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def overdue_rows(report: ComplianceReport) -> list[tuple[object, ...]]:
    return [(r.report_id, r.summary, f"{r.status}, OVERDUE", r.due_at.isoformat(), r.assignee or "nobody")
            for r in report.overdue_misuse]


def to_html(report: ComplianceReport, *, title: str = "Compliance report", labels: dict[str, str] | None = None) -> str:
    period = f"{report.start.isoformat()} to {report.end.isoformat()} (end exclusive)"
    recorded = sorted(((t, d, c, n) for (t, d, c), n in report.recorded.items()))
    accessed = sorted(((a, r, act, p, dec, n) for (a, r, act, p, dec), n in report.accessed.items()))
    denied = sorted(((a, r, n) for (a, r), n in report.denied.items()), key=lambda x: -x[2])
    lifecycle = sorted(report.lifecycle.items())
    misuse = sorted(((s, st, n) for (s, st), n in report.misuse.items()))
    parts = [
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;"
        "margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}"
        "th{background:#f3f3f3}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><p>Period: {html.escape(period)}</p>",
        "<h2>Recorded</h2>",
        f"<p>{sum(report.recorded.values())} recordings started in the period are catalogued; "
        f"{report.ingested_events} were ingested in it; {report.quarantined_now} are quarantined now.</p>",
        f"<p>Capture failed for {report.capture_failed} calls (no audio kept); {report.with_gaps} recordings "
        f"have media gaps ({report.missing_seconds:g} s without media in all).</p>",
        _table(("team", "direction", "consent", "recordings"), list(recorded), "Nothing was recorded."),
        "<h3>Consent evidence by source</h3>",
        _table(("direction", "evidence source", "recordings"),
               [(d, s, n) for (d, s), n in sorted(report.by_consent_source.items())], "Nothing was recorded."),
        "<h2>Accesses per week and purpose</h2>", weekly_chart_svg(report.per_week, labels),
        "<h2>Accessed (by whom, why, decision)</h2>",
        _table(("user", "role", "action", "purpose", "decision", "requests"), list(accessed),
               "Nobody asked for recording content."),
        "<h2>Denied</h2>", _table(("action", "reason", "times"), list(denied), "Nothing was refused."),
        "<h2>Released, destroyed, held, quarantined</h2>",
        _table(("event", "times"), list(lifecycle), "No such events in the period."),
        "<h2>Legal holds in force</h2>",
        _table(("held", "reason", "owner", "placed by", "review by", "review"),
               [(h.held, h.reason, h.owner, h.placed_by, h.review_on.isoformat(),
                 "OVERDUE" if h.review_overdue else "due later") for h in report.holds], "No legal holds."),
        "<h2>Recording incidents (calls that must be recorded)</h2>",
        _table(("kind", "status", "calls"), [(k, st, n) for (k, st), n in sorted(report.incidents.items())],
               "No incidents: every call in mandatory scope is on record (or the policy makes none mandatory)."),
        _table(("call started", "kind", "call", "extension", "team", "what was found", "rule"),
               [(i.started_at.isoformat(), i.kind, i.call_id, i.extension, i.team, i.detail, i.clause)
                for i in report.open_incidents], "No incident of the period is open."),
        "<h2>Misuse reports</h2>", _table(("source", "status", "reports"), list(misuse), "None filed."),
        "<h3>Overdue (past the policy's deadline, not closed)</h3>",
        _table(("report", "summary", "status", "due", "assigned to"), overdue_rows(report),
               "No report is past its deadline."),
        "<h2>Policy</h2>", _table(("event", "times"), sorted(report.policy_events.items()), "No policy changes."),
        "</body></html>\n",
    ]
    return "".join(parts)
