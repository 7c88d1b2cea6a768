"""Business time: the minutes a team is open, by its calendar (time zone, weekly hours, holidays).

SLA clocks, timed rules and the dashboards' care figures count these minutes, so nights,
weekends and holidays do not count against an agent. A team without a calendar is open around
the clock: business time is wall-clock time, as before calendars existed.

A minute is a real elapsed minute inside open hours: on the night clocks go forward, an interval
from 00:00 to 24:00 lasts 23 hours. Local times that do not exist (inside the spring-forward gap)
stand for the instant of the change; ambiguous ones (the repeated hour in autumn) for their first
occurrence. That keeps the map from local to UTC monotonic, so open intervals never overlap and
minutes add up: between(a, b) + between(b, c) == between(a, c).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from responses.models import BusinessCalendar, Holiday
from responses.weekly_hours import DAY_MINUTES, parse_weekly

# A walk that finds no open minute within this many days gives up and counts wall-clock time: a
# calendar closed for years (every day a holiday) must not hang a worker or an SLA forever.
HORIZON_DAYS = 3 * 366
MAX_GAP_MINUTES = 2 * DAY_MINUTES  # longer than any clock change on record (Samoa skipped a day)

Interval = tuple[datetime, datetime]


@dataclass(frozen=True)
class Schedule:
    """A team's open hours. `weekly[0]` is Monday: sorted, non-overlapping (start, end) minutes
    after local midnight, end at most 1440. Hashable, so each day's intervals are cached."""

    tz: ZoneInfo
    weekly: tuple[tuple[tuple[int, int], ...], ...]
    holidays: frozenset[date] = frozenset()

    @property
    def is_always_open(self) -> bool:
        return not self.holidays and all(day == ((0, DAY_MINUTES),) for day in self.weekly)

    def add(self, start: datetime, minutes: float) -> datetime:
        return add_business_minutes(self, start, minutes)

    def subtract(self, end: datetime, minutes: float) -> datetime:
        return subtract_business_minutes(self, end, minutes)

    def between(self, start: datetime, end: datetime) -> float:
        return minutes_between(self, start, end)


def _to_utc(naive: datetime, tz: ZoneInfo) -> datetime:
    """The instant a local wall-clock reading stands for (see the module docstring)."""
    aware = naive.replace(tzinfo=tz, fold=0)
    instant = aware.astimezone(UTC)
    if instant.astimezone(tz).replace(tzinfo=None) == naive:
        return instant
    # In a gap: the first valid local minute after it is the instant the clocks changed.
    probe = naive.replace(second=0, microsecond=0)
    for _ in range(MAX_GAP_MINUTES):
        probe += timedelta(minutes=1)
        aware = probe.replace(tzinfo=tz, fold=0)
        instant = aware.astimezone(UTC)
        if instant.astimezone(tz).replace(tzinfo=None) == probe:
            return instant
    return naive.replace(tzinfo=tz).astimezone(UTC)  # unreachable with real zone data


@lru_cache(maxsize=8192)
def day_intervals(schedule: Schedule, day: date) -> tuple[Interval, ...]:
    """The open intervals of one local date, in UTC, empty ones dropped."""
    if day in schedule.holidays:
        return ()
    midnight = datetime(day.year, day.month, day.day)
    result = []
    for start, end in schedule.weekly[day.weekday()]:
        a = _to_utc(midnight + timedelta(minutes=start), schedule.tz)
        b = _to_utc(midnight + timedelta(minutes=end), schedule.tz)
        if b > a:
            result.append((a, b))
    return tuple(result)


def _local_date(schedule: Schedule, instant: datetime) -> date:
    return instant.astimezone(schedule.tz).date()


def _forward(schedule: Schedule, start: datetime) -> Iterator[Interval]:
    # From the day before: an interval is listed under the local date it starts on.
    day = _local_date(schedule, start) - timedelta(days=1)
    for offset in range(HORIZON_DAYS + 2):
        yield from day_intervals(schedule, day + timedelta(days=offset))


def _backward(schedule: Schedule, end: datetime) -> Iterator[Interval]:
    day = _local_date(schedule, end) + timedelta(days=1)
    for offset in range(HORIZON_DAYS + 2):
        yield from reversed(day_intervals(schedule, day - timedelta(days=offset)))


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("business time needs aware datetimes")
    return value


