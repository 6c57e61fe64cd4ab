"""Random review sampling (B8): uniform, stratified, reproducible from seed and population."""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import UTC, date, datetime

import pytest

from callvault.core.errors import InvalidInput
from callvault.policy.schema import SamplingRule
from callvault.quality import sampling
from callvault.quality.sampling import PopulationEntry

RUNS = 4000
CHI2_P001 = {9: 27.877, 11: 31.264, 19: 43.820}
"""Chi-square critical values at p = 0.001 (standard table), by degrees of freedom."""


def seeds(n: int) -> list[str]:
    return [hashlib.sha256(str(i).encode()).hexdigest()[:32] for i in range(n)]


def chi_square(counts: Counter[str], ids: list[str], expected: float) -> float:
    return sum((counts[i] - expected) ** 2 / expected for i in ids)


def calls(agent: str, n: int, *, team: str = "support", direction: str = "inbound", start: int = 0
          ) -> list[PopulationEntry]:
    return [(f"{agent}-{direction}-{start + i:03d}", agent, team, direction) for i in range(n)]


def test_each_call_of_an_agent_is_equally_likely_to_be_chosen() -> None:
    rule = SamplingRule(calls_per_agent=3)
    population = calls("alice", 10)
    counts: Counter[str] = Counter()
    for seed in seeds(RUNS):
        chosen = sampling.select_calls(seed, population, rule)
        assert len(chosen) == 3 and len(set(chosen)) == 3
        counts.update(chosen)
    ids = [e[0] for e in population]
    assert chi_square(counts, ids, RUNS * 3 / 10) < CHI2_P001[9]


def test_uniform_across_strata_and_each_stratum_gets_its_proportional_share() -> None:
    rule = SamplingRule(calls_per_agent=3, stratify_by=("team", "direction"))
    population = calls("alice", 8) + calls("alice", 4, direction="outbound")
    counts: Counter[str] = Counter()
    for seed in seeds(RUNS):
        chosen = sampling.select_calls(seed, population, rule)
        assert sum("outbound" in c for c in chosen) == 1  # 4 of 12 calls -> exactly 1 of 3
        counts.update(chosen)
    ids = [e[0] for e in population]
    assert chi_square(counts, ids, RUNS * 3 / 12) < CHI2_P001[11]


def test_the_chi_square_check_would_catch_a_biased_sampler() -> None:
    population = calls("alice", 10)
    counts: Counter[str] = Counter()
    for seed in seeds(RUNS):  # "always the first call, plus two at random" is not uniform
        rest = sampling.select_calls(seed, population[1:], SamplingRule(calls_per_agent=2))
        counts.update([population[0][0], *rest])
    assert chi_square(counts, [e[0] for e in population], RUNS * 3 / 10) > CHI2_P001[9]


def test_every_agent_gets_n_calls_or_all_they_have() -> None:
    rule = SamplingRule(calls_per_agent=2)
    population = calls("alice", 5) + calls("bob", 1) + calls("carol", 2)
    chosen = sampling.select_calls(seeds(1)[0], population, rule)
    by_agent = Counter(c.split("-")[0] for c in chosen)
    assert by_agent == {"alice": 2, "bob": 1, "carol": 2}


def test_percentage_rounds_up_per_agent() -> None:
    rule = SamplingRule(percent=5)
    population = calls("alice", 41) + calls("bob", 3)
    chosen = sampling.select_calls(seeds(1)[0], population, rule)
    assert Counter(c.split("-")[0] for c in chosen) == {"alice": 3, "bob": 1}


def test_same_seed_same_sample_and_another_seed_another_sample() -> None:
    rule = SamplingRule(calls_per_agent=5)
    population = calls("alice", 200)
    first, again = (sampling.select_calls(seeds(1)[0], population, rule) for _ in range(2))
    assert first == again
    assert sampling.select_calls(seeds(2)[1], population, rule) != first


def test_a_rule_needs_exactly_one_sample_size() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        SamplingRule(calls_per_agent=2, percent=5)
    with pytest.raises(ValueError, match="exactly one"):
        SamplingRule()


def test_weeks_start_on_monday_in_the_policys_time_zone() -> None:
    rule = SamplingRule(period="week", timezone="America/Toronto", calls_per_agent=1)
    period = sampling.previous_period(datetime(2026, 11, 23, 12, 0, tzinfo=UTC), rule)  # a Monday
    assert period.start == datetime(2026, 11, 16, 5, 0, tzinfo=UTC)  # Monday 00:00 EST
    assert period.end == datetime(2026, 11, 23, 5, 0, tzinfo=UTC)
    month = sampling.previous_period(datetime(2026, 3, 1, 12, 0, tzinfo=UTC), SamplingRule(period="month",
                                                                                             calls_per_agent=1))
    assert (month.start, month.end) == (datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC))


