"""Business calendars: supervisors set a team's hours and holidays (typed or from iCal); bad input
is a 400 with the reason; SLAs of the team count business minutes only."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse
from django.utils import timezone

from responses import cases
from responses.business_time import business_minutes_between, schedules_for
from responses.models import BusinessCalendar, Case, Holiday, SlaState
from responses.routing import route_messages
from tests.responses.conftest import classify, store_message

JSON = "application/json"
PARIS = ZoneInfo("Europe/Paris")
WEEKDAYS_9_TO_5 = ["09:00-17:00"] * 5 + ["", ""]


def post(client, url, data):
    return client.post(url, data=json.dumps(data), content_type=JSON, HTTP_ACCEPT=JSON)


def save(client, team, **overrides):
    data = {"time_zone": "Europe/Paris", "days": WEEKDAYS_9_TO_5, "holidays": "2026-12-25 Christmas Day"}
    data.update(overrides)
    return post(client, reverse("console:calendar", kwargs={"team_id": team.pk}), data)


def night_case(connector, at: datetime) -> Case:
    message = store_message(connector, "My order never arrived", author="night-owl")
    message.received_at = at
    message.save(update_fields=["received_at"])
    classify(message)
    route_messages([message.pk])
    return Case.objects.get(conversation=message.conversation)


def test_calendars_supervisor_saves_hours_and_holidays(client, team_a, supervisor_a):
    client.force_login(supervisor_a)
    response = save(client, team_a, days=["09:00-12:00, 13:00-17:30"] * 5 + ["", ""])
    assert response.status_code == 200, response.content
    calendar = BusinessCalendar.objects.get(team=team_a)
    assert calendar.time_zone == "Europe/Paris"
    assert calendar.hours[0] == [["09:00", "12:00"], ["13:00", "17:30"]] and calendar.hours[6] == []
    assert list(Holiday.objects.values_list("name", flat=True)) == ["Christmas Day"]
    html = client.get(reverse("console:calendars")).content.decode()
    assert "Europe/Paris" in html and "09:00-12:00, 13:00-17:30" in html and "Team A" in html


@pytest.mark.parametrize(("overrides", "reason"), [
    ({"days": ["09:00-12:00, 11:00-13:00"] + [""] * 6}, "overlap"),
    ({"days": ["17:00-09:00"] + [""] * 6}, "not after the start"),
    ({"days": ["9am-5pm"] + [""] * 6}, "not a time"),
    ({"days": ["09:00-25:00"] + [""] * 6}, "not a time of day"),
    ({"days": [""] * 7}, "never open"),
    ({"days": ["09:00-17:00"] * 3}, "all seven days"),
    ({"time_zone": "Mars/Olympus_Mons"}, "unknown time zone"),
    ({"time_zone": ""}, "unknown time zone"),
    ({"holidays": "25/12/2026 Christmas"}, "does not start with a date"),
    ({"holidays": "2026-02-30"}, "does not start with a date"),
])
def test_calendars_bad_input_is_400_with_a_reason(client, team_a, supervisor_a, overrides, reason):
    client.force_login(supervisor_a)
    response = save(client, team_a, **overrides)
    assert response.status_code == 400
    assert reason in response.json()["reason"]
    assert not BusinessCalendar.objects.exists()


def test_calendars_form_post_shows_the_reason_and_keeps_the_input(client, team_a, supervisor_a):
    client.force_login(supervisor_a)
    data = {"time_zone": "Europe/Paris", "holidays": ""}
    data.update({f"day_{i}": v for i, v in enumerate(["09:00-12:00, 11:00-13:00"] + [""] * 6)})
    response = client.post(reverse("console:calendar", kwargs={"team_id": team_a.pk}), data)
    assert response.status_code == 400
    html = response.content.decode()
    assert "overlap" in html and 'value="09:00-12:00, 11:00-13:00"' in html


ICAL = b"""BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//test//EN
BEGIN:VEVENT
UID:1
DTSTART;VALUE=DATE:20261225
DTEND;VALUE=DATE:20261227
SUMMARY:Christmas <script>alert(1)</script>
END:VEVENT
BEGIN:VEVENT
UID:2
DTSTART;VALUE=DATE:20260501
RRULE:FREQ=YEARLY
SUMMARY:Labour Day
END:VEVENT
BEGIN:VEVENT
UID:3
DTSTART:20260310T100000Z
DTEND:20260310T110000Z
SUMMARY:Team meeting
END:VEVENT
END:VCALENDAR
"""


def _upload(client, team, content: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    data = {"time_zone": "Europe/Paris", "holidays": "", "ical": SimpleUploadedFile("h.ics", content, "text/calendar")}
    data.update({f"day_{i}": v for i, v in enumerate(WEEKDAYS_9_TO_5)})
    return client.post(reverse("console:calendar", kwargs={"team_id": team.pk}), data, HTTP_ACCEPT=JSON)


def test_calendars_ical_import_takes_all_day_events_as_holidays(client, team_a, supervisor_a):
    client.force_login(supervisor_a)
    response = _upload(client, team_a, ICAL)
    assert response.status_code == 200, response.content
    days = {h.date.isoformat(): h.name for h in Holiday.objects.all()}
    assert days["2026-12-25"].startswith("Christmas") and "2026-12-26" in days and "2026-12-27" not in days
    assert "2027-05-01" in days and "2026-05-01" in days  # the yearly rule, expanded
    assert "2026-03-10" not in days  # a meeting is not a closed day
    assert "1 timed event skipped" in " ".join(response.json()["notes"])
    page = client.get(reverse("console:calendars")).content.decode()
    assert "<script>alert(1)" not in page  # the summary is escaped where it is shown


@pytest.mark.parametrize(("content", "reason"), [
    (b"this is not a calendar", "not a readable iCalendar"),
    (b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART;VALUE=DATE:2026XX01\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
     "unreadable"),
    (b"BEGIN:VCALENDAR\r\n" + b"X-PAD:" + b"a" * (300 * 1024) + b"\r\nEND:VCALENDAR\r\n", "at most 256 KB"),
])
def test_calendars_bad_ical_is_400_with_a_reason(client, team_a, supervisor_a, content, reason):
    client.force_login(supervisor_a)
    response = _upload(client, team_a, content)
    assert response.status_code == 400
    assert reason in response.json()["reason"]
    assert not BusinessCalendar.objects.exists()


def test_calendars_agent_gets_403_and_outsider_supervisor_404(client, team_a, agent_a, django_user_model, team_b):
    from responses.models import Role
    from tests.responses.conftest import make_user

    client.force_login(agent_a)
    assert save(client, team_a).status_code == 403
    assert client.get(reverse("console:calendars"), HTTP_ACCEPT=JSON).status_code == 403
    supervisor_b = make_user(django_user_model, "sup_b", Role.SUPERVISOR, [team_b])
    client.force_login(supervisor_b)
    assert save(client, team_a).status_code == 404
    assert client.get(reverse("console:calendars"), HTTP_ACCEPT=JSON).json()["calendars"][0]["team"] == team_b.pk
    assert not BusinessCalendar.objects.exists()


def test_calendars_night_case_is_due_next_business_morning(client, team_a, supervisor_a, connector_a):
    client.force_login(supervisor_a)
    assert save(client, team_a).status_code == 200
    tuesday_night = datetime(2026, 3, 3, 23, 10, tzinfo=PARIS)
    case = night_case(connector_a, tuesday_night)
    assert case.sla_minutes == 60
    assert case.sla_due_at == datetime(2026, 3, 4, 10, 0, tzinfo=PARIS)
    assert case.sla_near_at == datetime(2026, 3, 4, 9, 48, tzinfo=PARIS)
    # The beat at 08:00 the next morning: still on time (wall-clock it would be 9 hours late).
    assert cases.check_slas(now=datetime(2026, 3, 4, 8, 0, tzinfo=PARIS)) == 0
    assert cases.check_slas(now=datetime(2026, 3, 4, 9, 50, tzinfo=PARIS)) == 1
    case.refresh_from_db()
    assert case.sla_state == SlaState.NEAR
    assert cases.check_slas(now=datetime(2026, 3, 4, 10, 0, tzinfo=PARIS)) == 1
    case.refresh_from_db()
    assert case.sla_state == SlaState.BREACHED


def test_calendars_team_without_calendar_keeps_the_wall_clock(team_a, connector_a):
    at = timezone.now() - timedelta(minutes=30)
    case = night_case(connector_a, at)
    assert case.sla_due_at == at + timedelta(minutes=60)
    assert business_minutes_between(team_a.pk, at, at + timedelta(hours=10)) == 600


def test_calendars_saving_moves_running_slas_and_removing_restores_24_7(client, team_a, supervisor_a, connector_a):
    saturday_night = datetime(2026, 3, 7, 22, 0, tzinfo=PARIS)
    case = night_case(connector_a, saturday_night)
    assert case.sla_due_at == saturday_night + timedelta(minutes=60)
    client.force_login(supervisor_a)
    assert save(client, team_a).status_code == 200
    case.refresh_from_db()
    assert case.sla_due_at == datetime(2026, 3, 9, 10, 0, tzinfo=PARIS)
    response = post(client, reverse("console:calendar-delete", kwargs={"team_id": team_a.pk}), {})
    assert response.status_code == 200
    case.refresh_from_db()
    assert case.sla_due_at == saturday_night + timedelta(minutes=60)
    assert not BusinessCalendar.objects.exists()


def test_calendars_business_minutes_for_insight_in_two_queries(client, team_a, team_b, supervisor_a,
                                                               django_assert_num_queries):
    client.force_login(supervisor_a)
    save(client, team_a)
    with django_assert_num_queries(2):
        schedules = schedules_for([team_a.pk, team_b.pk])
    assert schedules[team_b.pk] is None
    friday = datetime(2026, 3, 6, 16, 0, tzinfo=PARIS)
    monday = friday + timedelta(days=2, hours=18)  # 10:00
    assert schedules[team_a.pk].between(friday, monday) == 120
    assert business_minutes_between(team_a.pk, friday, monday) == 120
