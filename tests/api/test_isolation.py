"""THE MATRIX, over the API: every /api/v1/ route, for its owner on team A (who may) and for an
outsider on team B (who must see nothing of team A and change nothing of it).

A route added to responses/api/urls.py without a row here fails test_matrix_covers_every_route.
Objects of team A do not exist for the outsider (404, never a 403 that would confirm them); admin
routes are 403 for anyone else; lists answer 200 without a trace of team A.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from insight.models import Alert
from learning import rollups
from learning.models import Correction, Intent
from listening.models import Connector, Customer, Message
from responses import outbound, proactive
from responses.cases import add_note
from responses.models import (
    Case,
    Note,
    Queue,
    Reply,
    Role,
    RoutingRule,
    Team,
    WebhookDelivery,
    WebhookSubscription,
)
from tests.api.conftest import Api, token_for
from tests.responses.conftest import make_user, open_case

SECRET = "TEAM-A-SECRET order 5521"

# route name -> who owns it (agent: agent_a; viewer: supervisor_a; admin: admin_user), the path
# (objects in {braces}), and per method the owner's body (None for GET) and the owner's status.
MATRIX: dict[str, dict] = {
    "case-list": {"who": "agent", "path": "/cases", "GET": 200},
    "case-detail": {"who": "agent", "path": "/cases/{case}", "GET": 200,
                    "PATCH": ({"tags": ["vip"], "status": "pending"}, 200)},
    "case-notes": {"who": "agent", "path": "/cases/{case}/notes", "GET": 200, "POST": ({"text": "note"}, 201)},
    "case-replies": {"who": "agent", "path": "/cases/{case}/replies", "GET": 200, "POST": ({"text": "Hi"}, 201)},
    "message-list": {"who": "agent", "path": "/messages", "GET": 200},
    "message-detail": {"who": "agent", "path": "/messages/{message}", "GET": 200},
    "message-classifications": {"who": "agent", "path": "/messages/{message}/classifications", "GET": 200},
    "conversation-list": {"who": "agent", "path": "/conversations", "GET": 200},
    "conversation-detail": {"who": "agent", "path": "/conversations/{conversation}", "GET": 200},
    "correction-list": {"who": "agent", "path": "/corrections", "GET": 200,
                        "POST": ({"case": "{case}", "message": "{message}", "field": "sentiment",
                                  "value": "neutral"}, 201)},
    "customer-list": {"who": "agent", "path": "/customers", "GET": 200},
    "customer-detail": {"who": "agent", "path": "/customers/{customer}", "GET": 200,
                        "PATCH": ({"vip": True}, 200)},
    "customer-merge": {"who": "viewer", "path": "/customers/{customer}/merge",
                       "POST": ({"others": ["{customer2}"]}, 200)},
    "customer-profile": {"who": "agent", "path": "/customers/{customer}/profile", "GET": 200,
                         "PATCH": ({"tier": "premium", "time_zone": "Europe/Berlin"}, 200)},
    "contact-list": {"who": "agent", "path": "/contacts", "GET": 200},
    "proactive-message-list": {"who": "agent", "path": "/proactive-messages", "GET": 200,
                               "POST": ({"customer": "{customer2}", "text": "Hello first", "key": "iso-p2"}, 201)},
    "proactive-message-detail": {"who": "agent", "path": "/proactive-messages/{proactive-message}", "GET": 200},
    "search": {"who": "agent", "path": "/search?q=order+5521", "GET": 200},
    "contact-detail": {"who": "agent", "path": "/contacts/{contact}", "GET": 200},
    "panels": {"who": "viewer", "path": "/insight/panels", "GET": 200},
    "panel": {"who": "viewer", "path": "/insight/panels/volume", "GET": 200},
    "alert-list": {"who": "viewer", "path": "/alerts", "GET": 200},
    "alert-detail": {"who": "viewer", "path": "/alerts/{alert}", "GET": 200},
    "alert-acknowledge": {"who": "viewer", "path": "/alerts/{alert}/acknowledge", "POST": ({}, 200)},
    "signals": {"who": "admin", "path": "/signals",
                "POST": ({"signals": [{"id": "iso-1", "type": "nps_answer", "customer": {"email": "a@example.com"},
                                       "payload": {"score": 2}}]}, 201)},
    "admin-connector-list": {"who": "admin", "path": "/admin/connectors", "GET": 200},
    "admin-connector-detail": {"who": "admin", "path": "/admin/connectors/{connector}", "GET": 200},
    "admin-connector-pause": {"who": "admin", "path": "/admin/connectors/{connector}/pause", "POST": ({}, 200)},
    "admin-connector-resume": {"who": "admin", "path": "/admin/connectors/{connector}/resume", "POST": ({}, 200)},
    "admin-team-list": {"who": "admin", "path": "/admin/teams", "GET": 200,
                        "POST": ({"name": "Team C", "members": ["{agent}"]}, 201)},
    # Team A has cases: it cannot be deleted (409), and nothing of it is lost.
    "admin-team-detail": {"who": "admin", "path": "/admin/teams/{team}", "GET": 200,
                          "PATCH": ({"name": "Team A renamed"}, 200), "DELETE": (None, 409)},
    "admin-queue-list": {"who": "admin", "path": "/admin/queues", "GET": 200,
                         "POST": ({"team": "{team}", "name": "VIP", "sla_minutes": 15}, 201)},
    "admin-queue-detail": {"who": "admin", "path": "/admin/queues/{queue}", "GET": 200,
                           "PATCH": ({"sla_minutes": 30}, 200), "DELETE": (None, 204)},
    "admin-rule-list": {"who": "admin", "path": "/admin/rules", "GET": 200,
                        "POST": ({"name": "VIPs", "conditions": [{"field": "vip", "op": "is", "value": True}],
                                  "actions": {"queue": "care"}}, 201)},
    "admin-rule-detail": {"who": "admin", "path": "/admin/rules/{rule}", "GET": 200,
                          "PATCH": ({"enabled": False}, 200), "DELETE": (None, 204)},
    "admin-intent-list": {"who": "admin", "path": "/admin/intents", "GET": 200,
                          "POST": ({"slug": "warranty", "name": "Warranty", "examples": ["is it under warranty"]},
                                   201)},
    "admin-intent-detail": {"who": "admin", "path": "/admin/intents/{intent}", "GET": 200,
                            "PATCH": ({"priority_weight": 0.2}, 200), "DELETE": (None, 204)},
    "admin-webhook-list": {"who": "admin", "path": "/admin/webhooks", "GET": 200,
                           "POST": ({"name": "n", "url": "http://127.0.0.1:9/x", "events": ["case.created"]}, 201)},
    "admin-webhook-detail": {"who": "admin", "path": "/admin/webhooks/{subscription}", "GET": 200,
                             "PATCH": ({"enabled": False}, 200), "DELETE": (None, 204)},
    "admin-webhook-delivery-list": {"who": "admin", "path": "/admin/webhook-deliveries", "GET": 200},
    "admin-webhook-delivery-detail": {"who": "admin", "path": "/admin/webhook-deliveries/{delivery}", "GET": 200},
    "admin-webhook-delivery-replay": {"who": "admin", "path": "/admin/webhook-deliveries/{delivery}/replay",
                                      "POST": ({}, 200)},
}
PUBLIC = {"schema", "docs", "not-found"}  # they describe the API, or say a route does not exist


def api_route_names() -> set[str]:
    resolver = next(p for p in get_resolver().url_patterns
                    if isinstance(p, URLResolver) and str(p.pattern) == "api/v1/")
    return {p.name for p in resolver.url_patterns if isinstance(p, URLPattern)}


def test_matrix_covers_every_route():
    assert api_route_names() == set(MATRIX) | PUBLIC


@pytest.fixture
def world(db, team_a, team_b, connector_a, connector_b, agent_a, supervisor_a, agent_b, admin_user,
          django_user_model):
    case = open_case(connector_a, SECRET, author="cust-a", email="a@example.com", email_verified=True)
    second = open_case(connector_a, "Second customer of team A", author="cust-a2", email="a2@example.com",
                       email_verified=True)
    open_case(connector_b, "Team B's own message", author="cust-b")
    add_note(agent_a, case.pk, f"note {SECRET}")
    message = Message.objects.filter(conversation=case.conversation).first()
    contact = message.author
    now = timezone.now()
    alert = Alert.objects.create(team=team_a, kind="volume", dimension="team", key="team-a",
                                 label=SECRET, window_start=now, window_end=now, observed=9, expected=1, score=5)
    rollups.rebuild()
    subscription, _ = outbound.subscribe(admin_user, SECRET, "http://127.0.0.1:9/hook", ["case.created"])
    delivery = WebhookDelivery.objects.create(subscription=subscription, event_id=uuid.uuid4(),
                                              event_type="case.created", payload={"secret": SECRET},
                                              next_attempt_at=timezone.now() + timedelta(days=2))
    return {
        "subscription": subscription.pk, "delivery": delivery.pk,
        "case": case.pk, "message": message.pk, "conversation": case.conversation_id, "contact": contact.pk,
        "customer": contact.customer_id, "customer2": second.conversation.contact.customer_id, "alert": alert.pk,
        "connector": connector_a.pk, "team": team_a.pk, "agent": agent_a.pk, "queue": team_a.queues.first().pk,
        "rule": RoutingRule.objects.create(name=SECRET, conditions=[], actions={}).pk,
        "intent": (Intent.objects.first() or Intent.objects.create(slug="x-intent", name="X")).pk,
        "supervisor_b": make_user(django_user_model, "supervisor_b", Role.SUPERVISOR, [team_b]),
        "proactive-message": proactive.send_proactive_message(agent_a, case.pk, text=f"First {SECRET}",
                                                              key="iso-p1").pk,
    }


def _fill(value, world):
    text = json.dumps(value)
    for name, obj in world.items():
        if isinstance(obj, int):
            text = text.replace(f'"{{{name}}}"', str(obj)).replace(f"{{{name}}}", str(obj))
    return json.loads(text)


def _state(world) -> str:
    """Everything of team A an outsider's request could change."""
    case = Case.objects.get(pk=world["case"])
    return json.dumps([
        case.status, case.tags, case.assignee_id, Note.objects.count(), Reply.objects.count(),
        Correction.objects.count(), list(Customer.objects.order_by("id").values("id", "vip", "display_name")),
        Alert.objects.get(pk=world["alert"]).status, Connector.objects.get(pk=world["connector"]).enabled,
        list(WebhookSubscription.objects.values("id", "enabled")),
        list(Team.objects.order_by("id").values("id", "name", "slug")), list(Team.members.through.objects.values()),
        list(Queue.objects.order_by("id").values("id", "name", "sla_minutes")),
        list(RoutingRule.objects.order_by("id").values("id", "name", "enabled", "conditions", "actions")),
        list(Intent.objects.order_by("id").values("id", "name", "priority_weight", "enabled")),
        list(WebhookDelivery.objects.values("id", "status", "next_attempt_at")),
    ], default=str)


