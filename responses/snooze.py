"""Snooze: a case leaves the active views until a time, or until the customer writes again.

A snoozed case keeps its status; `Case.snoozed` takes it out of the queues (and out of "next
case") and into the "Snoozed" view. It comes back when its time is up (the beat task
`responses.wake_snoozed_cases`) or at once when the customer writes (routing calls
`wake_for_customer` in the transaction that routes the message). Every snooze and wake is on
the case's timeline.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from responses import access, event_types, events
from responses.exceptions import InvalidRequest
from responses.models import Case, CaseActivity
from responses.summaries import case_summary, user_dict

PRESETS = {"1h": "For an hour", "tomorrow": "Tomorrow 9:00", "next_week": "Next Monday 9:00",
           "reply": "Until the customer writes", "custom": "Until…"}
MORNING = time(9, 0)
MAX_AHEAD = timedelta(days=366)


def zone_for(name: str | None) -> ZoneInfo:
    """The agent's time zone (the browser sends it), else the site's."""
    for candidate in (name, settings.TIME_ZONE):
        if candidate:
            try:
                return ZoneInfo(str(candidate)[:64])
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def until_for(preset: str, *, at: str | datetime | None = None, zone: ZoneInfo | None = None,
              now: datetime | None = None) -> datetime | None:
    """The wake-up instant of a preset (None: until the customer writes). `at` is the custom
    time: an ISO date-time, read in `zone` when it names no offset."""
    now = now or timezone.now()
    zone = zone or zone_for(None)
    local = now.astimezone(zone)
    if preset == "1h":
        return now + timedelta(hours=1)
    if preset == "tomorrow":
        return _local_at(local.date() + timedelta(days=1), zone)
    if preset == "next_week":
        return _local_at(local.date() + timedelta(days=7 - local.weekday()), zone)
    if preset == "reply":
        return None
    if preset == "custom":
        return _parse(at, zone)
    raise InvalidRequest(f"snooze must be one of {', '.join(PRESETS)}")


def _local_at(day, zone: ZoneInfo) -> datetime:
    # Built in the zone, so 9:00 stays 9:00 across a DST change.
    return datetime.combine(day, MORNING, tzinfo=zone)


def _parse(value: str | datetime | None, zone: ZoneInfo) -> datetime:
    if isinstance(value, datetime):
        moment = value
    else:
        text = (value or "").strip() if isinstance(value, str) else ""
        if not text:
            raise InvalidRequest("choose when the case should come back")
        try:
            moment = datetime.fromisoformat(text[:40])
        except ValueError:
            raise InvalidRequest(f"not a date and time: {text[:40]!r}")
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


def snooze_case(user, case_id, until: datetime | None, *, zone: ZoneInfo | None = None,
                now: datetime | None = None) -> Case:
    """Snooze a case until `until` (None: until the customer writes). A time in the past, or more
    than a year ahead, is refused with the reason."""
    access.require_reply(user)
    now = now or timezone.now()
    if until is not None:
        if until <= now:
            raise InvalidRequest(f"that time has passed ({_words(until, now, zone)}): choose a time in the future")
        if until - now > MAX_AHEAD:
            raise InvalidRequest("snooze for at most a year")
    with transaction.atomic():
        case = access.get_case(user, case_id, for_update=True)
        if not case.is_active:
            raise InvalidRequest(f"this case is {case.get_status_display().lower()}: only open cases can be snoozed")
        case.snoozed, case.snoozed_until = True, until
        case.save(update_fields=["snoozed", "snoozed_until", "updated_at"])
        text = f"Snoozed until {_words(until, now, zone)}" if until else "Snoozed until the customer writes"
        _record(case, "snoozed", text, user, {"until": until.isoformat() if until else None})
    return case


def unsnooze_case(user, case_id) -> Case:
    """An agent brings a snoozed case back now."""
    access.require_reply(user)
    with transaction.atomic():
        case = access.get_case(user, case_id, for_update=True)
        if not case.snoozed:
            raise InvalidRequest("this case is not snoozed")
        _wake(case, "Back from snooze", user, "agent")
    return case


def wake_for_customer(case: Case) -> bool:
    """Routing saw a customer message on this case (the caller holds its row lock and saves it):
    a snoozed case comes back now, whatever time it was snoozed until."""
    if not case.snoozed:
        return False
    case.snoozed, case.snoozed_until = False, None
    _record(case, "woke", "Back from snooze: the customer wrote", None, {"reason": "customer"}, changed=False)
    return True


def wake_due(now: datetime | None = None, limit: int = 500) -> int:
    """Beat: bring back the cases whose snooze time has come. Returns how many woke."""
    now = now or timezone.now()
    ids = list(Case.objects.filter(snoozed=True, snoozed_until__lte=now).order_by("snoozed_until")
               .values_list("id", flat=True)[:limit])
    woke = 0
    for case_id in ids:
        with transaction.atomic():
            case = Case.objects.select_for_update().filter(pk=case_id, snoozed=True, snoozed_until__lte=now).first()
            if case is None:  # woken meanwhile by the customer or an agent
                continue
            _wake(case, "Back from snooze: its time came", None, "time")
            woke += 1
    return woke


def _wake(case: Case, text: str, by, reason: str) -> None:
    case.snoozed, case.snoozed_until = False, None
    case.save(update_fields=["snoozed", "snoozed_until", "updated_at"])
    _record(case, "woke", text, by, {"reason": reason})


def _record(case: Case, kind: str, text: str, by, detail: dict, *, changed: bool = True) -> CaseActivity:
    """The timeline entry, and (unless routing announces the case itself) the case's update."""
    activity = record_activity(case, kind, text, by, detail)
    if changed:
        events.emit(event_types.CASE_UPDATED, {"case": case_summary(case), "by": user_dict(by),
                                     "activity": activity_dict(activity)}, team_id=case.team_id, case_id=case.pk)
    return activity


def record_activity(case: Case, kind: str, text: str, by=None, detail: dict | None = None) -> CaseActivity:
    return CaseActivity.objects.create(case=case, kind=kind, text=text[:300], by=by, detail=detail or {})


def activity_dict(activity: CaseActivity) -> dict:
    return {"id": activity.pk, "kind": activity.kind, "text": activity.text, "by": user_dict(activity.by),
            "created_at": activity.created_at.isoformat()}


def _words(moment: datetime, now: datetime, zone: ZoneInfo | None) -> str:
    zone = zone or zone_for(None)
    local, today = moment.astimezone(zone), now.astimezone(zone).date()
    if local.date() == today:
        return local.strftime("%H:%M today")
    if local.date() == today + timedelta(days=1):
        return local.strftime("%H:%M tomorrow")
    return local.strftime("%a %b %-d, %H:%M")
