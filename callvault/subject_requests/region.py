"""Which region's deadline a caller's request runs under (B7), and when recorded calls may decide it.

B7 counts working days in the region of the office the caller rang, which only the recorded calls show. But
the public form takes any phone number, and the email code proves only the mailbox: a region (and with it the
deadline law, the due date and the time zone) picked from the typed-in number's calls and mailed to whoever
asked told anyone on the internet whether, and at which office, a stranger's calls are recorded (outside
tester, 2026-12-07). So:

* **At intake** (``at_intake``) the region comes only from what the requester supplied and the policy: the
  number's country (the trunk serving it, else a region in that country), else ``default_region``. The
  acknowledgement, the verify answer and the due date depend on nothing recorded.
* **Once a number is proven** by the code sent to it (``refine_after_proof``), the calls of the proven
  numbers only may pick the region. The requester is then told, and never loses time: the due date only moves
  later; where the office's calendar would give an earlier date, the date first given stands (as the end of
  that day in the office's time zone).
* A number proven only by facts a reviewer confirms at release is never refined: that happens when the request
  is answered, and until then nothing is mailed that depends on its calls.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from callvault.audit import service as audit
from callvault.core.clock import Clock
from callvault.notify import service as notify
from callvault.policy.schema import Deadline, PolicyDocument
from callvault.recordings.models import Recording
from callvault.subject_requests.models import RequesterKind, RequestStatus, SubjectRequest
from callvault.subject_requests.workdays import RegionChoice, calendar_for, choose_region, rang_region


def called_numbers(session: Session, numbers: Sequence[str], *, limit: int = 20) -> list[str]:
    """Our side's numbers (trunks) on the recorded calls with these caller numbers, newest call first.

    B7's region is the regional office the caller rang, so this is what picks the working-day calendar;
    destroyed recordings count too (their metadata stays), the call still happened on that number. Only ever
    called with numbers proven the requester's (``refine_after_proof``): the answer says where they are recorded."""
    if not numbers:
        return []
    rows = session.execute(select(Recording.local_number).where(
        Recording.remote_number.in_(list(numbers)), Recording.local_number.is_not(None))
        .order_by(Recording.started_at.desc()).limit(limit))
    return [number for (number,) in rows if number]


def at_intake(policy: PolicyDocument, numbers: Sequence[str]) -> RegionChoice:
    """The region of a new caller's request, from the numbers' countries and the policy alone: nothing recorded
    is consulted, since the number is not yet proven the requester's and this region is mailed to them."""
    return choose_region(policy, numbers, (), calls_consulted=False)


def deadline_words(deadline: Deadline, region: str) -> str:
    """The deadline as the requester reads it in a mail."""
    if deadline.working_days is not None:
        return (f"{deadline.working_days} working days in region {region}, not counting weekends and public "
                "holidays")
    return f"{deadline.describe()} from the day we received it"


def _end_of_day(day_end: datetime, zone: str) -> tuple[datetime, datetime]:
    """The local day (in ``zone``) holding the instant just before ``day_end``, and that day's end: the
    smallest whole-day deadline in ``zone`` that is not earlier than ``day_end``."""
    tz = ZoneInfo(zone)
    day = (day_end - timedelta(microseconds=1)).astimezone(tz).date()
    return datetime.combine(day, time(0), tzinfo=tz), datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)


def refine_after_proof(session: Session, *, policy: PolicyDocument, row: SubjectRequest, proven: Collection[str],
                       clock: Clock) -> str | None:
    """Let the calls of the ``proven`` numbers pick the region (B7) of an open, verified caller's request, once
    the code sent to a number proved it the requester's. Returns what to tell the requester on the page (also
    mailed), or None when nothing they were told changes.

    Only the proven numbers' calls count: a request naming someone else's number as well learns nothing of it.
    The due date only ever moves later (the requester must not lose time they were promised)."""
    if (row.kind != RequesterKind.CALLER or row.verified_at is None or row.due_at is None or row.due_on is None
            or row.status not in (RequestStatus.TO_REVIEW, RequestStatus.READY)):
        return None
    numbers = [n for n in row.phone_numbers if n in proven]
    choice = rang_region(policy, called_numbers(session, numbers))
    rules = policy.subject_requests
    if choice is None or (choice.region == row.region and row.region_basis.startswith(choice.basis)):
        return None
    first_on, first_at, first_region, first_zone = row.due_on, row.due_at, row.region, row.timezone
    cal = calendar_for(rules, choice.region, row.phone_numbers)
    deadline = rules.effective_deadline
    due_on, due_at = cal.due_by(row.verified_at, deadline, extended=row.extended_at is not None)
    kept = due_at < first_at
    basis = choice.basis
    if kept:
        start, due_at = _end_of_day(first_at, cal.timezone)
        due_on = start.date()
        basis += f"; its calendar gives an earlier date, so the date first given ({first_on}) stands"
    row.region, row.region_basis, row.timezone = choice.region, basis, cal.timezone
    row.due_on, row.due_at = due_on, due_at
    audit.append(session, audit.AuditEvent(
        actor="(public)", action="subject_request.region_refined", decision="info", object_type="subject_request",
        object_id=row.id, purpose="subject_access", clauses=("B7", "B10", "A4"), reason=basis[:500],
        details={"from_region": first_region, "to_region": choice.region, "from_due_on": str(first_on),
                 "to_due_on": str(due_on), "first_date_kept": kept}), clock=clock)
    if choice.region == first_region and due_on == first_on and cal.timezone == first_zone:
        return None
    when = f"{due_on:%A %d %B %Y}"
    stands = (f"The date we first gave you stands, as it is later: we will answer by {when} ({cal.timezone})."
              if kept else f"We will answer by {when} ({cal.timezone}).")
    notify.enqueue(session, to=row.email, subject=f"Your request for recordings: due date {when}",
                   dedup_key=f"subject:{row.id}:region:{choice.region}", clock=clock, body=(
        f"Thank you for confirming your phone number. Your calls were with our {choice.region} office, so the "
        f"deadline for your request ({row.id}) counts {deadline_words(deadline, choice.region)}.\n\n"
        f"{stands}\nWe will send a download link to this address.\n"))
    return f"your calls were with our {choice.region} office: we will answer by {when}"
