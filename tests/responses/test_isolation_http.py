"""THE MATRIX, over HTTP: every console route, for an outsider (team B), the owner team (team A),
anonymous visitors and users without console access.

A route added to responses/urls.py without a row here fails test_matrix_covers_every_route. For
routes that take a case, reply or canned-response id, the outsider gets 404 (the object does not
exist for them: no 403 that would confirm it does) for every method, and nothing changes. The
websocket half of the matrix lives in test_isolation_ws.py.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta

import pytest
from django.db.models import Q
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from insight.models import Alert, AlertSettings
from learning.models import Correction
from listening.attachments import save_content
from listening.models import Attachment, AuditEvent, Connector
from responses import models as responses_models, outbound
from responses.api import tokens
from responses.cases import add_note
from responses.models import (
    AgentProfile,
    CannedResponse,
    Case,
    ConsoleEvent,
    Macro,
    MergeRecord,
    Note,
    Reply,
    Role,
    SavedView,
)
from tests.fakes.http import Reply as FakeReply
from tests.responses.conftest import classify, make_user, open_case, store_message

SECRET = "TEAM-A-SECRET order 5521"
JSON = "application/json"

# route name -> the object its URL names (None: no id), the methods it answers, and a valid body
# for the owner's POST (CASE_MESSAGE is replaced by the id of the case's last message).
MATRIX: dict[str, dict] = {
    "inbox": {"obj": None, "methods": ["GET"]},
    "queue": {"obj": None, "methods": ["GET"]},
    "counts": {"obj": None, "methods": ["GET"]},
    # Search and saved views (tests/responses/test_search*.py): an outsider's search finds nothing of
    # team A; a view of team A's does not exist for them.
    "search": {"obj": None, "methods": ["GET"]},
    "saved-views": {"obj": None, "methods": ["GET", "POST"], "body": {"name": "Mine", "q": "order"}},
    "saved-view": {"obj": "saved_view", "methods": ["POST"], "body": {"name": "Renamed"}},
    "saved-view-delete": {"obj": "saved_view", "methods": ["POST"], "body": {}},
    "presence": {"obj": None, "methods": ["POST"], "body": {"presence": "away"}},
    "bulk": {"obj": None, "methods": ["POST"], "body": {"action": "tag", "ids": ["CASE"], "tags": "x"}},
    "next": {"obj": None, "methods": ["GET"]},
    "case": {"obj": "case", "methods": ["GET"]},
    "case-row": {"obj": "case", "methods": ["GET"]},
    "case-status": {"obj": "case", "methods": ["POST"], "body": {"status": "pending"}},
    "case-assign": {"obj": "case", "methods": ["POST"], "body": {"assignee": "me"}},
    "case-tags": {"obj": "case", "methods": ["POST"], "body": {"tags": "refund"}},
    "case-reply": {"obj": "case", "methods": ["POST"], "body": {"text": "Hello", "idempotency_key": "iso-1"}},
    "case-note": {"obj": "case", "methods": ["POST"], "body": {"text": "@agent_a look"}},
    "case-correct": {"obj": "case", "methods": ["POST"],
                     "body": {"message": "CASE_MESSAGE", "field": "lane", "value": "praise"}},
    "case-canned": {"obj": "case", "methods": ["GET"]},
    "case-attachment": {"obj": "attachment", "methods": ["GET"]},
    "reply-retry": {"obj": "reply", "methods": ["POST"], "body": {}},
    # Snooze, macros and merge (tests/responses/test_snooze.py, test_macros.py, test_merge.py). The
    # owner's unsnooze is 400 (not snoozed), a merge of the case into itself 400, and the world's
    # merge was already undone: 409.
    "case-snooze": {"obj": "case", "methods": ["POST"], "body": {"preset": "1h"}},
    "case-unsnooze": {"obj": "case", "methods": ["POST"], "body": {}, "owner_status": 400},
    "case-macro": {"obj": "case_macro", "methods": ["POST"], "body": {"idempotency_key": "iso-macro"}},
    "case-merge": {"obj": "case", "methods": ["POST"], "body": {"source": "CASE"}, "owner_status": 400},
    "merge-undo": {"obj": "merge", "methods": ["POST"], "body": {}, "owner_status": 409},
    "macro-list": {"obj": None, "methods": ["GET"]},
    "macro-new": {"obj": None, "methods": ["GET", "POST"], "supervisor": True,
                  "body": {"title": "New", "team": "TEAM", "actions": [{"type": "add_tags", "tags": ["x"]}]}},
    "macro-edit": {"obj": "macro", "methods": ["GET", "POST"], "supervisor": True,
                   "body": {"title": "Edited", "team": "TEAM", "actions": [{"type": "add_tags", "tags": ["y"]}]}},
    "macro-delete": {"obj": "macro", "methods": ["POST"], "supervisor": True, "body": {}},
    # Spam set aside by routing, and "not spam: open a case" (tests/responses/test_noise.py).
    "noise": {"obj": None, "methods": ["GET"]},
    "message-open-case": {"obj": "noise_message", "methods": ["POST"], "body": {"lane": "issue"}},
    # Business hours and timed rules: supervisors and admins, for their own teams
    # (tests/responses/test_calendars.py, test_timed_rules.py).
    "calendars": {"obj": None, "methods": ["GET"], "supervisor": True},
    "calendar": {"obj": "team", "methods": ["GET", "POST"], "supervisor": True,
                 "body": {"time_zone": "Europe/Paris", "days": ["09:00-17:00"] * 5 + ["", ""]}},
    "calendar-delete": {"obj": "team", "methods": ["POST"], "supervisor": True, "body": {}},
    "timed-rules": {"obj": None, "methods": ["GET"], "supervisor": True},
    "timed-rule-new": {"obj": None, "methods": ["GET", "POST"], "supervisor": True,
                       "body": {"name": "New", "team": "TEAM", "trigger": "waiting", "after_hours": 2,
                                "action": "escalate", "priority_boost": 0.3}},
    "timed-rule": {"obj": "timed_rule", "methods": ["GET", "POST"], "supervisor": True,
                   "body": {"name": "Edited", "team": "TEAM", "trigger": "waiting", "after_hours": 1,
                            "action": "notify", "priority_boost": 0.3}},
    "timed-rule-delete": {"obj": "timed_rule", "methods": ["POST"], "supervisor": True, "body": {}},
    # Rules over signals: admins only (tests/responses/test_signal_rules.py). A proactive message
    # from a case: its team's agents (tests/responses/test_proactive.py).
    "signal-rules": {"obj": None, "methods": ["GET"], "admin": True},
    "signal-rule-new": {"obj": None, "methods": ["GET", "POST"], "admin": True,
                        "body": {"name": "New", "signal_type": "device_error", "kind": "count", "per": "device",
                                 "threshold": 5, "window_minutes": 60, "alert": True}},
    "signal-rule": {"obj": "signal_rule", "methods": ["GET", "POST"], "admin": True,
                    "body": {"name": "Edited", "signal_type": "payment_failed", "kind": "count", "per": "customer",
                             "threshold": 2, "window_minutes": 30, "open_case": True}},
    "signal-rule-enabled": {"obj": "signal_rule", "methods": ["POST"], "admin": True, "body": {"enabled": False}},
    # The world's customer is anonymous (no Customer): the owner is told so, 400.
    "case-proactive": {"obj": "case", "methods": ["POST"], "body": {"text": "We noticed a problem", "key": "iso-pro"},
                       "owner_status": 400},
    # The customer profile (tests/responses/test_segments.py): attributes admins define, segments
    # admins and brand managers keep, and an agent's profile edit on a case of their team.
    "attributes": {"obj": None, "methods": ["GET", "POST"], "admin": True,
                   "body": {"key": "plan", "name": "Plan", "kind": "choice", "choices": ["basic", "gold"]}},
    "attribute": {"obj": "attribute", "methods": ["GET", "POST"], "admin": True, "body": {"name": "Renamed"}},
    "attribute-delete": {"obj": "attribute", "methods": ["GET", "POST"], "admin": True, "body": {}},
    "case-profile": {"obj": "case", "methods": ["POST"], "body": {"tier": "premium", "time_zone": "Europe/Paris"}},
    "segments": {"obj": None, "methods": ["GET", "POST"], "admin": True,
                 "body": {"name": "Premium", "definition": {"tier": ["premium"]}}},
    "segment": {"obj": "segment", "methods": ["GET", "POST"], "admin": True,
                "body": {"name": "Renamed", "definition": {"tier": ["business"]}}},
    "segment-delete": {"obj": "segment", "methods": ["POST"], "admin": True, "body": {}},
    "segment-preview": {"obj": None, "methods": ["POST"], "admin": True, "body": {"tier": ["premium"]}},
    "canned-list": {"obj": None, "methods": ["GET"]},
    "canned-new": {"obj": None, "methods": ["GET", "POST"], "supervisor": True,
                   "body": {"title": "New", "text": "Hi {customer_name}", "team": "TEAM"}},
    "canned-edit": {"obj": "canned", "methods": ["GET", "POST"], "supervisor": True,
                    "body": {"title": "Edited", "text": "Hello", "team": "TEAM"}},
    "canned-delete": {"obj": "canned", "methods": ["POST"], "supervisor": True, "body": {}},
    # Alerts: supervisors, brand managers and admins; the settings: admins only ("admin").
    "alerts": {"obj": None, "methods": ["GET"], "supervisor": True},
    "alert": {"obj": "alert", "methods": ["GET"], "supervisor": True},
    "alert-acknowledge": {"obj": "alert", "methods": ["POST"], "supervisor": True, "body": {}},
    "alert-settings": {"obj": None, "methods": ["GET", "POST"], "admin": True, "body": {"sensitivity": "high"}},
    # Dashboards: supervisors, brand managers and admins (tests/responses/test_insight_views.py has
    # the access per role and what an outsider's panels and drill-downs count).
    "insight": {"obj": None, "methods": ["GET"], "supervisor": True},
    "insight-panel": {"obj": None, "methods": ["GET"], "supervisor": True, "kwargs": {"name": "sentiment"}},
    "insight-messages": {"obj": None, "methods": ["GET"], "supervisor": True},
    "insight-pdf": {"obj": None, "methods": ["POST"], "supervisor": True, "body": {"image": "PNG"}},
    # Sources: admins only, over every connector (no team scope: anyone else gets 403).
    "connectors": {"obj": None, "methods": ["GET"], "admin": True},
    "connector-pause": {"obj": "connector", "methods": ["POST"], "admin": True, "body": {}},
    "connector-resume": {"obj": "connector", "methods": ["POST"], "admin": True, "body": {}},
    # Connecting and running a source (tests/responses/test_connect_views.py): admins only. The
    # owner's answer is 400 where team A's webhook source cannot do it (no OAuth, no backfill).
    "connect": {"obj": None, "methods": ["GET"], "admin": True},
    "connect-new": {"obj": None, "methods": ["GET", "POST"], "admin": True, "kwargs": {"kind": "webhook"},
                    "body": {"name": "New site", "slug": "new-site", "cfg_channel": "web", "cfg_tolerance_seconds": 300,
                             "cfg_callback_url": ""}},
    "connector": {"obj": "connector", "methods": ["GET", "POST"], "admin": True,
                  "body": {"name": "Brand A", "slug": "brand-a", "cfg_channel": "web", "cfg_tolerance_seconds": 300,
                           "cfg_callback_url": ""}},
    "connector-test": {"obj": "connector", "methods": ["POST"], "admin": True, "body": {}},
    "connector-secret": {"obj": "connector", "methods": ["POST"], "admin": True, "body": {},
                         "kwargs": {"name": "signing_secret"}},
    "connector-oauth": {"obj": "connector", "methods": ["POST"], "admin": True, "body": {}, "owner_status": 400},
    "oauth-callback": {"obj": None, "methods": ["GET"], "admin": True, "owner_status": 400},
    "connector-backfill": {"obj": "connector", "methods": ["POST"], "admin": True, "body": {"since": "2026-11-01"},
                           "owner_status": 400},
    # API tokens: anyone with console access makes their own (tests/api/test_tokens.py); another's
    # token does not exist for them. Outbound webhooks: admins only (tests/api/test_webhooks_page.py).
    "tokens": {"obj": None, "methods": ["GET", "POST"], "body": {"name": "CRM", "scopes": ["cases:read"]}},
    "token-revoke": {"obj": "token", "methods": ["POST"], "body": {}},
    "webhooks": {"obj": None, "methods": ["GET", "POST"], "admin": True,
                 "body": {"name": "CRM", "url": "http://127.0.0.1:9/hook", "events": ["case.created"]}},
    "webhook": {"obj": "subscription", "methods": ["GET", "POST"], "admin": True,
                "body": {"events": ["case.created", "case.updated"]}},
    "webhook-enabled": {"obj": "subscription", "methods": ["POST"], "admin": True, "body": {"enabled": False}},
    "webhook-replay": {"obj": "delivery", "methods": ["POST"], "admin": True, "body": {}},
    "webhook-delete": {"obj": "subscription", "methods": ["POST"], "admin": True, "body": {}},
}
# Team-scoped objects: an outsider gets 404. (Admin-only routes are not team-scoped.)
OBJECT_ROUTES = [name for name, row in MATRIX.items() if row["obj"] and not row.get("admin")]
PLAIN_ROUTES = [name for name, row in MATRIX.items() if not row["obj"]]


def console_route_names() -> set[str]:
    """Every named route under the "console" namespace, found by walking the URL resolver."""
    _prefix, resolver = get_resolver().namespace_dict["console"]
    names: set[str] = set()

    def walk(patterns):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns)
            elif isinstance(pattern, URLPattern):
                assert pattern.name, f"console route {pattern.pattern} has no name"
                names.add(pattern.name)

    walk(resolver.url_patterns)
    return names


@pytest.fixture
def world(django_user_model, team_a, team_b, agent_a, supervisor_a, agent_b, connector_a, connector_b,
          fake_provider, admin_user, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")

    @fake_provider.route("POST", "/replies")
    def replies(request):
        return FakeReply(200, {"id": "ext-1"})

    supervisor_b = make_user(django_user_model, "supervisor_b", Role.SUPERVISOR, [team_b])
    case_a = open_case(connector_a, SECRET, author="cust-a", name="Alice Secretname")
    case_b = open_case(connector_b, "team b question", author="cust-b", name="Bob Bee")
    noise_a = store_message(connector_a, f"{SECRET} set aside", author="cust-noise", name="Nora Noise")
    classify(noise_a, lane="noise", sentiment="neutral", intent="spam")
    reply_a = Reply.objects.create(case=case_a, author=agent_a, text="failed reply", idempotency_key="failed-a",
                                   status=Reply.Status.FAILED, last_error="provider said no")
    canned_a = CannedResponse.objects.create(team=team_a, title="Team A canned", text=SECRET)
    from responses.models import BusinessCalendar, TimedRule  # here: the shared import line is busy

    TimedRule.objects.create(team=team_a, name=SECRET, trigger="waiting", after_minutes=60, action="notify")
    from responses.models import SignalRule

    SignalRule.objects.create(name=SECRET, signal_type="device_error", threshold=3, actions={"alert": True})
    BusinessCalendar.objects.create(team=team_a, time_zone="Europe/Paris", hours=[[["09:00", "17:00"]]] * 7)
    macro_a = Macro.objects.create(team=team_a, title=SECRET, actions=[{"type": "add_tags", "tags": ["x"]}])
    merge_a = MergeRecord.objects.create(target=case_a, source=case_a, undone_at=timezone.now())
    digest, path = save_content(SECRET.encode())
    attachment_a = Attachment.objects.create(message_id=case_a.last_message_id, filename="secret.txt",
                                             content_type="text/plain", size=len(SECRET), sha256=digest, file=path)
    now = timezone.now()
    alert_a = Alert.objects.create(team=team_a, kind="volume", dimension="connector", key=str(connector_a.pk),
                                   label=SECRET, window_start=now, window_end=now, observed=40, expected=10, score=9.5,
                                   message_ids=[case_a.last_message_id])
    saved_view = SavedView.objects.create(owner=agent_a, team=case_a.team, name="Team A view", query=SECRET)
    return {**_api_objects(agent_a, admin_user), "saved_view": saved_view,
            "case": case_a, "case_b": case_b, "reply": reply_a, "canned": canned_a, "supervisor_b": supervisor_b,
            "agent_a": agent_a, "supervisor_a": supervisor_a, "agent_b": agent_b, "alert": alert_a,
            "admin": admin_user, "attachment": attachment_a, "noise_message": noise_a, "macro": macro_a,
            "merge": merge_a}


def _api_objects(agent, admin) -> dict:
    """An API token of the agent's, and an outbound webhook with one delivery waiting."""
    subscription, _ = outbound.subscribe(admin, SECRET, "http://127.0.0.1:9/hook", ["case.created"])
    delivery = responses_models.WebhookDelivery.objects.create(
        subscription=subscription, event_id=uuid.uuid4(), event_type="case.created", payload={"secret": SECRET},
        next_attempt_at=timezone.now() + timedelta(days=2))
    return {"token": tokens.create_token(agent, SECRET, ["cases:read"]).token, "subscription": subscription,
            "delivery": delivery}


