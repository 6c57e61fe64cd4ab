"""The compliance report (A4) as a PDF an auditor can file: the same sections, tables and weekly chart as
the HTML page (``reports.to_html``), drawn with fpdf2 (pure Python, vectors, no browser needed).

The chart's legend names every purpose charted with the policy's own words and its id, on as many lines as
it takes, so nothing is cut (issue 26 point 5). Text goes in a Unicode font when the system has DejaVu Sans
(Debian's fonts-dejavu-core); otherwise in the PDF core font, with characters it cannot show replaced.
"""

from __future__ import annotations

from collections import Counter
from datetime import date
from pathlib import Path

from fpdf import FPDF
from fpdf.enums import XPos, YPos
from fpdf.fonts import FontFace

from callvault.oversight.reports import PALETTE as _PALETTE
from callvault.oversight.reports import ComplianceReport, overdue_rows

_FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"))


class _Pdf(FPDF):
    """A4 portrait, a footer with the page number, and one font for the whole document."""

    def __init__(self, title: str) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self.report_title = title
        self.unicode = False
        for folder in _FONT_DIRS:
            regular, bold = folder / "DejaVuSans.ttf", folder / "DejaVuSans-Bold.ttf"
            if regular.is_file() and bold.is_file():
                self.add_font("body", "", str(regular))
                self.add_font("body", "B", str(bold))
                self.unicode = True
                break
        self.family = "body" if self.unicode else "helvetica"
        self.set_auto_page_break(auto=True, margin=15)
        self.set_title(title)
        self.set_creator("callvault")

    def text_of(self, value: object) -> str:
        text = str(value)
        return text if self.unicode else text.encode("latin-1", "replace").decode("latin-1")

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(self.family, "", 8)
        self.cell(0, 6, self.text_of(f"{self.report_title} · page {self.page_no()}"), align="C")