def _team_a_ids(world) -> set[tuple[str, int]]:
    return {(k, v) for k, v in world.items() if isinstance(v, int)}


@pytest.mark.parametrize("name", sorted(MATRIX))
def test_matrix_outsider_sees_and_changes_nothing(name, world, agent_b, settings):
    settings.CXM_API_RATE = "10000/min"
    row = MATRIX[name]
    outsider = world["supervisor_b"] if row["who"] in ("viewer", "admin") else agent_b
    api = Api(token_for(outsider))
    path = _fill(row["path"], world)
    for method in ("GET", "POST", "PATCH", "DELETE"):
        if method not in row:
            continue
        before = _state(world)
        data = _fill(row[method][0], world) if method != "GET" else None
        response = api.get(path) if method == "GET" else api.send(method, path, data)
        assert SECRET not in response.content.decode(), (name, method)
        assert _state(world) == before, (name, method)
        if row["who"] == "admin":
            assert response.status_code == 403, (name, method)  # outsider's token has no admin scope
        elif "{" in row["path"]:
            assert response.status_code == 404, (name, method, response.content)
        elif method == "GET":
            assert response.status_code == 200
            results = response.json().get("results", [])
            if name.endswith("-list"):
                kind = name.removesuffix("-list")
                assert all((kind, r["id"]) not in _team_a_ids(world) for r in results), (name, results)
        else:  # a POST to a list (a correction naming team A's case): refused, nothing stored
            assert response.status_code in (400, 404), (name, response.content)


