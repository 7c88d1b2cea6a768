"""Teams' business calendars: a time zone, weekly open hours (several intervals a day) and dated
holidays, typed in or imported from iCal (an all-day event is a holiday). Supervisors edit
their own teams' calendars; admins any team's. Saving one moves the due times of the team's
running SLAs onto the new hours.

Hours are written per weekday as "09:00-12:00, 13:00-17:30" (empty: closed). A night shift is two
intervals: "22:00-24:00" on one day and "00:00-06:00" on the next; the clock treats them as one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, available_timezones

from django.db import transaction
from django.utils import timezone

from responses import access
from responses.business_time import schedule_of, sla_times
from responses.exceptions import CaseNotFound, InvalidRequest
from responses.models import ACTIVE_STATUSES, BusinessCalendar, Case, Holiday, SlaState, Team
from responses.weekly_hours import (  # noqa: F401  (the form and views read these here)
    DAY_MINUTES,
    MAX_INTERVALS_PER_DAY,
    WEEKDAYS,
    day_texts,
    hours_from_texts,
    parse_day,
    parse_weekly,
)

MAX_HOLIDAYS = 1000
MAX_ICAL_BYTES = 256 * 1024  # a country's public holidays for decades fit in a few KB
MAX_ICAL_EVENTS = 2000
RRULE_YEARS_AHEAD = 5  # a yearly holiday is expanded this far ahead
MAX_HOLIDAY_NAME = 200
HOLIDAY_LINE_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:\s+(.*))?$")



def _zones() -> set[str]:
    global _ZONES
    if _ZONES is None:
        _ZONES = available_timezones() | {"UTC"}
    return _ZONES


_ZONES: set[str] | None = None


def validate_time_zone(name: str) -> str:
    name = (name or "").strip()
    if name not in _zones():
        raise InvalidRequest(f"unknown time zone {name[:60]!r}: use a name like Europe/Paris or America/New_York")
    return name


# --- Holidays -----------------------------------------------------------------------------------


def holidays_from_text(text: str) -> dict[date, str]:
    """One holiday a line: '2026-12-25 Christmas Day' (the name is optional)."""
    result: dict[date, str] = {}
    for number, line in enumerate((text or "").splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        match = HOLIDAY_LINE_RE.match(line)
        try:
            day = date.fromisoformat(match.group(1)) if match else None
        except ValueError:
            day = None
        if day is None:
            raise InvalidRequest(f"holidays, line {number}: {line[:40]!r} does not start with a date like 2026-12-25")
        result[day] = (match.group(2) or "").strip()[:MAX_HOLIDAY_NAME]
    return result


def holidays_from_ical(data: bytes) -> tuple[dict[date, str], int]:
    """All-day events of an iCalendar file -> holidays (every date an event covers; yearly rules
    expanded RRULE_YEARS_AHEAD years ahead), and how many timed events were skipped."""
    import icalendar
    from dateutil.rrule import rrulestr

    if len(data) > MAX_ICAL_BYTES:
        raise InvalidRequest(f"the iCal file is {len(data) // 1024} KB; at most {MAX_ICAL_BYTES // 1024} KB")
    try:
        calendar = icalendar.Calendar.from_ical(data)
        events = list(calendar.walk("VEVENT"))
    except Exception as exc:  # the library raises ValueError, KeyError and others on bad input
        raise InvalidRequest(f"the file is not a readable iCalendar (.ics) file: {str(exc)[:120]}") from None
    if len(events) > MAX_ICAL_EVENTS:
        raise InvalidRequest(f"the iCal file has {len(events)} events; at most {MAX_ICAL_EVENTS}")
    until = timezone.now().date().replace(month=1, day=1) + timedelta(days=366 * RRULE_YEARS_AHEAD)
    result: dict[date, str] = {}
    skipped = 0
    for event in events:
        try:
            start = event.decoded("DTSTART")
            end = event.decoded("DTEND") if "DTEND" in event else None
            name = str(event.get("SUMMARY", "")).strip()[:MAX_HOLIDAY_NAME]
            rule = event.get("RRULE")
        except Exception:
            raise InvalidRequest("an event in the iCal file has an unreadable start or end") from None
        if not isinstance(start, date):
            raise InvalidRequest(f"the event {name[:40] or '(no name)'!r} has an unreadable start date")
        if isinstance(start, datetime):
            skipped += 1  # a meeting, not a closed day
            continue
        length = max(((end - start).days if isinstance(end, date) and not isinstance(end, datetime) else 1), 1)
        starts = [start]
        if rule:
            try:
                text = rule.to_ical().decode()
                occurrences = rrulestr(f"RRULE:{text}", dtstart=datetime(start.year, start.month, start.day))
                starts = [d.date() for d in occurrences.between(datetime(start.year, start.month, start.day),
                                                                 datetime(until.year, until.month, until.day),
                                                                 inc=True)][:RRULE_YEARS_AHEAD * 366]
            except Exception:
                raise InvalidRequest(f"the repeat rule of {name[:40] or 'an event'!r} cannot be read") from None
        for first in starts:
            for offset in range(min(length, 366)):
                result.setdefault(first + timedelta(days=offset), name)
                if len(result) > MAX_HOLIDAYS:
                    raise InvalidRequest(f"the iCal file gives more than {MAX_HOLIDAYS} holidays")
    return result, skipped


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


# --- Actions ------------------------------------------------------------------------------------


def editable_teams(user):
    """Teams whose calendar and timed rules the user may change: a supervisor's own, an admin's all."""
    access.require_supervisor(user)
    return Team.objects.filter(pk__in=access.team_ids(user))


def get_team(user, team_id) -> Team:
    team = editable_teams(user).filter(pk=team_id).first()
    if team is None:
        raise CaseNotFound("no such team")
    return team


@dataclass
class CalendarInput:
    time_zone: str
    day_texts: list[str]
    holidays_text: str = ""
    ical: bytes | None = None
    messages: list[str] = field(default_factory=list)


def save_calendar(user, team_id, data: CalendarInput) -> BusinessCalendar:
    """Create or replace a team's calendar. The typed holidays replace the stored ones; an iCal
    file's are added to them. Running SLAs of the team move onto the new hours."""
    team = get_team(user, team_id)
    zone = validate_time_zone(data.time_zone)
    hours = hours_from_texts(data.day_texts)
    holidays = holidays_from_text(data.holidays_text)
    if data.ical:
        imported, skipped = holidays_from_ical(data.ical)
        for day, name in imported.items():
            holidays.setdefault(day, name)
        data.messages.append(f"{_count(len(imported), 'holiday date')} imported from the iCal file"
                             + (f"; {_count(skipped, 'timed event')} skipped (only all-day events are holidays)"
                                if skipped else "") + ".")
    if len(holidays) > MAX_HOLIDAYS:
        raise InvalidRequest(f"{len(holidays)} holidays; at most {MAX_HOLIDAYS}")
    with transaction.atomic():
        calendar, _ = BusinessCalendar.objects.select_for_update().update_or_create(
            team=team, defaults={"time_zone": zone, "hours": hours, "updated_by": user})
        calendar.holidays.all().delete()
        Holiday.objects.bulk_create([Holiday(calendar=calendar, date=day, name=name)
                                     for day, name in sorted(holidays.items())])
        recompute_slas(team.pk)
    return calendar