def url_for(name: str, world: dict) -> str:
    obj = MATRIX[name]["obj"]
    kwargs = {}
    if obj == "case":
        kwargs = {"case_id": world["case"].pk}
    elif obj == "reply":
        kwargs = {"reply_id": world["reply"].pk}
    elif obj == "canned":
        kwargs = {"canned_id": world["canned"].pk}
    elif obj == "alert":
        kwargs = {"alert_id": world["alert"].pk}
    elif obj == "attachment":
        kwargs = {"case_id": world["case"].pk, "attachment_id": world["attachment"].pk}
    elif obj == "connector":
        kwargs = {"connector_id": world["case"].conversation.connector_id}
    elif obj == "noise_message":
        kwargs = {"message_id": world["noise_message"].pk}
    elif obj == "saved_view":
        kwargs = {"view_id": world["saved_view"].pk}
    elif obj == "team":
        kwargs = {"team_id": world["case"].team_id}
    elif obj == "timed_rule":
        from responses.models import TimedRule

        kwargs = {"rule_id": TimedRule.objects.get(team_id=world["case"].team_id).pk}
    elif obj in ("token", "subscription", "delivery"):
        kwargs = {f"{obj}_id": world[obj].pk}
    elif obj == "signal_rule":
        from responses.models import SignalRule

        kwargs = {"rule_id": SignalRule.objects.get(name=SECRET).pk}
    elif obj in ("attribute", "segment"):
        from listening.models import AttributeDefinition, Segment

        found = (Segment.objects.get_or_create(name=SECRET, defaults={"definition": {"tier": ["premium"]}})
                 if obj == "segment" else
                 AttributeDefinition.objects.get_or_create(key="secret", defaults={"name": SECRET, "kind": "text"}))
        kwargs = {f"{obj}_id": found[0].pk}
    elif obj == "case_macro":
        kwargs = {"case_id": world["case"].pk, "macro_id": world["macro"].pk}
    elif obj == "macro":
        kwargs = {"macro_id": world["macro"].pk}
    elif obj == "merge":
        kwargs = {"merge_id": world["merge"].pk}
    kwargs.update(MATRIX[name].get("kwargs", {}))
    return reverse(f"console:{name}", kwargs=kwargs)


