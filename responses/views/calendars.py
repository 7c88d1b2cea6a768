"""Business calendars in the console: supervisors see and edit their teams' (admins every team's)
time zone, weekly hours and holidays, typed in or imported from an iCal file."""

from __future__ import annotations

from django.contrib import messages as flash
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render

from responses import calendars
from responses.exceptions import InvalidRequest
from responses.models import BusinessCalendar
from responses.views.base import body, console_context, console_view, object_id, wants_json

COMMON_ZONES = ("UTC", "Europe/London", "Europe/Paris", "Europe/Berlin", "America/New_York", "America/Chicago",
                "America/Los_Angeles", "America/Sao_Paulo", "Asia/Kolkata", "Asia/Singapore", "Asia/Tokyo",
                "Australia/Sydney")
DEFAULT_DAYS = ["09:00-17:00"] * 5 + ["", ""]


@console_view("GET")
def calendar_list(request: HttpRequest) -> HttpResponse:
    teams = list(calendars.editable_teams(request.user).select_related("calendar").order_by("name"))
    rows = [{"team": team, **calendars.calendar_summary(getattr(team, "calendar", None))} for team in teams]
    if wants_json(request):
        return JsonResponse({"calendars": [
            {"team": r["team"].pk, "team_name": r["team"].name, "time_zone": r["time_zone"],
             "always_open": r["always_open"], "holidays": r["holidays"]} for r in rows]})
    return render(request, "console/calendar_list.html", {**console_context(request), "rows": rows})


def _input(request: HttpRequest) -> calendars.CalendarInput:
    data = body(request)
    days = data.get("days")
    if not isinstance(days, list):
        days = [data.get(f"day_{i}") or "" for i in range(7)]
    if not all(isinstance(d, str) for d in days):
        raise InvalidRequest("each day's hours must be text like 09:00-17:00")
    ical = None
    upload = request.FILES.get("ical")
    if upload is not None:
        if upload.size > calendars.MAX_ICAL_BYTES:
            raise InvalidRequest(f"the iCal file is {upload.size // 1024} KB; at most "
                                 f"{calendars.MAX_ICAL_BYTES // 1024} KB")
        ical = upload.read(calendars.MAX_ICAL_BYTES + 1)
    holidays = data.get("holidays") or ""
    if not isinstance(holidays, str) or len(holidays) > 100_000:
        raise InvalidRequest("holidays are text, one date a line (at most 100,000 characters)")
    time_zone = data.get("time_zone") or ""
    if not isinstance(time_zone, str):
        raise InvalidRequest("time_zone must be text")
    return calendars.CalendarInput(time_zone=time_zone, day_texts=days, holidays_text=holidays, ical=ical)


@console_view("GET", "POST")
def calendar_edit(request: HttpRequest, team_id: str) -> HttpResponse:
    team = calendars.get_team(request.user, object_id(team_id, "team"))
    calendar = BusinessCalendar.objects.filter(team=team).first()
    error = ""
    if request.method == "POST":
        try:
            data = _input(request)
            saved = calendars.save_calendar(request.user, team.pk, data)
        except InvalidRequest as exc:
            if wants_json(request):
                raise
            error = str(exc)
        else:
            if wants_json(request):
                return JsonResponse({"ok": True, "team": team.pk, "time_zone": saved.time_zone,
                                     "holidays": saved.holidays.count(), "notes": data.messages})
            flash.success(request, f"Business hours of {team.name} saved. " + " ".join(data.messages))
            return redirect("console:calendars")
    if request.method == "POST":
        form = {"time_zone": request.POST.get("time_zone", ""),
                "days": [request.POST.get(f"day_{i}", "") for i in range(7)],
                "holidays": request.POST.get("holidays", "")}
    elif calendar:
        form = {"time_zone": calendar.time_zone, "days": calendars.day_texts(calendar.hours),
                "holidays": "\n".join(f"{h.date.isoformat()} {h.name}".strip() for h in calendar.holidays.all())}
    else:
        form = {"time_zone": "UTC", "days": DEFAULT_DAYS, "holidays": ""}
    if wants_json(request):
        return JsonResponse({"team": team.pk, "calendar": bool(calendar), **form})
    days = [{"index": i, "name": name, "value": form["days"][i]} for i, name in enumerate(calendars.WEEKDAYS)]
    return render(request, "console/calendar_form.html",
                  {**console_context(request), "team": team, "calendar": calendar, "form": form, "days": days,
                   "error": error, "zones": COMMON_ZONES, "max_kb": calendars.MAX_ICAL_BYTES // 1024},
                  status=400 if error else 200)


@console_view("POST")
def calendar_delete(request: HttpRequest, team_id: str) -> HttpResponse:
    team = calendars.get_team(request.user, object_id(team_id, "team"))
    calendars.delete_calendar(request.user, team.pk)
    if wants_json(request):
        return JsonResponse({"ok": True})
    flash.success(request, f"{team.name} is open around the clock again.")
    return redirect("console:calendars")