def delete_calendar(user, team_id) -> None:
    """No calendar: the team is open 24/7 again."""
    team = get_team(user, team_id)
    with transaction.atomic():
        BusinessCalendar.objects.filter(team=team).delete()
        recompute_slas(team.pk)


def recompute_slas(team_id: int) -> int:
    """Move the running SLAs of a team onto its current calendar (from the same wait start), and
    put a near-breach case back on time if the new hours give it room. A breach stays a breach."""
    calendar = BusinessCalendar.objects.filter(team_id=team_id).first()
    schedule = schedule_of(calendar) if calendar else None
    now = timezone.now()
    running = Case.objects.filter(team_id=team_id, status__in=ACTIVE_STATUSES, waiting_since__isnull=False,
                                  sla_minutes__isnull=False, sla_state__in=[SlaState.OK, SlaState.NEAR])
    changed = []
    for case in running.only("id", "waiting_since", "sla_minutes", "sla_state"):
        times = sla_times(None, case.waiting_since, case.sla_minutes, schedule)
        case.sla_due_at, case.sla_near_at = times.due_at, times.near_at
        if case.sla_state == SlaState.NEAR and now < times.near_at:
            case.sla_state = SlaState.OK
        changed.append(case)
    Case.objects.bulk_update(changed, ["sla_due_at", "sla_near_at", "sla_state"], batch_size=500)
    return len(changed)


def calendar_summary(calendar: BusinessCalendar | None) -> dict:
    """For the list page: words, not JSON."""
    if calendar is None:
        return {"time_zone": "", "days": [], "holidays": 0, "always_open": True}
    texts = day_texts(calendar.hours)
    return {"time_zone": calendar.time_zone, "always_open": False,
            "days": [(WEEKDAYS[i], texts[i] or "closed") for i in range(7)],
            "holidays": calendar.holidays.count(),
            "next_holidays": list(calendar.holidays.filter(date__gte=timezone.now().date()).order_by("date")[:3])}


def local_now(calendar: BusinessCalendar) -> datetime:
    return timezone.now().astimezone(ZoneInfo(calendar.time_zone))