def test_an_on_demand_period_must_run_forwards_and_not_too_long() -> None:
    rule = SamplingRule(calls_per_agent=1)
    with pytest.raises(InvalidInput):
        sampling.period_between(date(2026, 11, 20), date(2026, 11, 1), rule)
    with pytest.raises(InvalidInput):
        sampling.period_between(date(2026, 1, 1), date(2026, 12, 31), rule)


# ----------------------------------------------- what a person may ask to draw: one whole, ended period
NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
"""A Wednesday; the last complete Toronto week is 16-22 November, the last complete month October."""
WEEKLY = SamplingRule(period="week", timezone="America/Toronto", calls_per_agent=2)
MONTHLY = SamplingRule(period="month", timezone="Australia/Adelaide", percent=5)


def _asked(first: date | None, last: date | None, rule: SamplingRule = WEEKLY, *,
           latest_only: bool = True) -> sampling.Period:
    return sampling.requested_period(first, last, rule, now=NOW, latest_only=latest_only)


def test_without_days_a_draw_is_the_last_complete_period() -> None:
    assert _asked(None, None) == sampling.previous_period(NOW, WEEKLY)
    assert _asked(date(2026, 11, 16), date(2026, 11, 22)) == sampling.previous_period(NOW, WEEKLY)
    month = _asked(date(2026, 10, 1), date(2026, 10, 31), MONTHLY)
    assert (month.start, month.end) == (datetime(2026, 9, 30, 14, 30, tzinfo=UTC),  # midnight in Adelaide
                                        datetime(2026, 10, 31, 13, 30, tzinfo=UTC))


@pytest.mark.parametrize("first, last, wrong", [
    (date(2026, 11, 18), date(2026, 11, 20), ["first_day", "last_day"]),  # a window around one call
    (date(2026, 11, 18), date(2026, 11, 18), ["first_day", "last_day"]),
    (date(2026, 11, 16), date(2026, 11, 21), ["last_day"]),
    (date(2026, 11, 16), None, ["last_day"]),
    (None, date(2026, 11, 22), ["first_day"]),
    (date(2026, 11, 9), date(2026, 11, 22), ["last_day"]),  # two weeks: one is drawn at a time
])
def test_a_draw_covers_one_whole_period_and_says_which_days_would_do(
    first: date | None, last: date | None, wrong: list[str],
) -> None:
    with pytest.raises(InvalidInput) as refused:
        _asked(first, last)
    assert [p.location for p in refused.value.problems] == wrong
    assert "one whole week (Monday to Sunday)" in refused.value.message
    assert "2026-11-16 to 2026-11-22" in refused.value.message or "2026-11-09 to 2026-11-15" in refused.value.message


def test_a_period_that_has_not_ended_is_not_drawn() -> None:
    with pytest.raises(InvalidInput, match="has not ended") as refused:
        _asked(date(2026, 11, 23), date(2026, 11, 29), latest_only=False)
    assert [p.location for p in refused.value.problems] == ["last_day"]
    with pytest.raises(InvalidInput, match="has not ended"):
        _asked(date(2026, 11, 1), date(2026, 11, 30), MONTHLY, latest_only=False)


def test_only_an_administrator_draws_an_earlier_period_nobody_sampled() -> None:
    with pytest.raises(InvalidInput) as refused:
        _asked(date(2026, 11, 9), date(2026, 11, 15))
    assert "last complete week (2026-11-16 to 2026-11-22)" in refused.value.message
    assert "callvault quality sample --from" in refused.value.message
    earlier = _asked(date(2026, 11, 9), date(2026, 11, 15), latest_only=False)
    assert earlier == sampling.period_containing(datetime(2026, 11, 12, tzinfo=UTC), WEEKLY)


def test_quarters_and_days_are_whole_too() -> None:
    quarter = SamplingRule(period="quarter", timezone="Europe/London", calls_per_agent=3)
    assert _asked(date(2026, 7, 1), date(2026, 9, 30), quarter).end == datetime(2026, 9, 30, 23, 0, tzinfo=UTC)
    with pytest.raises(InvalidInput, match="2026-07-01 to 2026-09-30"):
        _asked(date(2026, 7, 1), date(2026, 7, 31), quarter)
    daily = SamplingRule(period="day", timezone="UTC", calls_per_agent=1)
    assert _asked(date(2026, 11, 24), date(2026, 11, 24), daily).start == datetime(2026, 11, 24, tzinfo=UTC)


def test_days_out_of_range_are_named_before_anything_else() -> None:
    for day in (date(1, 1, 1), date(9999, 12, 31)):
        with pytest.raises(InvalidInput) as refused:
            _asked(day, None, SamplingRule(period="day", timezone="Asia/Tokyo", calls_per_agent=1))
        assert [p.location for p in refused.value.problems] == ["first_day"]
