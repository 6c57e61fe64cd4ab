"""The working-day clock for subject requests: weekends, Easter, Christmas, regional holidays, time zones."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from callvault.policy.loader import load_policy_file as load_policy
from callvault.subject_requests.workdays import Calendar, calendar_for, region_for
from tests.conftest import POLICY_A, POLICY_B

GB = Calendar("UK", "GB", "ENG", "Europe/London")
NSW = Calendar("AU", "AU", "NSW", "Australia/Sydney")
VIC = Calendar("AU", "AU", "VIC", "Australia/Melbourne")
ON = Calendar("CA", "CA", "ON", "America/Toronto")
QC = Calendar("CA", "CA", "QC", "America/Toronto")
LONDON, SYDNEY, TORONTO = ZoneInfo("Europe/London"), ZoneInfo("Australia/Sydney"), ZoneInfo("America/Toronto")


def test_an_ordinary_week_skips_the_weekend_only() -> None:
    # Monday morning: Tue..Fri, Mon..Wed = 7 working days.
    assert GB.due(datetime(2027, 6, 7, 9, tzinfo=LONDON), 7)[0] == date(2027, 6, 16)


def test_easter_good_friday_and_easter_monday_do_not_count_in_england() -> None:
    due_on, due_at = GB.due(datetime(2027, 3, 25, 10, tzinfo=LONDON), 7)
    assert due_on == date(2027, 4, 7)
    assert due_at == datetime(2027, 4, 8, 0, 0, tzinfo=LONDON), "due by the end of the due day, local time"


def test_christmas_boxing_day_and_new_year_substitute_days_do_not_count() -> None:
    # 25/26 Dec 2027 fall at the weekend: the 27th and 28th are the days off; 1 Jan 2028 is a Saturday: 3 Jan.
    assert GB.due(datetime(2027, 12, 23, 10, tzinfo=LONDON), 7)[0] == date(2028, 1, 6)
    assert not GB.is_working_day(date(2027, 12, 28))
    assert not GB.is_working_day(date(2028, 1, 3))


def test_new_south_wales_labour_day_counts_only_where_it_is_a_holiday() -> None:
    friday = datetime(2027, 10, 1, 10, tzinfo=SYDNEY)
    assert NSW.holiday_name(date(2027, 10, 4)) is not None
    assert NSW.due(friday, 7)[0] == date(2027, 10, 13)
    assert VIC.due(friday, 7)[0] == date(2027, 10, 12), "Victoria works on NSW Labour Day"


def test_ontario_family_day_is_a_holiday_but_not_in_quebec() -> None:
    friday = datetime(2027, 2, 12, 10, tzinfo=TORONTO)
    assert ON.due(friday, 7)[0] == date(2027, 2, 24)
    assert QC.due(friday, 7)[0] == date(2027, 2, 23)


def test_ontario_does_not_observe_easter_monday_but_england_does() -> None:
    assert ON.is_working_day(date(2027, 3, 29))
    assert not GB.is_working_day(date(2027, 3, 29))


def test_a_request_on_friday_evening_counts_from_the_next_working_day() -> None:
    before = ON.due(datetime(2027, 6, 4, 16, 59, tzinfo=TORONTO), 7)[0]
    evening = ON.due(datetime(2027, 6, 4, 17, 30, tzinfo=TORONTO), 7)[0]
    saturday = ON.due(datetime(2027, 6, 5, 11, 0, tzinfo=TORONTO), 7)[0]
    assert before == date(2027, 6, 15)
    assert evening == saturday == date(2027, 6, 16)


def test_the_same_instant_is_friday_evening_in_sydney_but_friday_morning_in_london() -> None:
    instant = datetime(2027, 6, 4, 8, 0, tzinfo=UTC)  # 18:00 in Sydney, 09:00 in London
    # NSW: counts from Monday 7 June; King's Birthday (14 June) is skipped.
    assert NSW.start_day(instant) == date(2027, 6, 7)
    assert NSW.due(instant, 7)[0] == date(2027, 6, 17)
    assert GB.start_day(instant) == date(2027, 6, 4)
    assert GB.due(instant, 7)[0] == date(2027, 6, 15)


def test_a_request_on_a_holiday_counts_from_the_next_working_day() -> None:
    assert GB.start_day(datetime(2027, 5, 3, 10, tzinfo=LONDON)) == date(2027, 5, 4)  # Early May bank holiday


def test_the_region_comes_from_the_number_or_the_policy_default() -> None:
    rules = load_policy(POLICY_B).subject_requests
    assert region_for(rules, ["+442079460000"]) == "UK-EU-NA"
    assert region_for(rules, ["+61293744000"]) == "AU-NZ"
    assert region_for(rules, ["+14165550142"]) == "AU-NZ", "no calendar for Canada in policy B: the default"
    assert calendar_for(rules, "UK-EU-NA").timezone == "Europe/London"
    rules_a = load_policy(POLICY_A).subject_requests
    cal = calendar_for(rules_a, region_for(rules_a, ["+14165550142"]))
    assert (cal.country, cal.subdivision, cal.timezone) == ("CA", "ON", "America/Toronto")