def body_for(name: str, world: dict) -> dict:
    raw = json.dumps(MATRIX[name].get("body", {}))
    raw = raw.replace('"CASE_MESSAGE"', str(world["case"].last_message_id)).replace('"CASE"', str(world["case"].pk))
    raw = raw.replace('"TEAM"', str(world["case"].team_id))
    return json.loads(raw)


def call(client, method: str, url: str, data: dict | None = None):
    if method == "GET":
        return client.get(url, HTTP_ACCEPT=JSON)
    if data and data.get("image") == "PNG":  # the PDF snapshot takes a PNG file, not JSON
        return client.post(url, data={"image": _png_file()}, HTTP_ACCEPT=JSON)
    return client.post(url, data=json.dumps(data or {}), content_type=JSON, HTTP_ACCEPT=JSON)


def _png_file():
    from io import BytesIO

    from django.core.files.uploadedfile import SimpleUploadedFile
    from PIL import Image

    buffer = BytesIO()
    Image.new("RGB", (64, 48), "white").save(buffer, "PNG")
    return SimpleUploadedFile("dashboards.png", buffer.getvalue(), content_type="image/png")


def snapshot() -> dict:
    return {
        "replies": list(Reply.objects.order_by("id").values_list("id", "status", "attempts", "last_error")),
        "notes": Note.objects.count(),
        "corrections": Correction.objects.count(),
        "cases": list(Case.objects.order_by("id").values_list("id", "status", "assignee_id", "tags", "lane",
                                                             "queue_id", "awaiting_assignment", "snoozed")),
        "macros": list(Macro.objects.order_by("id").values_list("id", "title", "team_id", "actions")),
        "merges": list(MergeRecord.objects.order_by("id").values_list("id", "undone_at")),
        "canned": list(CannedResponse.objects.order_by("id").values_list("id", "title", "text", "team_id")),
        "events": ConsoleEvent.objects.count(),
        "alerts": list(Alert.objects.order_by("id").values_list("id", "status", "acknowledged_by_id")),
        "alert_settings": list(AlertSettings.objects.values_list("sensitivity", "min_messages", "webhook_url")),
        "connectors": list(Connector.objects.order_by("id").values_list("id", "enabled")),
        "audit": AuditEvent.objects.count(),
        "saved_views": list(SavedView.objects.order_by("id").values_list("id", "name", "team_id")),
        "hours_and_rules": _hours_and_rules(),
        "signal_rules": _signal_rules_and_proactive(),
        "tokens": list(responses_models.ApiToken.objects.order_by("id").values_list("id", "revoked_at")),
        "webhooks": list(responses_models.WebhookSubscription.objects.order_by("id")
                         .values_list("id", "name", "events", "enabled")),
        "deliveries": list(responses_models.WebhookDelivery.objects.order_by("id")
                           .values_list("id", "status", "next_attempt_at")),
    }


