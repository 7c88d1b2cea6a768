"""The alerts pages: who may see them, team isolation, the numbers in words and the messages behind
an alert (access checked again), acknowledging with CSRF, and the admins' settings form."""

from __future__ import annotations

import json
import math
import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from insight.models import Alert, AlertSettings
from responses.models import Role
from tests.responses.conftest import classify, make_user, open_case, store_message

JSON = "application/json"
SCRIPT = "<script>alert('x')</script>"


def make_alert(team, message_ids, **fields) -> Alert:
    end = timezone.now()
    values = {
        "kind": Alert.Kind.VOLUME, "dimension": Alert.Dimension.CONNECTOR, "key": "1", "label": "Connector Brand A",
        "window_start": end - timedelta(hours=1), "window_end": end, "observed": 40.0, "expected": 10.0,
        "score": 30 / math.sqrt(10), "message_ids": message_ids,
        "detail": {"method": "volume", "observed": 40, "expected": 10.0, "mad": 0.0, "scale": math.sqrt(10),
                   "z": 30 / math.sqrt(10), "threshold": 4.0, "baseline_hours": 168, "baseline_total": 1680,
                   "detections": 1},
    }
    return Alert.objects.create(team=team, **{**values, **fields})


@pytest.fixture
def world(team_a, team_b, connector_a, connector_b, agent_a, supervisor_a, manager_a, agent_b, admin_user,
          django_user_model):
    case = open_case(connector_a, "My parcel is lost", author="cust-a", name="Alice Customer")
    loose = store_message(connector_a, SCRIPT, author="cust-x")  # no case (yet)
    classify(loose, lane="noise", sentiment="negative")
    foreign = store_message(connector_b, "TEAM-B-SECRET message", author="cust-b")
    alert_a = make_alert(team_a, [case.last_message_id, loose.pk, foreign.pk])
    alert_b = make_alert(team_b, [foreign.pk], label="Connector Brand B")
    return {
        "case": case, "loose": loose, "foreign": foreign, "alert_a": alert_a, "alert_b": alert_b,
        "supervisor_b": make_user(django_user_model, "supervisor_b", Role.SUPERVISOR, [team_b]),
    }


def url(name: str, alert: Alert | None = None) -> str:
    return f"/console/insight/alerts/{alert.pk}/{name}" if alert else f"/console/insight/alerts/{name}"


# --- Who sees what -------------------------------------------------------------------------------
def test_plain_agents_get_403_everywhere(client, world, agent_a):
    client.force_login(agent_a)
    alert = world["alert_a"]
    for response in (client.get(url("")), client.get(url("", alert)), client.get(url("settings/")),
                     client.post(url("acknowledge/", alert))):
        assert response.status_code == 403
    alert.refresh_from_db()
    assert alert.status == Alert.Status.OPEN


@pytest.mark.parametrize("who", ["supervisor_a", "manager_a"])
def test_supervisors_and_brand_managers_see_their_teams_alerts_only(client, world, request, who):
    client.force_login(request.getfixturevalue(who))
    html = client.get(url("")).content.decode()
    assert "Connector Brand A" in html and "Connector Brand B" not in html
    data = client.get(url(""), HTTP_ACCEPT=JSON).json()
    assert [a["id"] for a in data["alerts"]] == [world["alert_a"].pk]
    assert data["open_count"] == 1
    assert client.get(url("", world["alert_b"])).status_code == 404
    assert client.post(url("acknowledge/", world["alert_b"])).status_code == 404


def test_admins_see_every_team(client, world, admin_user):
    client.force_login(admin_user)
    ids = [a["id"] for a in client.get(url(""), HTTP_ACCEPT=JSON).json()["alerts"]]
    assert sorted(ids) == sorted([world["alert_a"].pk, world["alert_b"].pk])


