"""The dashboards' care figures count business time for teams with a calendar (issue 16): the care
panel's first-response and resolution times and SLA, and the first response by channel. A team
without a calendar keeps wall-clock time."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.http import QueryDict
from django.utils import timezone

from insight import care_rollup, filters
from insight.panels import PANELS
from responses.models import BusinessCalendar, Case, Holiday
from tests.responses.conftest import open_case

BERLIN = ZoneInfo("Europe/Berlin")
WEEKDAYS_9_TO_5 = [[["09:00", "17:00"]]] * 5 + [[], []]


def _friday():
    """A Friday two or more weeks back, so the whole week is in the past."""
    today = timezone.localdate(timezone.now(), BERLIN)
    return today - timedelta(days=(today.weekday() - 4) % 7 + 14)


def _at(day, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=BERLIN)


def _case(connector, author: str, channel: str, opened: datetime, first: datetime, resolved: datetime | None = None,
          sla: int | None = None) -> Case:
    case = open_case(connector, f"Where is my parcel? ({author})", author=author)
    Case.objects.filter(pk=case.pk).update(channel=channel, opened_at=opened, first_response_at=first,
                                           resolved_at=resolved, sla_minutes=sla)
    return case


@pytest.fixture
def week(team_a, team_b, connector_a, connector_b):
    """Team A works Monday to Friday, 9 to 5 in Berlin; team B has no calendar (24/7)."""
    friday = _friday()
    monday, tuesday, wednesday, thursday = (friday + timedelta(days=n) for n in (3, -3, -2, -1))
    calendar = BusinessCalendar.objects.create(team=team_a, time_zone="Europe/Berlin", hours=WEEKDAYS_9_TO_5)
    # Friday 16:30 -> Monday 9:30: 30 + 30 business minutes (wall clock: 65 hours); resolved at 10:00.
    _case(connector_a, "a1", "web", _at(friday, 16, 30), _at(monday, 9, 30), _at(monday, 10), sla=120)
    # Tuesday 10:00 -> 10:20, resolved 11:00: the same in both clocks.
    _case(connector_a, "a2", "email", _at(tuesday, 10), _at(tuesday, 10, 20), _at(tuesday, 11))
    # Wednesday 16:50 -> Thursday 9:10: 20 business minutes, within a 30-minute SLA (wall clock: 16 h 20).
    _case(connector_a, "a3", "web", _at(wednesday, 16, 50), _at(thursday, 9, 10), sla=30)
    # Team B, the same weekend: 65 hours.
    _case(connector_b, "b1", "web", _at(friday, 16, 30), _at(monday, 9, 30), sla=120)
    return {"calendar": calendar, "monday": monday,
            "query": QueryDict(f"from={friday - timedelta(days=4)}&to={monday}&compare=0")}


def test_care_counts_business_time_for_a_team_with_a_calendar(week, manager_a):
    care = PANELS["care"].query(filters.parse_filters(week["query"], manager_a))

    assert care["first_response"] == {"count": 3, "median_seconds": 1200.0, "p90_seconds": 3120.0}  # 20, 20, 60 min
    assert care["resolution"]["count"] == 2 and care["resolution"]["median_seconds"] == (60 + 90) / 2 * 60
    # Both SLAs met in business time; on the wall clock both were breached.
    assert care["sla"] == {"met": 2, "breached": 0, "compliance": 1.0}


def test_first_response_by_channel_counts_business_time(week, manager_a):
    answer = PANELS["first_response_by_channel"].query(filters.parse_filters(week["query"], manager_a))
    assert {row["key"]: row["value"] for row in answer["rows"]} == {"web": 2400.0, "email": 1200.0}


def test_a_team_without_a_calendar_keeps_wall_clock_time(week, admin_user, team_b):
    query = week["query"].copy()
    query["team"] = str(team_b.pk)
    f = filters.parse_filters(query, admin_user)
    care = PANELS["care"].query(f)
    # Wall clock: from the care rollup on PostgreSQL, whose medians are read from histogram bins
    # (approximate, within one bin); exact from the cases elsewhere.
    assert care["approximate"] is (connection.vendor == "postgresql")
    tolerance = care_rollup.tolerance(65 * 3600.0) if care["approximate"] else 0
    assert abs(care["first_response"]["median_seconds"] - 65 * 3600.0) <= tolerance
    assert care["sla"]["breached"] == 1
    assert abs(PANELS["first_response_by_channel"].query(f)["rows"][0]["value"] - 65 * 3600.0) <= tolerance
    # Both teams at once: each case by its own team's clock.
    both = PANELS["care"].query(filters.parse_filters(week["query"], admin_user))
    assert both["first_response"]["count"] == 4 and both["first_response"]["median_seconds"] == (1200 + 3600) / 2


def test_a_holiday_is_not_business_time(week, manager_a):
    Holiday.objects.create(calendar=week["calendar"], date=week["monday"], name="Whit Monday")
    care = PANELS["care"].query(filters.parse_filters(week["query"], manager_a))
    # The Friday case: 30 minutes on Friday, none on the holiday Monday.
    assert care["first_response"]["p90_seconds"] == pytest.approx(1200 + 0.8 * (1800 - 1200))


@pytest.mark.skipif(connection.vendor != "postgresql", reason="insight_raw is PostgreSQL SQL")
@pytest.mark.parametrize("who", ["manager_a", "admin_user"])
def test_business_time_figures_equal_the_raw_reference(week, request, who):
    from bench import insight_raw

    user = request.getfixturevalue(who)
    for name in ("care", "first_response_by_channel"):
        for compare in ("0", "1"):
            query = week["query"].copy()
            query["compare"] = compare
            f = filters.parse_filters(query, user)
            panel = PANELS[name]
            assert insight_raw.first_difference(panel.query(f), insight_raw.reference(panel)(f)) == "", (name, who)