def _hours_and_rules() -> list:
    from responses.models import BusinessCalendar, TimedRule

    return [list(TimedRule.objects.order_by("id").values_list("id", "name", "after_minutes", "action", "enabled")),
            list(BusinessCalendar.objects.order_by("id").values_list("id", "time_zone", "hours"))]


def _signal_rules_and_proactive() -> list:
    from responses.models import ProactiveMessage, SignalRule

    return [list(SignalRule.objects.order_by("id").values_list("id", "name", "enabled", "actions")),
            ProactiveMessage.objects.count()]


def test_matrix_covers_every_route():
    names = console_route_names()
    assert names, "no console routes found"
    missing = names - MATRIX.keys()
    assert not missing, f"add these console routes to the isolation MATRIX: {sorted(missing)}"
    assert not MATRIX.keys() - names, f"the MATRIX names routes that no longer exist: {sorted(MATRIX.keys() - names)}"


@pytest.mark.parametrize("name", OBJECT_ROUTES)
def test_outsider_gets_404_for_another_teams_object(client, world, fake_provider, name,
                                                   django_capture_on_commit_callbacks):
    row = MATRIX[name]
    outsider = world["supervisor_b"] if row.get("supervisor") else world["agent_b"]
    client.force_login(outsider)
    url = url_for(name, world)
    before = snapshot()

    with django_capture_on_commit_callbacks(execute=True):
        for method in ("GET", "POST"):
            response = call(client, method, url, body_for(name, world))
            if method in row["methods"]:
                assert response.status_code == 404, f"{method} {url}: {response.status_code}"
                assert response.json()["reason"]
            else:
                assert response.status_code == 405, f"{method} {url}: {response.status_code}"
            assert SECRET not in response.content.decode()

    assert snapshot() == before
    assert fake_provider.calls("/replies") == []


