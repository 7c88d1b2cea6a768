"""The panel added through the registry: median first-response time by channel."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.db import connection
from django.http import QueryDict
from django.urls import reverse

from insight import care_rollup, filters
from insight.panels import PANELS
from responses.models import Case
from tests.responses.conftest import open_case

JSON = "application/json"


def _answered(connector, channel: str, minutes: float, author: str) -> Case:
    case = open_case(connector, f"Where is my parcel? ({author})", author=author)
    Case.objects.filter(pk=case.pk).update(channel=channel,
                                           first_response_at=case.opened_at + timedelta(minutes=minutes))
    return case


@pytest.fixture
def waits(connector_a):
    for i, minutes in enumerate((10, 20, 90)):
        _answered(connector_a, "web", minutes, f"web-{i}")
    for i, minutes in enumerate((2, 4)):
        _answered(connector_a, "email", minutes, f"mail-{i}")
    open_case(connector_a, "Still waiting for anyone at all", author="unanswered")  # no first response: not counted


def test_first_response_panel_gives_each_channels_median(waits, manager_a):
    answer = PANELS["first_response_by_channel"].query(filters.parse_filters(QueryDict(""), manager_a))
    by_channel = {row["key"]: row for row in answer["rows"]}
    # On PostgreSQL read from the care rollup's histograms: counts exact, medians within one bin.
    assert answer["approximate"] is (connection.vendor == "postgresql")
    off = care_rollup.tolerance if answer["approximate"] else (lambda exact: 0)
    assert abs(by_channel["web"]["value"] - 1200.0) <= off(1200.0) and by_channel["web"]["count"] == 3
    assert abs(by_channel["email"]["value"] - 180.0) <= off(180.0) and by_channel["email"]["count"] == 2
    assert answer["value_label"].startswith("Approx.") is answer["approximate"]
    assert [row["key"] for row in answer["rows"]] == ["web", "email"]  # slowest first
    # The connector classes' words for the channel, not its slug.
    assert by_channel["email"]["label"] == filters.channel_labels()["email"] != "email"


def test_first_response_panel_is_served_as_json_and_csv(client, waits, manager_a):
    client.force_login(manager_a)
    url = reverse("console:insight-panel", kwargs={"name": "first_response_by_channel"})
    body = client.get(url, HTTP_ACCEPT=JSON).json()
    assert body["panel"] == "first_response_by_channel" and len(body["rows"]) == 2
    rows = list(csv.reader(io.StringIO(client.get(url, {"format": "csv"}).content.decode())))
    assert rows[0] == ["channel", "label", "cases_answered", "median_seconds"]
    web = next(r for r in rows[1:] if r[0] == "web")
    served = {r["key"]: r["value"] for r in body["rows"]}
    assert web[2] == "3" and float(web[3]) == served["web"]
    page = client.get(reverse("console:insight")).content.decode()
    assert "First response by channel" in page and '"first_response_by_channel": "bars"' in page


def test_first_response_panel_shows_nothing_of_another_team(client, waits, django_user_model, team_b):
    from responses.models import Role
    from tests.responses.conftest import make_user

    outsider = make_user(django_user_model, "manager_b", Role.BRAND_MANAGER, [team_b])
    client.force_login(outsider)
    url = reverse("console:insight-panel", kwargs={"name": "first_response_by_channel"})
    assert client.get(url, HTTP_ACCEPT=JSON).json()["rows"] == []


@pytest.mark.skipif(connection.vendor != "postgresql", reason="insight_raw is PostgreSQL SQL")
def test_first_response_panel_equals_its_raw_reference(waits, manager_a):
    from bench import insight_raw

    panel = PANELS["first_response_by_channel"]
    f = filters.parse_filters(QueryDict(""), manager_a)
    assert insight_raw.first_difference(panel.query(f), insight_raw.reference(panel)(f)) == ""
