"""Admins write teams, queues, routing rules and intents over the API: validation answers a 4xx
problem with a reason and changes nothing; what is written takes effect (a rule routes the next
message; an intent's examples are stored for the refit); only an admin's admin:write token may."""

from __future__ import annotations

import pytest

from learning.models import Intent, IntentExample
from responses.models import Case, Queue, Role, RoutingRule, Team
from tests.api.conftest import Api, token_for
from tests.responses.conftest import make_user, open_case

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_api(admin_user, settings):
    settings.CXM_API_RATE = "10000/min"
    return Api(token_for(admin_user))


def _problem(response, status: int, reason: str | None = None) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["detail"]
    if reason:
        assert body["reason"] == reason, body
    return body


def test_admin_writes_team_with_default_queues_and_members(admin_api, agent_a, connector_b):
    made = admin_api.post("/admin/teams", {"name": "Returns desk", "members": [agent_a.pk],
                                           "connectors": [connector_b.pk]})
    assert made.status_code == 201, made.content
    body = made.json()
    assert (body["slug"], body["members"], body["connectors"]) == ("returns-desk", [agent_a.pk], [connector_b.pk])
    team = Team.objects.get(pk=body["id"])
    assert sorted(team.queues.values_list("slug", flat=True)) == ["amplify", "care", "recover", "triage"]
    changed = admin_api.patch(f"/admin/teams/{team.pk}", {"members": []})
    assert changed.status_code == 200 and changed.json()["members"] == []
    assert not team.members.exists()


def test_admin_writes_team_refuses_clashes_and_bad_members(admin_api, team_a, django_user_model):
    before = list(Team.objects.values_list("id", "name"))
    _problem(admin_api.post("/admin/teams", {"name": team_a.name}), 409, "conflict")
    _problem(admin_api.post("/admin/teams", {"name": "Other", "slug": team_a.slug}), 409, "conflict")
    _problem(admin_api.post("/admin/teams", {"name": "Other", "slug": "Not A Slug!"}), 400, "invalid")
    no_role = django_user_model.objects.create_user("no-role", password="x-very-long-pass")
    body = _problem(admin_api.post("/admin/teams", {"name": "Other", "members": [no_role.pk]}), 400)
    assert "console role" in body["detail"]
    _problem(admin_api.post("/admin/teams", {"name": "Other", "connectors": [999999]}), 400)
    _problem(admin_api.post("/admin/teams", {"name": ""}), 400)
    _problem(admin_api.post("/admin/teams", {"name": "x" * 121}), 400)
    assert list(Team.objects.values_list("id", "name")) == before


def test_admin_writes_team_with_cases_is_not_deleted(admin_api, connector_a, team_a):
    case = open_case(connector_a, "Where is my parcel?")
    assert case.team_id == team_a.pk
    body = _problem(admin_api.send("DELETE", f"/admin/teams/{team_a.pk}"), 409, "conflict")
    assert "cases" in body["detail"]
    assert Case.objects.filter(pk=case.pk, team=team_a).exists()
    empty = admin_api.post("/admin/teams", {"name": "Empty"}).json()
    assert admin_api.send("DELETE", f"/admin/teams/{empty['id']}").status_code == 204
    assert not Team.objects.filter(pk=empty["id"]).exists()
    _problem(admin_api.send("DELETE", f"/admin/teams/{empty['id']}"), 404, "not_found")


def test_admin_writes_queue_validation(admin_api, team_a, team_b):
    made = admin_api.post("/admin/queues", {"team": team_a.pk, "name": "VIP care", "sla_minutes": 15,
                                            "lane": ""})
    assert made.status_code == 201, made.content
    queue = made.json()
    assert (queue["slug"], queue["sla_minutes"], queue["team"]) == ("vip-care", 15, team_a.pk)
    count = Queue.objects.count()
    _problem(admin_api.post("/admin/queues", {"team": team_a.pk, "name": "VIP care"}), 409, "conflict")
    _problem(admin_api.post("/admin/queues", {"team": team_a.pk, "name": "Q", "lane": "noise"}), 400)
    _problem(admin_api.post("/admin/queues", {"team": team_a.pk, "name": "Q", "sla_minutes": 0}), 400)
    _problem(admin_api.post("/admin/queues", {"team": 999999, "name": "Q"}), 404, "not_found")
    assert Queue.objects.count() == count
    _problem(admin_api.patch(f"/admin/queues/{queue['id']}", {"team": team_b.pk}), 400)
    changed = admin_api.patch(f"/admin/queues/{queue['id']}", {"sla_minutes": None, "auto_assign": False})
    assert changed.status_code == 200
    assert Queue.objects.filter(pk=queue["id"], sla_minutes=None, auto_assign=False, team=team_a).exists()