@pytest.mark.parametrize("name", OBJECT_ROUTES)
def test_supervising_outsider_gets_404_too(client, world, name):
    """A supervisor of another team has more rights, but still no way into team A's objects."""
    client.force_login(world["supervisor_b"])
    url = url_for(name, world)
    before = snapshot()
    for method in MATRIX[name]["methods"]:
        assert call(client, method, url, body_for(name, world)).status_code == 404
    assert snapshot() == before


@pytest.mark.parametrize("name", list(MATRIX))
def test_owner_team_gets_2xx_or_3xx(client, world, name, django_capture_on_commit_callbacks):
    row = MATRIX[name]
    owner = "admin" if row.get("admin") else "supervisor_a" if row.get("supervisor") else "agent_a"
    client.force_login(world[owner])
    url = url_for(name, world)
    for method in row["methods"]:
        with django_capture_on_commit_callbacks(execute=True):
            response = call(client, method, url, body_for(name, world))
        if row.get("owner_status") and method == "POST" or name == "oauth-callback":
            assert response.status_code == row["owner_status"] and response.json()["reason"], response.content[:300]
            continue
        assert 200 <= response.status_code < 400, f"{method} {url}: {response.status_code} {response.content[:300]}"


ADMIN_ROUTES = [name for name, row in MATRIX.items() if row.get("admin")]