def add_business_minutes(schedule: Schedule | None, start: datetime, minutes: float) -> datetime:
    """The instant `minutes` open minutes after `start`. Outside open hours the count begins at
    the next opening; 0 minutes is `start` itself."""
    start = _aware(start)
    if schedule is None or minutes <= 0:
        return start + timedelta(minutes=max(minutes, 0))
    remaining = timedelta(minutes=minutes)
    for a, b in _forward(schedule, start):
        if b <= start:
            continue
        a = max(a, start)
        if remaining <= b - a:
            return a + remaining
        remaining -= b - a
    return start + timedelta(minutes=minutes)  # beyond the horizon: wall-clock time


def subtract_business_minutes(schedule: Schedule | None, end: datetime, minutes: float) -> datetime:
    """The latest instant from which `minutes` open minutes have passed by `end`: a case waiting
    since then or earlier has waited at least that long in business time."""
    end = _aware(end)
    if schedule is None or minutes <= 0:
        return end - timedelta(minutes=max(minutes, 0))
    remaining = timedelta(minutes=minutes)
    for a, b in _backward(schedule, end):
        if a >= end:
            continue
        b = min(b, end)
        if remaining <= b - a:
            return b - remaining
        remaining -= b - a
    return end - timedelta(minutes=minutes)


def minutes_between(schedule: Schedule | None, start: datetime, end: datetime) -> float:
    """Open minutes from `start` to `end` (0 when end is not after start)."""
    start, end = _aware(start), _aware(end)
    if end <= start:
        return 0.0
    if schedule is None:
        return (end - start).total_seconds() / 60
    total = timedelta()
    last_day = _local_date(schedule, end) + timedelta(days=1)
    day = _local_date(schedule, start) - timedelta(days=1)
    if (last_day - day).days > HORIZON_DAYS * 4:  # absurd spans: do not walk decades of days
        return (end - start).total_seconds() / 60
    while day <= last_day:
        for a, b in day_intervals(schedule, day):
            lo, hi = max(a, start), min(b, end)
            if hi > lo:
                total += hi - lo
        day += timedelta(days=1)
    return total.total_seconds() / 60


# --- Teams' calendars, from the database ----------------------------------------------------------


def schedule_of(calendar) -> Schedule:
    """The Schedule of a BusinessCalendar row (its holidays included)."""
    holidays = frozenset(calendar.holidays.values_list("date", flat=True))
    return Schedule(tz=ZoneInfo(calendar.time_zone), weekly=parse_weekly(calendar.hours), holidays=holidays)


def schedules_for(team_ids: Iterable[int]) -> dict[int, Schedule | None]:
    """Each team's schedule (None: open around the clock), in two queries for any number of
    teams: what a dashboard computing many cases' figures should call once."""
    ids = set(team_ids)
    result: dict[int, Schedule | None] = dict.fromkeys(ids)
    calendars = list(BusinessCalendar.objects.filter(team_id__in=ids))
    holidays: dict[int, set[date]] = {}
    for calendar_id, day in Holiday.objects.filter(calendar__in=calendars).values_list("calendar_id", "date"):
        holidays.setdefault(calendar_id, set()).add(day)
    for calendar in calendars:
        result[calendar.team_id] = Schedule(tz=ZoneInfo(calendar.time_zone), weekly=parse_weekly(calendar.hours),
                                            holidays=frozenset(holidays.get(calendar.pk, ())))
    return result


def schedule_for(team_id: int | None) -> Schedule | None:
    if team_id is None:
        return None
    return schedules_for([team_id])[team_id]


def business_minutes_between(team_id: int | None, start: datetime, end: datetime) -> float:
    """Open minutes of a team between two instants: for one figure. For many cases, take
    `schedules_for(team_ids)` once and call `minutes_between(schedule, start, end)` per case."""
    return minutes_between(schedule_for(team_id), start, end)


@dataclass(frozen=True)
class SlaTimes:
    due_at: datetime
    near_at: datetime


# Near breach: within this share of the SLA (or 5 minutes, whichever is longer) of the due time.
NEAR_SHARE = 0.2
NEAR_MIN_MINUTES = 5


def sla_times(team_id: int | None, start: datetime, minutes: int, schedule: Schedule | None = None) -> SlaTimes:
    """When an SLA of `minutes` business minutes from `start` falls due, and from when it is near
    breach (the last fifth of its business minutes, at least 5)."""
    if schedule is None and team_id is not None:
        schedule = schedule_for(team_id)
    window = max(minutes * NEAR_SHARE, NEAR_MIN_MINUTES)
    return SlaTimes(due_at=add_business_minutes(schedule, start, minutes),
                    near_at=add_business_minutes(schedule, start, max(minutes - window, 0)))
