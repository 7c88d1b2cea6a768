"""Snooze: a case leaves the queues until a time or until the customer writes, and comes back."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse
from django.utils import timezone

from responses import snooze
from responses.models import Case, CaseActivity, CaseStatus, ConsoleEvent
from responses.routing import route_messages
from responses.views.inbox import counts_for, filtered_cases
from tests.responses.conftest import classify, open_case, store_message

JSON = "application/json"


def post(client, url, data):
    return client.post(url, data=json.dumps(data), content_type=JSON, HTTP_ACCEPT=JSON)


def test_snooze_presets_land_on_local_morning():
    zone = ZoneInfo("Europe/Paris")
    now = datetime(2026, 3, 27, 22, 30, tzinfo=ZoneInfo("UTC"))  # Friday 23:30 in Paris
    assert snooze.until_for("1h", zone=zone, now=now) == now + timedelta(hours=1)
    assert snooze.until_for("tomorrow", zone=zone, now=now) == datetime(2026, 3, 28, 9, 0, tzinfo=zone)
    # Next Monday 9:00 in Paris, after the switch to summer time (UTC+2): 7:00 UTC.
    monday = snooze.until_for("next_week", zone=zone, now=now)
    assert monday.astimezone(ZoneInfo("UTC")) == datetime(2026, 3, 30, 7, 0, tzinfo=ZoneInfo("UTC"))
    assert snooze.until_for("reply", zone=zone, now=now) is None
    assert snooze.until_for("custom", at="2026-04-02T10:15", zone=zone, now=now) == datetime(
        2026, 4, 2, 10, 15, tzinfo=zone)


def test_snooze_case_leaves_the_queue_and_shows_in_snoozed(client, agent_a, connector_a):
    case = open_case(connector_a)
    client.force_login(agent_a)
    response = post(client, reverse("console:case-snooze", kwargs={"case_id": case.pk}),
                    {"preset": "tomorrow", "tz": "Europe/Paris"})
    assert response.status_code == 200, response.content
    case.refresh_from_db()
    assert case.snoozed and case.snoozed_until > timezone.now()
    assert case.status != CaseStatus.RESOLVED  # snoozing keeps the status
    assert case.pk not in set(filtered_cases(agent_a, "").values_list("id", flat=True))
    assert case.pk in set(filtered_cases(agent_a, "snoozed").values_list("id", flat=True))
    counts = counts_for(agent_a)
    assert (counts["active"], counts["snoozed"]) == (0, 1)
    activity = CaseActivity.objects.get(case=case, kind="snoozed")
    assert activity.by == agent_a and activity.text.startswith("Snoozed until")
    event = ConsoleEvent.objects.filter(case=case, type="case.updated").latest("id")
    assert event.payload["case"]["snoozed"] is True and event.payload["activity"]["kind"] == "snoozed"
    # "next case" never opens it.
    assert client.get(reverse("console:next")).url == reverse("console:inbox")


def test_snooze_in_the_past_is_refused_with_a_reason(client, agent_a, connector_a):
    case = open_case(connector_a)
    client.force_login(agent_a)
    url = reverse("console:case-snooze", kwargs={"case_id": case.pk})
    past = (timezone.now() - timedelta(hours=2)).isoformat()
    response = post(client, url, {"preset": "custom", "until": past})
    assert response.status_code == 400
    assert "passed" in response.json()["reason"]
    for bad in ({"preset": "forever"}, {"preset": "custom", "until": "tomorrow-ish"}, {"preset": "custom"},
                {"preset": "custom", "until": "2030-01-01T00:00\x00"}, {"preset": ["1h"]},
                {"preset": "custom", "until": (timezone.now() + timedelta(days=800)).isoformat()}):
        response = post(client, url, bad)
        assert response.status_code == 400, (bad, response.status_code)
        assert response.json()["reason"]
    case.refresh_from_db()
    assert not case.snoozed


def test_snooze_woken_at_once_by_the_customer_writing(agent_a, connector_a):
    case = open_case(connector_a, author="cust-9")
    snooze.snooze_case(agent_a, case.pk, timezone.now() + timedelta(days=3))
    message = store_message(connector_a, "Any news?", author="cust-9")
    classify(message)
    route_messages([message.pk])
    case.refresh_from_db()
    assert not case.snoozed and case.snoozed_until is None
    assert CaseActivity.objects.filter(case=case, kind="woke", detail__reason="customer").exists()
    assert case.pk in set(filtered_cases(agent_a, "").values_list("id", flat=True))
    event = ConsoleEvent.objects.filter(case=case, type="case.updated").latest("id")
    assert event.payload["case"]["snoozed"] is False


def test_snooze_until_reply_waits_for_the_customer_not_the_clock(agent_a, connector_a):
    case = open_case(connector_a, author="cust-10")
    snooze.snooze_case(agent_a, case.pk, None)
    assert snooze.wake_due(now=timezone.now() + timedelta(days=400)) == 0
    assert Case.objects.get(pk=case.pk).snoozed


def test_snooze_beat_wakes_due_cases_only(agent_a, connector_a):
    soon = open_case(connector_a, author="cust-11")
    later = open_case(connector_a, author="cust-12")
    now = timezone.now()
    snooze.snooze_case(agent_a, soon.pk, now + timedelta(minutes=5))
    snooze.snooze_case(agent_a, later.pk, now + timedelta(days=2))
    from responses.tasks import wake_snoozed_cases

    assert wake_snoozed_cases() == 0
    assert snooze.wake_due(now=now + timedelta(minutes=6)) == 1
    assert not Case.objects.get(pk=soon.pk).snoozed
    assert Case.objects.get(pk=later.pk).snoozed
    assert CaseActivity.objects.filter(case=soon, kind="woke", detail__reason="time").count() == 1


def test_unsnooze_brings_it_back_and_resolved_cases_cannot_be_snoozed(client, agent_a, connector_a):
    case = open_case(connector_a)
    client.force_login(agent_a)
    snooze.snooze_case(agent_a, case.pk, None)
    response = post(client, reverse("console:case-unsnooze", kwargs={"case_id": case.pk}), {})
    assert response.status_code == 200
    assert not Case.objects.get(pk=case.pk).snoozed
    assert post(client, reverse("console:case-unsnooze", kwargs={"case_id": case.pk}), {}).status_code == 400
    Case.objects.filter(pk=case.pk).update(status=CaseStatus.RESOLVED)
    response = post(client, reverse("console:case-snooze", kwargs={"case_id": case.pk}), {"preset": "1h"})
    assert response.status_code == 400 and "resolved" in response.json()["reason"]


def test_snooze_is_not_for_outsiders_or_managers(client, agent_b, manager_a, connector_a):
    case = open_case(connector_a)
    client.force_login(agent_b)
    assert post(client, reverse("console:case-snooze", kwargs={"case_id": case.pk}),
                {"preset": "1h"}).status_code == 404
    client.force_login(manager_a)
    assert post(client, reverse("console:case-snooze", kwargs={"case_id": case.pk}),
                {"preset": "1h"}).status_code == 403
    assert not Case.objects.get(pk=case.pk).snoozed


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", "x" * 200])
def test_snooze_unknown_time_zone_falls_back_to_the_sites(zone):
    assert snooze.zone_for(zone).key