@pytest.mark.parametrize("name", ADMIN_ROUTES)
def test_admin_routes_refuse_agents_and_supervisors(client, world, name):
    url = url_for(name, world)
    before = snapshot()
    for persona in ("agent_a", "supervisor_a"):
        client.force_login(world[persona])
        for method in MATRIX[name]["methods"]:
            response = call(client, method, url, body_for(name, world))
            assert response.status_code == 403, f"{persona} {method} {url}: {response.status_code}"
            assert response.json()["reason"]
    assert snapshot() == before


@pytest.mark.parametrize("name", list(MATRIX))
def test_anonymous_is_sent_to_login(client, world, name):
    url = url_for(name, world)
    for method in ("GET", "POST"):
        response = call(client, method, url, body_for(name, world))
        assert response.status_code == 302, f"{method} {url}: {response.status_code}"
        assert response["Location"].startswith("/accounts/login/?next=")


@pytest.mark.parametrize("name", list(MATRIX))
def test_user_without_console_access_gets_403(client, world, django_user_model, name):
    nobody = django_user_model.objects.create_user("nobody", password="x-very-long-pass")
    world["case"].team.members.add(nobody)  # even a team member needs a role
    client.force_login(nobody)
    url = url_for(name, world)
    before = snapshot()
    for method in ("GET", "POST"):
        response = call(client, method, url, body_for(name, world))
        assert response.status_code == 403, f"{method} {url}: {response.status_code}"
        assert SECRET not in response.content.decode()
    assert snapshot() == before


