"""The working-day clock for subject requests (B7: "within 7 working days").

The rule, applied in the requester's region (its public holidays from the ``holidays`` package,
country and subdivision, and its time zone):

* A **working day** is Monday to Friday that is not a public holiday of the region (observed
  holidays included: Christmas on a Saturday moves the day off to the Monday).
* The **start day** is the local date the clock started (the verification code was confirmed), if
  that is a working day and the time was before ``CUTOFF`` (17:00 local); otherwise the next working
  day. So a request confirmed on Friday evening, at the weekend or on Easter Monday counts from the
  next working day, as if it had arrived first thing that morning.
* The **due date** is the N-th working day after the start day (the start day itself is not counted),
  and the request is due by the end of that day in the region's time zone (``due_at``).

Example (GB, 7 working days): confirmed Monday 3 May 2027 10:00 is a bank holiday, so the start day is
Tuesday 4 May and the due date Thursday 13 May.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays
import phonenumbers
from phonenumbers import timezone as phone_timezones

from callvault.policy.schema import Deadline, PolicyDocument, SubjectRequestRules, add_months

CUTOFF = time(17, 0)
"""Requests confirmed at or after this local time count from the next working day."""


@dataclass(frozen=True)
class Calendar:
    """A region's working-day calendar."""

    region: str
    country: str
    subdivision: str | None
    timezone: str

    def is_working_day(self, day: date) -> bool:
        return day.isoweekday() <= 5 and day not in _holidays(self.country, self.subdivision, day.year)

    def holiday_name(self, day: date) -> str | None:
        name = _holidays(self.country, self.subdivision, day.year).get(day)
        return str(name) if name else None

    def next_working_day(self, day: date) -> date:
        """The first working day strictly after ``day``."""
        day += timedelta(days=1)
        while not self.is_working_day(day):
            day += timedelta(days=1)
        return day

    def start_day(self, received: datetime) -> date:
        local = received.astimezone(ZoneInfo(self.timezone))
        if self.is_working_day(local.date()) and local.time() < CUTOFF:
            return local.date()
        return self.next_working_day(local.date())

    def add_working_days(self, day: date, count: int) -> date:
        for _ in range(count):
            day = self.next_working_day(day)
        return day

    def working_days_between(self, start: date, end: date) -> int:
        """Working days after ``start`` up to and including ``end`` (0 when ``end <= start``)."""
        count, day = 0, start
        while day < end:
            day += timedelta(days=1)
            if self.is_working_day(day):
                count += 1
        return count

    def due_by(self, received: datetime, deadline: Deadline, *, extended: bool = False) -> tuple[date, datetime]:
        """The due date under ``deadline`` (working days, calendar days or calendar months from the day the
        request was received, local time), with its extension added when ``extended``."""
        if deadline.working_days is not None:
            return self.due(received, deadline.working_days)
        local = received.astimezone(ZoneInfo(self.timezone)).date()
        if deadline.calendar_days is not None:
            due_on = local + timedelta(days=deadline.calendar_days + (deadline.extension_days if extended else 0))
        else:
            due_on = add_months(local, (deadline.calendar_months or 0) + (deadline.extension_months if extended else 0))
        end = datetime.combine(due_on + timedelta(days=1), time(0), tzinfo=ZoneInfo(self.timezone))
        return due_on, end

    def due(self, received: datetime, working_days: int) -> tuple[date, datetime]:
        """The due date and the instant (end of that day, local time) it passes."""
        due_on = self.add_working_days(self.start_day(received), working_days)
        end = datetime.combine(due_on + timedelta(days=1), time(0), tzinfo=ZoneInfo(self.timezone))
        return due_on, end


@functools.lru_cache(maxsize=256)
def _holidays(country: str, subdivision: str | None, year: int) -> holidays.HolidayBase:
    return holidays.country_holidays(country, subdiv=subdivision, years=year)