def test_the_list_is_newest_first_and_filters_by_status(client, world, supervisor_a, team_a):
    older = make_alert(team_a, [], label="Older one", created_at=timezone.now() - timedelta(days=2),
                       status=Alert.Status.ACKNOWLEDGED)
    client.force_login(supervisor_a)
    ids = [a["id"] for a in client.get(url(""), HTTP_ACCEPT=JSON).json()["alerts"]]
    assert ids == [world["alert_a"].pk, older.pk]
    ids = [a["id"] for a in client.get(url("?status=acknowledged"), HTTP_ACCEPT=JSON).json()["alerts"]]
    assert ids == [older.pk]
    assert client.get(url("?status=bogus"), HTTP_ACCEPT=JSON).status_code == 400


def test_malformed_or_unknown_ids_are_404(client, world, supervisor_a):
    client.force_login(supervisor_a)
    for bad in ("abc", "0", "-1", "99999999", "1e3", "9" * 30):
        assert client.get(f"/console/insight/alerts/{bad}/", HTTP_ACCEPT=JSON).status_code == 404


def test_another_teams_supervisor_gets_404_and_changes_nothing(client, world):
    client.force_login(world["supervisor_b"])
    alert = world["alert_a"]
    assert client.get(url("", alert)).status_code == 404
    assert client.post(url("acknowledge/", alert), HTTP_ACCEPT=JSON).status_code == 404
    alert.refresh_from_db()
    assert alert.status == Alert.Status.OPEN


# --- The detail page -------------------------------------------------------------------------------
def test_the_detail_says_the_numbers_in_words_and_lists_the_messages(client, world, supervisor_a):
    client.force_login(supervisor_a)
    alert, case = world["alert_a"], world["case"]
    response = client.get(url("", alert))
    html = response.content.decode()
    assert response.status_code == 200
    assert "Content-Security-Policy" in response
    end = alert.window_end.strftime("%H:%M UTC")
    assert f"40 messages in the hour to {end} against a usual 10 (z = 9.5)." in html
    assert "median of the 168 hourly counts" in html
    assert "z = (40 − 10) / 3.16 = 9.49" in html
    assert "My parcel is lost" in html
    assert f'href="/console/cases/{case.pk}/"' in html
    # Customer text is inert; another team's message is not shown, only counted.
    assert SCRIPT not in html and "&lt;script&gt;" in html
    assert "TEAM-B-SECRET" not in html
    assert "1 not visible to you" in html
    assert 'class="flash"' not in html  # the messages are not mistaken for flash messages


def test_the_detail_as_json_filters_messages_by_access(client, world, supervisor_a):
    client.force_login(supervisor_a)
    data = client.get(url("", world["alert_a"]), HTTP_ACCEPT=JSON).json()
    by_id = {m["id"]: m for m in data["messages"]}
    assert set(by_id) == {world["case"].last_message_id, world["loose"].pk}
    assert by_id[world["case"].last_message_id]["case_id"] == world["case"].pk
    assert by_id[world["loose"].pk]["case_id"] is None
    assert data["alert"]["summary"] == "40 messages in the last hour against a usual 10 (z = 9.5)"


def test_a_negative_alert_reads_as_shares(client, world, supervisor_a, team_a):
    p0 = 337 / 3363
    alert = make_alert(team_a, [], kind=Alert.Kind.NEGATIVE, observed=0.6, expected=p0, score=7.44,
                       detail={"method": "negative", "negatives": 12, "total": 20, "share": 0.6,
                               "baseline_negatives": 336, "baseline_total": 3360, "p0": p0, "z": 7.44,
                               "threshold": 4.0, "baseline_hours": 168})
    client.force_login(supervisor_a)
    html = client.get(url("", alert)).content.decode()
    assert "12 of 20 messages negative (60%) in the hour to" in html
    assert "against a usual 10% (z = 7.4)" in html
    assert "(336 negative + 1) / (3,360 messages + 3)" in html


# --- Acknowledging -------------------------------------------------------------------------------
def test_acknowledge_needs_the_csrf_token(world, supervisor_a):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(supervisor_a)
    alert = world["alert_a"]
    assert browser.post(url("acknowledge/", alert)).status_code == 403
    alert.refresh_from_db()
    assert alert.status == Alert.Status.OPEN

    page = browser.get(url("", alert)).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    response = browser.post(url("acknowledge/", alert), {"csrfmiddlewaretoken": token})
    assert response.status_code == 302 and response["Location"] == url("", alert)
    alert.refresh_from_db()
    assert (alert.status, alert.acknowledged_by) == (Alert.Status.ACKNOWLEDGED, supervisor_a)
    assert "Acknowledged by Supervisor" in browser.get(url("", alert)).content.decode()