def _heading(pdf: _Pdf, text: str, size: int = 13) -> None:
    pdf.ln(3)
    pdf.set_font(pdf.family, "B", size)
    pdf.multi_cell(0, 7, pdf.text_of(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(pdf.family, "", 9)


def _paragraph(pdf: _Pdf, text: str) -> None:
    pdf.set_font(pdf.family, "", 9)
    pdf.multi_cell(0, 5, pdf.text_of(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _table(pdf: _Pdf, headers: tuple[str, ...], rows: list[tuple[object, ...]], empty: str) -> None:
    if not rows:
        _paragraph(pdf, empty)
        return
    pdf.set_font(pdf.family, "", 8)
    heading = FontFace(emphasis="BOLD", fill_color=(243, 243, 243))
    with pdf.table(headings_style=heading, line_height=4.5, first_row_as_headings=True,
                   text_align="LEFT") as table:
        head = table.row()
        for h in headers:
            head.cell(pdf.text_of(h))
        for r in rows:
            row = table.row()
            for c in r:
                row.cell(pdf.text_of(c))
    pdf.ln(2)


def _hex(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def _chart(pdf: _Pdf, per_week: Counter[tuple[date, str]], labels: dict[str, str]) -> None:
    """Grouped bars per week, one colour per purpose, then the full legend (policy name, id, total)."""
    if not per_week:
        _paragraph(pdf, "No content was accessed in this period.")
        return
    weeks = sorted({w for w, _ in per_week})
    purposes = sorted({p for _, p in per_week})
    top = max(per_week.values())
    height, left = 55.0, pdf.l_margin + 8
    usable = pdf.w - pdf.r_margin - left
    group = usable / len(weeks)
    bar = min(6.0, group * 0.8 / len(purposes))
    if pdf.get_y() + height + 12 > pdf.h - pdf.b_margin:
        pdf.add_page()
    base = pdf.get_y() + height
    pdf.set_draw_color(60, 60, 60)
    pdf.line(left, base, left + usable, base)
    pdf.set_font(pdf.family, "", 7)
    for frac in (0.5, 1.0):
        pdf.text(pdf.l_margin, base - (height - 5) * frac + 1, str(round(top * frac)))
    for wi, week in enumerate(weeks):
        x0 = left + wi * group + (group - bar * len(purposes)) / 2
        for pi, purpose in enumerate(purposes):
            count = per_week.get((week, purpose), 0)
            h = (height - 5) * count / top
            pdf.set_fill_color(*_hex(_PALETTE[pi % len(_PALETTE)]))
            if h > 0:
                pdf.rect(x0 + pi * bar, base - h, bar * 0.9, h, style="F")
        pdf.text(x0, base + 4, week.strftime("%d %b"))
    pdf.set_y(base + 7)
    pdf.set_font(pdf.family, "", 9)
    for pi, purpose in enumerate(purposes):
        name = labels.get(purpose, purpose)
        shown = f"{name} ({purpose})" if name != purpose else purpose
        total = sum(n for (_, p), n in per_week.items() if p == purpose)
        y = pdf.get_y()
        pdf.set_fill_color(*_hex(_PALETTE[pi % len(_PALETTE)]))
        pdf.rect(pdf.l_margin, y + 1, 3.5, 3.5, style="F")
        pdf.set_x(pdf.l_margin + 6)
        pdf.multi_cell(0, 5.5, pdf.text_of(f"{shown}: {total}"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)


def to_pdf(report: ComplianceReport, *, title: str = "Compliance report",
           labels: dict[str, str] | None = None) -> bytes:
    """The report as PDF bytes: the period, each section's table, and the weekly chart with its legend."""
    labels = labels or {}
    pdf = _Pdf(title)
    pdf.add_page()
    pdf.set_font(pdf.family, "B", 16)
    pdf.multi_cell(0, 9, pdf.text_of(title), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    _paragraph(pdf, f"Period: {report.start.isoformat()} to {report.end.isoformat()} (end exclusive)")
    _heading(pdf, "Recorded")
    _paragraph(pdf, f"{sum(report.recorded.values())} recordings started in the period are catalogued; "
                    f"{report.ingested_events} were ingested in it; {report.quarantined_now} are quarantined now.")
    _paragraph(pdf, f"Capture failed for {report.capture_failed} calls (no audio kept); {report.with_gaps} "
                    f"recordings have media gaps ({report.missing_seconds:g} s without media in all).")
    _table(pdf, ("team", "direction", "consent", "recordings"),
           sorted((t, d, c, n) for (t, d, c), n in report.recorded.items()), "Nothing was recorded.")
    _heading(pdf, "Consent evidence by source", 11)
    _table(pdf, ("direction", "evidence source", "recordings"),
           [(d, s, n) for (d, s), n in sorted(report.by_consent_source.items())], "Nothing was recorded.")
    _heading(pdf, "Accesses per week and purpose")
    _chart(pdf, report.per_week, labels)
    _heading(pdf, "Accessed (by whom, why, decision)")
    _table(pdf, ("user", "role", "action", "purpose", "decision", "requests"),
           sorted((a, r, act, p, dec, n) for (a, r, act, p, dec), n in report.accessed.items()),
           "Nobody asked for recording content.")
    _heading(pdf, "Denied")
    _table(pdf, ("action", "reason", "times"),
           [(a, r, n) for (a, r), n in sorted(report.denied.items(), key=lambda item: -item[1])],
           "Nothing was refused.")
    _heading(pdf, "Released, destroyed, held, quarantined")
    _table(pdf, ("event", "times"), sorted(report.lifecycle.items()), "No such events in the period.")
    _heading(pdf, "Legal holds in force")
    _table(pdf, ("held", "reason", "owner", "placed by", "review by", "review"),
           [(h.held, h.reason, h.owner, h.placed_by, h.review_on.isoformat(),
             "OVERDUE" if h.review_overdue else "due later") for h in report.holds], "No legal holds.")
    _heading(pdf, "Misuse reports")
    _table(pdf, ("source", "status", "reports"),
           sorted((s, st, n) for (s, st), n in report.misuse.items()), "None filed.")
    _table(pdf, ("report", "summary", "status", "due", "assigned to"), overdue_rows(report),
           "No report is past its deadline.")
    _heading(pdf, "Policy")
    _table(pdf, ("event", "times"), sorted(report.policy_events.items()), "No policy changes.")
    return bytes(pdf.output())