def test_admin_writes_rule_routes_the_next_message(admin_api, connector_a):
    made = admin_api.post("/admin/rules", {
        "name": "Web to VIP", "position": 1,
        "conditions": [{"field": "channel", "op": "in", "value": [connector_a.config.get("channel", "web")]}],
        "actions": {"tags": ["from-api-rule"], "priority_boost": 0.1}})
    assert made.status_code == 201, made.content
    case = open_case(connector_a, "My order never arrived")
    assert "from-api-rule" in case.tags
    admin_api.patch(f"/admin/rules/{made.json()['id']}", {"enabled": False})
    later = open_case(connector_a, "Still nothing", author="someone-else")
    assert "from-api-rule" not in later.tags


def test_admin_writes_rule_refuses_what_routing_cannot_read(admin_api):
    for body, words in (
        ({"name": "x", "conditions": [{"field": "mood", "op": "in", "value": ["sad"]}]}, "unknown field"),
        ({"name": "x", "conditions": [{"field": "priority", "op": "in", "value": ["high"]}]}, "priority takes"),
        ({"name": "x", "actions": {"explode": True}}, "unknown actions"),
        ({"name": "x", "actions": {"team": "no-such-team"}}, "no team's slug"),
        ({"name": "x", "actions": {"sla_minutes": -5}}, "sla_minutes"),
        ({"name": "x", "conditions": "all"}, ""),
    ):
        problem = _problem(admin_api.post("/admin/rules", body), 400)
        assert words in (problem["detail"] + str(problem.get("errors", ""))), problem
    assert not RoutingRule.objects.exists()


def test_admin_writes_intent_with_examples_and_a_fixed_slug(admin_api):
    made = admin_api.post("/admin/intents", {"slug": "warranty", "name": "Warranty", "lane": "issue",
                                             "priority_weight": 0.3,
                                             "examples": ["is this still under warranty", "warranty claim"]})
    assert made.status_code == 201, made.content
    intent = Intent.objects.get(slug="warranty")
    assert sorted(IntentExample.objects.filter(intent=intent).values_list("text", flat=True)) == [
        "is this still under warranty", "warranty claim"]
    _problem(admin_api.post("/admin/intents", {"slug": "warranty", "name": "Again"}), 409, "conflict")
    _problem(admin_api.patch(f"/admin/intents/{intent.pk}", {"slug": "guarantee"}), 400)
    _problem(admin_api.patch(f"/admin/intents/{intent.pk}", {"priority_weight": 5}), 400)
    _problem(admin_api.patch(f"/admin/intents/{intent.pk}", {"lane": "sideways"}), 400)
    assert admin_api.patch(f"/admin/intents/{intent.pk}", {"enabled": False, "examples": ["warranty claim"]}
                           ).json()["enabled"] is False
    assert IntentExample.objects.filter(intent=intent).count() == 2  # a known example is not added twice
    assert admin_api.send("DELETE", f"/admin/intents/{intent.pk}").status_code == 204
    assert not Intent.objects.filter(slug="warranty").exists()


def test_admin_writes_need_an_admin_write_token(admin_user, supervisor_a, team_a, settings, django_user_model):
    settings.CXM_API_RATE = "10000/min"
    read_only = Api(token_for(admin_user, ["admin:read"]))
    _problem(read_only.post("/admin/teams", {"name": "Nope"}), 403)
    _problem(read_only.patch(f"/admin/teams/{team_a.pk}", {"name": "Nope"}), 403)
    _problem(read_only.send("DELETE", f"/admin/queues/{team_a.queues.first().pk}"), 403)
    # A supervisor's token cannot hold admin scopes, and their other scopes do not reach here.
    supervisor = Api(token_for(supervisor_a))
    _problem(supervisor.post("/admin/rules", {"name": "Nope"}), 403)
    # An admin demoted after making the token: the token acts as its user, now no admin.
    demoted = make_user(django_user_model, "was-admin", Role.ADMIN, [])
    token = Api(token_for(demoted))
    demoted.cxm_profile.role = Role.SUPERVISOR
    demoted.cxm_profile.save()
    _problem(token.post("/admin/teams", {"name": "Nope"}), 403)
    assert Team.objects.filter(name__in=["Nope"]).count() == 0 and not RoutingRule.objects.exists()
    assert Team.objects.get(pk=team_a.pk).name == team_a.name