def test_acknowledge_by_fetch_answers_json_and_keeps_the_first(client, world, supervisor_a, manager_a):
    alert = world["alert_a"]
    client.force_login(manager_a)
    data = client.post(url("acknowledge/", alert), content_type=JSON, HTTP_ACCEPT=JSON).json()
    assert data["ok"] and data["alert"]["status"] == "acknowledged"
    client.force_login(supervisor_a)
    assert client.post(url("acknowledge/", alert), content_type=JSON, HTTP_ACCEPT=JSON).status_code == 200
    alert.refresh_from_db()
    assert alert.acknowledged_by == manager_a
    assert client.get(url("acknowledge/", alert)).status_code == 405


# --- Settings --------------------------------------------------------------------------------------
VALID = {"enabled": "on", "sensitivity": "high", "min_messages": "25", "min_history_hours": "48",
         "quiet_start": "22:00", "quiet_end": "06:30", "email_to": "ops@example.com\nlead@example.com",
         "webhook_url": "", "webhook_secret": ""}


def test_only_admins_open_the_settings(client, world, supervisor_a, manager_a, admin_user):
    for user in (supervisor_a, manager_a):
        client.force_login(user)
        assert client.get(url("settings/")).status_code == 403
        assert client.post(url("settings/"), VALID).status_code == 403
    assert AlertSettings.current().min_messages == 10
    client.force_login(admin_user)
    assert client.get(url("settings/")).status_code == 200


def test_admin_saves_settings_and_the_secret_is_never_sent_back(client, world, admin_user, fake_provider):
    client.force_login(admin_user)
    response = client.post(url("settings/"), {**VALID, "webhook_url": f"{fake_provider.url}/hook",
                                              "webhook_secret": "TOP-SECRET-VALUE"})
    assert response.status_code == 302
    row = AlertSettings.current()
    assert (row.sensitivity, row.min_messages, row.quiet_start.strftime("%H:%M")) == ("high", 25, "22:00")
    assert row.min_history_hours == 48
    assert row.email_to == "ops@example.com\nlead@example.com"
    assert row.webhook_secret == "TOP-SECRET-VALUE"

    html = client.get(url("settings/")).content.decode()
    assert "TOP-SECRET-VALUE" not in html and "(set)" in html
    assert "at least <strong>48 hours (2 days)</strong> before the hour tested" in html  # the minimum history, stated
    data = client.get(url("settings/"), HTTP_ACCEPT=JSON).json()["settings"]
    assert "TOP-SECRET-VALUE" not in json.dumps(data)
    assert data["webhook_secret_set"] is True and "webhook_secret" not in data

    # Saving again without a secret keeps it; asking to clear it (and the URL) removes it.
    assert client.post(url("settings/"), {**VALID, "webhook_url": f"{fake_provider.url}/hook"}).status_code == 302
    assert AlertSettings.current().webhook_secret == "TOP-SECRET-VALUE"
    assert client.post(url("settings/"), {**VALID, "clear_webhook_secret": "on"}).status_code == 302
    assert AlertSettings.current().webhook_secret == ""
    assert "(not set)" in client.get(url("settings/")).content.decode()