# --- Routes without ids: the outsider sees nothing of team A -----------------------------------
def test_outsider_inbox_and_filters_show_no_team_a_case(client, world):
    client.force_login(world["agent_b"])
    case_a, case_b = world["case"], world["case_b"]
    for query in ("", "mine", "unassigned", "held", "resolved", str(case_a.queue_id)):
        html = client.get(f"/console/?queue={query}").content.decode()
        assert SECRET not in html and "Alice Secretname" not in html
        assert f'id="case-{case_a.pk}"' not in html
    assert "Bob Bee" in client.get("/console/").content.decode()
    assert f'id="case-{case_b.pk}"' in client.get("/console/").content.decode()
    queue = client.get("/console/queue/").content.decode()
    assert f'id="case-{case_b.pk}"' in queue and f'id="case-{case_a.pk}"' not in queue and SECRET not in queue


def test_outsider_page_starts_after_their_own_events_only(client, world):
    add_note(world["agent_a"], world["case"].pk, "a team A event, after team B's")
    client.force_login(world["agent_b"])
    html = client.get("/console/").content.decode()
    rendered = int(re.search(r'data-last-event-id="(\d+)"', html).group(1))
    own = (ConsoleEvent.objects.filter(Q(team_id=world["case_b"].team_id) | Q(user=world["agent_b"]))
           .order_by("-id").first())
    assert ConsoleEvent.objects.order_by("-id").first().pk > own.pk  # team A's events came later
    assert rendered == own.pk


def test_outsider_counts_only_their_team(client, world):
    client.force_login(world["agent_b"])
    counts = client.get("/console/counts/").json()
    assert counts["active"] == 1
    assert str(world["case"].queue_id) not in counts["queues"]


def test_outsider_next_never_leads_to_team_a(client, world):
    client.force_login(world["agent_b"])
    for after in ("", str(world["case"].pk), str(world["case_b"].pk)):
        location = client.get(f"/console/next/?after={after}")["Location"]
        assert location in (f"/console/cases/{world['case_b'].pk}/", "/console/")


def test_outsider_canned_list_is_scoped_to_their_teams(client, world):
    client.force_login(world["agent_b"])
    html = client.get("/console/canned/").content.decode()
    assert "Team A canned" not in html and SECRET not in html
    assert client.get("/console/canned/", HTTP_ACCEPT=JSON).json() == {"canned": []}


# --- Canned responses: a team's supervisors write their teams' ones; global ones are admins' ---
def _canned_titles_in_composer(client, case) -> set[str]:
    return {item["title"] for item in client.get(f"/console/cases/{case.pk}/canned/").json()["canned"]}


