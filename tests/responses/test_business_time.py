"""Business time: adding and measuring open minutes across nights, weekends, holidays, clock
changes and night shifts; a team without a calendar counts the wall clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings, strategies as st

from responses.business_time import (
    Schedule,
    add_business_minutes,
    minutes_between,
    sla_times,
    subtract_business_minutes,
)

PARIS = ZoneInfo("Europe/Paris")
OFFICE = (((540, 1020),),) * 5 + ((), ())  # Mon-Fri 09:00-17:00
SCHEDULE = Schedule(tz=PARIS, weekly=OFFICE, holidays=frozenset({date(2026, 12, 25)}))


def paris(*args) -> datetime:
    return datetime(*args, tzinfo=PARIS)


def test_business_time_night_case_is_due_next_morning():
    # Tuesday 23:10 in Paris, a 60-minute SLA: due Wednesday 10:00.
    assert add_business_minutes(SCHEDULE, paris(2026, 3, 3, 23, 10), 60) == paris(2026, 3, 4, 10, 0)


def test_business_time_friday_evening_skips_the_weekend():
    assert add_business_minutes(SCHEDULE, paris(2026, 3, 6, 16, 30), 60) == paris(2026, 3, 9, 9, 30)


def test_business_time_holiday_does_not_count():
    # Thursday 24 December 16:30 + 60 minutes: 30 that day; Christmas (Friday) and the weekend are
    # closed, so the other 30 are on Monday 28th.
    assert add_business_minutes(SCHEDULE, paris(2026, 12, 24, 16, 30), 60) == paris(2026, 12, 28, 9, 30)


def test_business_time_due_exactly_at_closing_stays_that_day():
    assert add_business_minutes(SCHEDULE, paris(2026, 3, 3, 16, 0), 60) == paris(2026, 3, 3, 17, 0)


def test_business_time_minutes_between_ignores_night_and_weekend():
    assert minutes_between(SCHEDULE, paris(2026, 3, 6, 16, 0), paris(2026, 3, 9, 10, 0)) == 120
    assert minutes_between(SCHEDULE, paris(2026, 3, 7, 1, 0), paris(2026, 3, 8, 23, 0)) == 0
    assert minutes_between(SCHEDULE, paris(2026, 3, 9, 10, 0), paris(2026, 3, 9, 9, 0)) == 0


def test_business_time_spring_forward_day_is_an_hour_shorter():
    always = Schedule(tz=PARIS, weekly=(((0, 1440),),) * 7)
    # 29 March 2026: clocks go from 02:00 to 03:00 in Paris.
    assert minutes_between(always, paris(2026, 3, 29, 0, 0), paris(2026, 3, 30, 0, 0)) == 23 * 60
    night = Schedule(tz=PARIS, weekly=(((0, 360),),) * 7)  # 00:00-06:00 every day
    assert minutes_between(night, paris(2026, 3, 29, 0, 0), paris(2026, 3, 29, 12, 0)) == 5 * 60
    # 01:30 CET plus an hour: 30 minutes to the change (02:00 CET = 03:00 CEST), then 30 more.
    assert add_business_minutes(night, datetime(2026, 3, 29, 0, 30, tzinfo=UTC), 60) == \
        datetime(2026, 3, 29, 1, 30, tzinfo=UTC)


def test_business_time_fall_back_day_is_an_hour_longer():
    always = Schedule(tz=PARIS, weekly=(((0, 1440),),) * 7)
    assert minutes_between(always, paris(2026, 10, 25, 0, 0), paris(2026, 10, 26, 0, 0)) == 25 * 60


def test_business_time_night_shift_across_midnight_is_continuous():
    shift = Schedule(tz=PARIS, weekly=(((1320, 1440),), ((0, 360),), (), (), (), (), ()))  # Mon 22:00 - Tue 06:00
    assert add_business_minutes(shift, paris(2026, 3, 2, 23, 0), 120) == paris(2026, 3, 3, 1, 0)
    assert minutes_between(shift, paris(2026, 3, 2, 21, 0), paris(2026, 3, 3, 7, 0)) == 8 * 60


def test_business_time_without_calendar_is_the_wall_clock():
    start = datetime(2026, 3, 7, 23, 0, tzinfo=UTC)
    assert add_business_minutes(None, start, 90) == start + timedelta(minutes=90)
    assert minutes_between(None, start, start + timedelta(hours=30)) == 30 * 60
    assert subtract_business_minutes(None, start, 15) == start - timedelta(minutes=15)


def test_business_time_sla_near_is_the_last_fifth_in_business_minutes():
    times = sla_times(None, paris(2026, 3, 6, 16, 30), 100, SCHEDULE)
    assert times.due_at == paris(2026, 3, 9, 10, 10)
    assert times.near_at == paris(2026, 3, 9, 9, 50)  # 80 business minutes in


def test_business_time_subtract_is_the_latest_start_that_has_waited_long_enough():
    now = paris(2026, 3, 9, 10, 0)  # Monday
    cutoff = subtract_business_minutes(SCHEDULE, now, 120)
    assert cutoff == paris(2026, 3, 6, 16, 0)
    assert minutes_between(SCHEDULE, cutoff, now) == 120
    assert minutes_between(SCHEDULE, cutoff + timedelta(seconds=1), now) < 120


def test_business_time_refuses_naive_datetimes():
    import pytest

    with pytest.raises(ValueError):
        add_business_minutes(SCHEDULE, datetime(2026, 3, 3, 9, 0), 5)


# --- Properties -----------------------------------------------------------------------------------

ZONES = ["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "Pacific/Chatham",
         "America/Sao_Paulo"]
INSTANTS = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31),
                        timezones=st.just(UTC))


@st.composite
def schedules(draw) -> Schedule:
    days = []
    for _ in range(7):
        cuts = sorted(draw(st.sets(st.integers(0, 96), max_size=6)))
        if len(cuts) % 2:
            cuts = cuts[:-1]
        days.append(tuple((cuts[i] * 15, cuts[i + 1] * 15) for i in range(0, len(cuts), 2) if cuts[i] < cuts[i + 1]))
    if not any(days):
        days[draw(st.integers(0, 6))] = ((540, 1020),)
    holidays = draw(st.frozensets(st.dates(min_value=date(2025, 1, 1), max_value=date(2028, 1, 31)), max_size=20))
    return Schedule(tz=ZoneInfo(draw(st.sampled_from(ZONES))), weekly=tuple(days), holidays=holidays)


@settings(max_examples=150, deadline=None)
@given(schedules(), INSTANTS, st.integers(0, 20_000))
def test_business_time_add_then_measure_round_trips(schedule, start, minutes):
    end = add_business_minutes(schedule, start, minutes)
    assert end >= start
    assert abs(minutes_between(schedule, start, end) - minutes) < 1e-6


@settings(max_examples=150, deadline=None)
@given(schedules(), INSTANTS, st.integers(1, 20_000))
def test_business_time_subtract_then_measure_round_trips(schedule, end, minutes):
    start = subtract_business_minutes(schedule, end, minutes)
    assert start <= end
    assert abs(minutes_between(schedule, start, end) - minutes) < 1e-6


@settings(max_examples=150, deadline=None)
@given(schedules(), INSTANTS, st.integers(0, 30 * 24 * 60), st.integers(0, 30 * 24 * 60))
def test_business_time_between_adds_up_and_never_exceeds_the_wall_clock(schedule, a, span1, span2):
    b, c = a + timedelta(minutes=span1), a + timedelta(minutes=span1 + span2)
    ab, bc, ac = (minutes_between(schedule, a, b), minutes_between(schedule, b, c), minutes_between(schedule, a, c))
    assert abs(ab + bc - ac) < 1e-6
    assert 0 <= ac <= span1 + span2 + 1e-6


@settings(max_examples=100, deadline=None)
@given(schedules(), INSTANTS, st.integers(1, 5000))
def test_business_time_added_instant_is_inside_open_hours(schedule, start, minutes):
    end = add_business_minutes(schedule, start, minutes)
    # One second before the due time is business time: the last counted minute was open.
    assert minutes_between(schedule, end - timedelta(seconds=1), end) > 0