def _number_zone(numbers: Sequence[str]) -> str | None:
    for number in numbers:
        try:
            zones = phone_timezones.time_zones_for_number(phonenumbers.parse(number, None))
        except phonenumbers.NumberParseException:
            continue
        usable = [z for z in zones if z != "Etc/Unknown"]
        if usable:
            return str(usable[0])
    return None


def _country(number: str) -> str | None:
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(number, None))
    except phonenumbers.NumberParseException:
        return None


@dataclass(frozen=True)
class RegionChoice:
    """The region whose calendar counts, and the sentence saying why (shown in the request view)."""

    region: str
    basis: str


def choose_region(policy: PolicyDocument, numbers: Sequence[str], called: Sequence[str] = (), *,
                  calls_consulted: bool = True) -> RegionChoice:
    """The policy region for a caller's request (B7), in this order:

    1. the regional number the caller rang: the first of ``called`` (the trunk numbers of their matched
       calls, newest first) that ``recording_scope.trunk_numbers`` maps to a region with a calendar, since
       that office answers the request;
    2. with no such call, a trunk whose ``countries`` list the caller's country (the number they would ring);
    3. a region calendar in the caller's own country;
    4. ``default_region``.

    ``calls_consulted`` False: the calls were not looked at because the number is not yet proven the requester's
    (anyone can type anyone's number, and a region picked from its calls would tell them where it is recorded);
    the basis says so instead of claiming no call was found.
    """
    rules, scope = policy.subject_requests, policy.recording_scope
    rang = rang_region(policy, called)
    if rang is not None:
        return rang
    no_call = ("no recorded call of {number} was found" if calls_consulted else
               "{number} is not yet proven the caller's, so its recorded calls are not consulted")
    countries = [(n, c) for n in numbers if (c := _country(n)) is not None]
    for number, country in countries:
        for trunk in scope.trunk_numbers:
            if country in trunk.countries and trunk.region in rules.regions:
                return RegionChoice(trunk.region, f"{no_call.format(number=number)}; its country {country} "
                                                  f"is served by {trunk.number}, the {trunk.region} number")
    for number, country in countries:
        for region_id, region in rules.regions.items():
            if region.country == country:
                return RegionChoice(region_id, f"{no_call.format(number=number)}; region {region_id} is "
                                               f"its country {country}")
    if rules.default_region is None:
        raise ValueError("the policy names no default_region for subject requests")
    lead = "no recorded call" if calls_consulted else "the number not yet proven"
    return RegionChoice(rules.default_region, f"{lead} and no region for the caller's country: "
                                              "subject_requests.default_region")


def rang_region(policy: PolicyDocument, called: Sequence[str]) -> RegionChoice | None:
    """The region of the first of ``called`` (our numbers on the caller's recorded calls, newest first) that
    ``recording_scope.trunk_numbers`` maps to a region with a calendar, or None: step 1 of ``choose_region``."""
    rules, scope = policy.subject_requests, policy.recording_scope
    for number in called:
        trunk = scope.trunk_for(number)
        if trunk is not None and trunk.region in rules.regions:
            return RegionChoice(trunk.region, f"the caller's recorded call was on {trunk.number}, the {trunk.region} "
                                              "number (recording_scope.trunk_numbers)")
    return None


def region_for(rules: SubjectRequestRules, numbers: Sequence[str]) -> str:
    """The policy region for a number alone (no call, no trunk): a region calendar in its country, else
    ``default_region``. Requests use ``choose_region``, which looks at the number the caller rang first."""
    for number in numbers:
        country = _country(number)
        for region_id, region in rules.regions.items():
            if region.country == country:
                return region_id
    if rules.default_region is None:
        raise ValueError("the policy names no default_region for subject requests")
    return rules.default_region


def calendar_for(rules: SubjectRequestRules, region_id: str, numbers: Sequence[str] = ()) -> Calendar:
    region = rules.regions[region_id]
    zone = region.timezone or _number_zone(list(numbers)) or "UTC"
    return Calendar(region=region_id, country=region.country, subdivision=region.subdivision, timezone=zone)
