"""A team's weekly opening hours: parsing what a supervisor types and the stored form.

Pure functions with no database access, below both business_time (which reads the stored form when
it builds a team's schedule) and calendars (which validates and saves it), so neither imports the
other backwards."""

from __future__ import annotations

import re

from responses.exceptions import InvalidRequest

DAY_MINUTES = 24 * 60
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MAX_INTERVALS_PER_DAY = 8
TIME_RE = re.compile(r"^(\d{1,2}):(\d{2})$")


def _minutes(text: str, day: str) -> int:
    match = TIME_RE.match(text.strip())
    if not match:
        raise InvalidRequest(f"{day}: {text.strip()[:20]!r} is not a time like 09:00")
    hours, minutes = int(match.group(1)), int(match.group(2))
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        raise InvalidRequest(f"{day}: {text.strip()} is not a time of day (00:00 to 24:00)")
    return hours * 60 + minutes


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def parse_day(text: str, day: str) -> list[tuple[int, int]]:
    """'09:00-12:00, 13:00-17:00' -> [(540, 720), (780, 1020)]; empty or 'closed' -> []."""
    text = (text or "").strip()
    if not text or text.lower() == "closed":
        return []
    parts = [p for p in re.split(r"[,;]", text) if p.strip()]
    if len(parts) > MAX_INTERVALS_PER_DAY:
        raise InvalidRequest(f"{day}: at most {MAX_INTERVALS_PER_DAY} intervals a day")
    intervals = []
    for part in parts:
        bounds = re.split(r"\s*[-–]\s*", part.strip())
        if len(bounds) != 2:
            raise InvalidRequest(f"{day}: {part.strip()[:30]!r} is not an interval like 09:00-17:00")
        start, end = _minutes(bounds[0], day), _minutes(bounds[1], day)
        if end <= start:
            raise InvalidRequest(f"{day}: the end {_clock(end)} is not after the start {_clock(start)} "
                                 "(a night shift is two intervals: 22:00-24:00 and the next day 00:00-06:00)")
        intervals.append((start, end))
    intervals.sort()
    for (s1, e1), (s2, e2) in zip(intervals, intervals[1:], strict=False):
        if s2 < e1:
            raise InvalidRequest(f"{day}: {_clock(s1)}-{_clock(e1)} and {_clock(s2)}-{_clock(e2)} overlap")
    return intervals


def hours_from_texts(texts: list[str]) -> list[list[list[str]]]:
    """Seven day texts (Monday first) -> the stored form [[["09:00", "17:00"], ...], ...]. At
    least one open minute a week: a calendar that never opens would let no SLA fall due."""
    if len(texts) != 7:
        raise InvalidRequest("give the hours of all seven days, Monday first")
    days = [parse_day(text if isinstance(text, str) else "", WEEKDAYS[i]) for i, text in enumerate(texts)]
    if not any(days):
        raise InvalidRequest("the team is never open: give some hours, or remove the calendar to be open 24/7")
    return [[[_clock(s), _clock(e)] for s, e in day] for day in days]


def parse_weekly(hours) -> tuple[tuple[tuple[int, int], ...], ...]:
    """The stored form -> business_time's weekly tuple (validated again: rows may predate a rule)."""
    if not isinstance(hours, list) or len(hours) != 7:
        return tuple(((0, DAY_MINUTES),) for _ in range(7))
    days = []
    for i, day in enumerate(hours):
        text = ", ".join(f"{a}-{b}" for a, b in day) if isinstance(day, list) else ""
        days.append(tuple(parse_day(text, WEEKDAYS[i])))
    return tuple(days)


def day_texts(hours) -> list[str]:
    """The stored form -> seven texts for the form ('' where closed)."""
    if not isinstance(hours, list) or len(hours) != 7:
        return [""] * 7
    return [", ".join(f"{a}-{b}" for a, b in day) for day in hours]