@pytest.mark.parametrize("name", sorted(MATRIX))
def test_matrix_owner_may(name, world, agent_a, supervisor_a, admin_user, settings):
    settings.CXM_API_RATE = "10000/min"
    row = MATRIX[name]
    owner = {"agent": agent_a, "viewer": supervisor_a, "admin": admin_user}[row["who"]]
    api = Api(token_for(owner))
    path = _fill(row["path"], world)
    for method in ("GET", "POST", "PATCH", "DELETE"):
        if method not in row:
            continue
        if method == "GET":
            response = api.get(path)
            assert response.status_code == row["GET"], (name, response.content)
            continue
        body, expected = row[method]
        response = api.send(method, path, _fill(body, world))
        assert response.status_code == expected, (name, method, response.content)


def test_matrix_agent_without_role_for_insight_gets_403(world, agent_a):
    api = Api(token_for(agent_a))
    assert api.get("/insight/panels/volume").status_code == 403
    assert api.get(f"/alerts/{world['alert']}").status_code == 403


def test_matrix_panel_numbers_match_the_console(world, supervisor_a):
    """The API's panel is the dashboard's: same filters, same numbers, same access."""
    api = Api(token_for(supervisor_a))
    query = {"channel": "web", "granularity": "day"}
    from_api = api.get("/insight/panels/volume", query).json()
    console = Client()
    console.force_login(supervisor_a)
    from_console = console.get("/console/insight/panels/volume/", query, HTTP_ACCEPT="application/json").json()
    assert from_api == from_console
    assert from_api["totals"]["total"] == 2  # team A's two messages, not team B's


def test_matrix_outsider_panels_count_only_their_team(world, supervisor_a):
    outsider = Api(token_for(world["supervisor_b"]))
    assert outsider.get("/insight/panels/volume").json()["totals"]["total"] == 1  # team B's own