@pytest.mark.parametrize("change, field", [
    ({"min_messages": "0"}, "min_messages"),
    ({"min_messages": "many"}, "min_messages"),
    ({"sensitivity": "extreme"}, "sensitivity"),
    ({"min_history_hours": "145"}, "min_history_hours"),
    ({"min_history_hours": "-1"}, "min_history_hours"),
    ({"quiet_end": ""}, "quiet_end"),
    ({"quiet_end": "22:00"}, "quiet_end"),
    ({"quiet_start": "25:99"}, "quiet_start"),
    ({"email_to": "ops@example.com, not-an-address"}, "email_to"),
    ({"webhook_url": "ftp://example.com/hook", "webhook_secret": "s"}, "webhook_url"),
    ({"webhook_url": "https://hooks.example.com/x"}, "webhook_secret"),
])
def test_invalid_settings_are_shown_and_not_saved(client, world, admin_user, change, field):
    client.force_login(admin_user)
    before = AlertSettings.current().updated_at
    response = client.post(url("settings/"), {**VALID, **change})
    assert response.status_code == 400
    assert response.context["form"].errors[field]
    assert 'class="error small"' in response.content.decode()
    response = client.post(url("settings/"), json.dumps({**VALID, **change}), content_type=JSON, HTTP_ACCEPT=JSON)
    assert response.status_code == 400
    assert field in response.json()["errors"] and response.json()["reason"]
    assert AlertSettings.current().updated_at == before


def test_a_private_webhook_url_is_refused_outside_tests(client, world, admin_user, settings):
    settings.ALLOW_PRIVATE_URLS = False
    client.force_login(admin_user)
    response = client.post(url("settings/"), json.dumps({"webhook_url": "http://127.0.0.1:9/hook",
                                                         "webhook_secret": "s"}),
                           content_type=JSON, HTTP_ACCEPT=JSON)
    assert response.status_code == 400
    assert "non-public" in response.json()["reason"]
    assert AlertSettings.current().webhook_url == ""


def test_json_changes_only_the_fields_it_names(client, world, admin_user):
    client.force_login(admin_user)
    response = client.post(url("settings/"), json.dumps({"sensitivity": "low", "email_to": ["a@example.com"]}),
                           content_type=JSON, HTTP_ACCEPT=JSON)
    assert response.status_code == 200
    data = response.json()["settings"]
    assert (data["sensitivity"], data["min_messages"], data["enabled"]) == ("low", 10, True)
    assert data["min_history_hours"] == 72  # the default: 3 days
    assert data["email_to"] == ["a@example.com"]
    bad = client.post(url("settings/"), json.dumps({"min_messages": {"x": 1}}), content_type=JSON,
                      HTTP_ACCEPT=JSON)
    assert bad.status_code == 400 and bad.json()["reason"]
    assert client.post(url("settings/"), "[1]", content_type=JSON, HTTP_ACCEPT=JSON).status_code == 400


def test_the_alerts_link_shows_for_supervisors_not_agents(client, world, supervisor_a, agent_a):
    client.force_login(supervisor_a)
    assert 'id="alerts-link"' in client.get("/console/").content.decode()
    client.force_login(agent_a)
    assert 'id="alerts-link"' not in client.get("/console/").content.decode()


def test_login_is_required(client, world):
    for path in (url(""), url("settings/"), url("", world["alert_a"])):
        response = client.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


# --- Live ----------------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_a_raised_alert_reaches_the_supervisors_console_not_the_agents(team_a, supervisor_a, agent_a, settings):
    import asyncio

    from channels.db import database_sync_to_async

    from insight import alerts
    from tests.responses.ws import connect, nothing_more, receive_until, session_cookie

    settings.CXM_CONSOLE_POLL_SECONDS = 1
    cookies = session_cookie(supervisor_a), session_cookie(agent_a)

    def raise_alert() -> Alert:
        alert = make_alert(team_a, [])
        alerts.notify_pending([alert.pk], AlertSettings.current())
        return alert

    async def scenario():
        lead, agent = await connect(cookies[0]), await connect(cookies[1])
        alert = await database_sync_to_async(raise_alert)()
        seen = await receive_until(lead, lambda m: m["type"] == "events" and any(
            e["type"] == "alert.raised" for e in m["events"]))
        (event,) = [e for m in seen for e in m.get("events", []) if e["type"] == "alert.raised"]
        assert event["alert"]["id"] == alert.pk and event["alert"]["label"] == "Connector Brand A"
        assert event["alert"]["url"] == f"/console/insight/alerts/{alert.pk}/"
        assert await nothing_more(agent, 2.5)
        await lead.disconnect()
        await agent.disconnect()

    asyncio.run(scenario())