@pytest.mark.parametrize("team", ["", None, "TEAM_B"])
def test_supervisor_cannot_write_a_canned_response_outside_their_teams(client, world, team):
    """Neither global (no team, or an empty one) nor another team's: 400 with a reason, nothing
    stored, and team B's composer never shows it."""
    data = {"title": "From supervisor A", "text": "Hi {customer_name}"}
    if team is not None:
        data["team"] = world["case_b"].team_id if team == "TEAM_B" else team
    before = snapshot()
    client.force_login(world["supervisor_a"])
    response = call(client, "POST", reverse("console:canned-new"), data)
    assert response.status_code == 400 and "team" in response.json()["reason"], response.content[:300]
    assert snapshot() == before
    client.force_login(world["agent_b"])
    assert "From supervisor A" not in _canned_titles_in_composer(client, world["case_b"])


def test_supervisor_cannot_turn_their_teams_canned_response_global(client, world):
    client.force_login(world["supervisor_a"])
    url = reverse("console:canned-edit", kwargs={"canned_id": world["canned"].pk})
    response = call(client, "POST", url, {"title": "Now global", "text": SECRET, "team": ""})
    assert response.status_code == 400 and response.json()["reason"]
    world["canned"].refresh_from_db()
    assert world["canned"].team_id == world["case"].team_id and world["canned"].title == "Team A canned"


def test_supervisor_cannot_change_or_delete_a_global_canned_response(client, world):
    shared = CannedResponse.objects.create(team=None, title="Everyone's", text="Thanks for writing")
    client.force_login(world["supervisor_a"])
    assert "Everyone's" in _canned_titles_in_composer(client, world["case"])  # they may read it
    before = snapshot()
    for name in ("canned-edit", "canned-delete"):
        url = reverse(f"console:{name}", kwargs={"canned_id": shared.pk})
        response = call(client, "POST", url, {"title": "Hijacked", "text": "Visit evil.example", "team": ""})
        assert response.status_code == 403 and response.json()["reason"], (name, response.status_code)
    assert call(client, "GET", reverse("console:canned-edit", kwargs={"canned_id": shared.pk})).status_code == 403
    assert snapshot() == before
    html = client.get("/console/canned/").content.decode()
    assert f"/console/canned/{shared.pk}/" not in html  # no Edit or Delete for what they may not change
    assert f"/console/canned/{world['canned'].pk}/" in html


def test_supervisor_canned_response_for_their_team_reaches_only_that_team(client, world):
    client.force_login(world["supervisor_a"])
    data = {"title": "Team A only", "text": "Hi {customer_name}", "team": world["case"].team_id}
    assert call(client, "POST", reverse("console:canned-new"), data).status_code == 200
    assert CannedResponse.objects.get(title="Team A only").team_id == world["case"].team_id
    client.force_login(world["agent_a"])
    assert "Team A only" in _canned_titles_in_composer(client, world["case"])
    client.force_login(world["agent_b"])
    assert "Team A only" not in _canned_titles_in_composer(client, world["case_b"])


def test_admin_makes_global_canned_responses_every_team_sees(client, world):
    client.force_login(world["admin"])
    response = call(client, "POST", reverse("console:canned-new"), {"title": "For all", "text": "Hello", "team": ""})
    assert response.status_code == 200 and CannedResponse.objects.get(title="For all").team_id is None
    for agent, case in (("agent_a", "case"), ("agent_b", "case_b")):
        client.force_login(world[agent])
        assert "For all" in _canned_titles_in_composer(client, world[case])


def test_outsider_bulk_on_team_a_cases_changes_nothing(client, world):
    client.force_login(world["agent_b"])
    before = snapshot()
    for action, extra in (("resolve", {}), ("assign", {"assignee": "me"}), ("tag", {"tags": "x"})):
        response = call(client, "POST", "/console/bulk/", {"action": action, "ids": [world["case"].pk], **extra})
        assert response.status_code in (400, 404)
        response = call(client, "POST", "/console/bulk/",
                        {"action": action, "ids": [world["case"].pk, world["case_b"].pk], **extra})
        assert response.status_code in (400, 404)
    assert snapshot() == before


def test_outsider_presence_touches_only_their_profile(client, world):
    client.force_login(world["agent_b"])
    others = list(AgentProfile.objects.exclude(user=world["agent_b"]).values_list("user_id", "presence"))
    assert call(client, "POST", "/console/presence/", {"presence": "away"}).status_code == 200
    assert list(AgentProfile.objects.exclude(user=world["agent_b"]).values_list("user_id", "presence")) == others
