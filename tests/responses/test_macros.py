"""Macros: supervisors manage them, agents apply them in one click, broken ones say why."""

from __future__ import annotations

import json

from django.urls import reverse

from responses.models import Case, CaseActivity, CaseStatus, Macro, Reply
from tests.responses.conftest import open_case

JSON = "application/json"
STEPS = [
    {"type": "add_tags", "tags": ["refund", "vip"]},
    {"type": "remove_tags", "tags": ["new"]},
    {"type": "priority", "value": 0.9},
    {"type": "reply", "text": "Hi {customer.first_name}, {agent.first_name} from {brand} here: refund on its way."},
    {"type": "status", "value": "pending"},
]


def post(client, url, data):
    return client.post(url, data=json.dumps(data), content_type=JSON, HTTP_ACCEPT=JSON)


def apply_url(case, macro):
    return reverse("console:case-macro", kwargs={"case_id": case.pk, "macro_id": macro.pk})


def test_macro_supervisor_creates_agent_applies_everything_once(client, supervisor_a, agent_a, team_a, connector_a,
                                                                settings, django_capture_on_commit_callbacks):
    settings.CXM_BRAND_NAME = "Acme"
    case = open_case(connector_a, name="Alice Smith")
    Case.objects.filter(pk=case.pk).update(tags=["new", "keep"])
    client.force_login(supervisor_a)
    response = post(client, reverse("console:macro-new"), {"title": "Refund", "team": team_a.pk, "actions": STEPS})
    assert response.status_code == 200, response.content
    macro = Macro.objects.get(pk=response.json()["id"])

    client.force_login(agent_a)
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, apply_url(case, macro), {"idempotency_key": "k-1"})
    assert response.status_code == 200, response.content
    case.refresh_from_db()
    assert case.tags == ["keep", "refund", "vip"]
    assert case.priority == 0.9
    assert case.status == CaseStatus.PENDING
    reply = Reply.objects.get(case=case)
    assert reply.text == "Hi Alice, Agent from Acme here: refund on its way."
    assert reply.idempotency_key.startswith(f"macro-{macro.pk}-")
    assert CaseActivity.objects.filter(case=case, kind="macro").count() == 1

    # The same click again (a retry): nothing runs twice.
    response = post(client, apply_url(case, macro), {"idempotency_key": "k-1"})
    assert response.status_code == 200 and response.json()["already"] is True
    assert Reply.objects.filter(case=case).count() == 1
    assert CaseActivity.objects.filter(case=case, kind="macro").count() == 1


def test_macro_resolve_with_reply_resolves_on_delivery(agent_a, supervisor_a, team_a, connector_a):
    from responses import macros

    case = open_case(connector_a)
    macro = Macro.objects.create(team=team_a, title="Close", actions=[{"type": "reply", "text": "Done!"},
                                                                      {"type": "status", "value": "resolved"}])
    applied = macros.apply_macro(agent_a, case.pk, macro.pk)
    assert applied.reply.resolve_on_delivery
    assert Case.objects.get(pk=case.pk).status == CaseStatus.PENDING  # resolved once the reply is out


def test_macro_assigning_a_deleted_or_departed_user_is_refused_and_flagged(client, supervisor_a, agent_a, agent_a2,
                                                                           team_a, connector_a):
    case = open_case(connector_a)
    gone = Macro.objects.create(team=team_a, title="To Agent2", actions=[{"type": "assign", "user": agent_a2.pk},
                                                                         {"type": "add_tags", "tags": ["x"]}])
    client.force_login(agent_a)
    team_a.members.remove(agent_a2)
    response = post(client, apply_url(case, gone), {})
    assert response.status_code == 400
    assert "no longer an agent of Team A" in response.json()["reason"]
    agent_a2.delete()
    response = post(client, apply_url(case, gone), {})
    assert response.status_code == 400 and "deleted" in response.json()["reason"]
    assert Case.objects.get(pk=case.pk).tags == []  # nothing half-applied
    listing = client.get(reverse("console:macro-list"), HTTP_ACCEPT=JSON).json()["macros"]
    assert listing[0]["problems"] and "deleted" in listing[0]["problems"][0]
    page = client.get(reverse("console:macro-list"))
    assert "deleted" in page.content.decode()


def test_macro_bad_input_gets_400_with_a_reason(client, supervisor_a, team_a, team_b):
    client.force_login(supervisor_a)
    url = reverse("console:macro-new")
    for actions in ([], [{"type": "explode"}], [{"type": "status", "value": "gone"}],
                    [{"type": "priority", "value": 7}], [{"type": "add_tags", "tags": ["<script>"]}],
                    [{"type": "assign", "user": "someone"}], [{"type": "reply", "text": ""}],
                    [{"type": "reply", "text": "a"}, {"type": "reply", "text": "b"}], "not a list",
                    [{"type": "assign", "user": 999999}]):
        response = post(client, url, {"title": "Bad", "team": team_a.pk, "actions": actions})
        assert response.status_code == 400, actions
        assert response.json()["reason"]
    response = post(client, url, {"title": "Other team", "team": team_b.pk, "actions": STEPS})
    assert response.status_code == 400
    response = post(client, url, {"title": "Global", "actions": STEPS})
    assert response.status_code == 400 and "admins" in response.json()["reason"]
    assert Macro.objects.count() == 0


def test_macro_form_round_trip(client, supervisor_a, team_a):
    client.force_login(supervisor_a)
    response = client.post(reverse("console:macro-new"), {"title": "Form one", "team": team_a.pk, "add_tags": "a, b",
                                                          "status": "pending", "reply": "Hello {customer.name}",
                                                          "assignee": "me", "priority": "0.5"})
    assert response.status_code == 302
    macro = Macro.objects.get(title="Form one")
    assert [s["type"] for s in macro.actions] == ["add_tags", "assign", "priority", "reply", "status"]
    page = client.get(reverse("console:macro-edit", kwargs={"macro_id": macro.pk}))
    assert page.status_code == 200 and "Hello {customer.name}" in page.content.decode()
    response = client.post(reverse("console:macro-edit", kwargs={"macro_id": macro.pk}),
                           {"title": "Form one", "team": team_a.pk, "priority": "3"})
    assert response.status_code == 400


def test_macro_agents_apply_but_do_not_manage_and_outsiders_see_nothing(client, agent_a, agent_b, team_a,
                                                                        connector_a):
    macro = Macro.objects.create(team=team_a, title="Team A only", actions=[{"type": "add_tags", "tags": ["x"]}])
    client.force_login(agent_a)
    assert post(client, reverse("console:macro-new"), {"title": "x", "actions": STEPS}).status_code == 403
    assert post(client, reverse("console:macro-delete", kwargs={"macro_id": macro.pk}), {}).status_code == 403
    client.force_login(agent_b)
    assert client.get(reverse("console:macro-list"), HTTP_ACCEPT=JSON).json()["macros"] == []
    case = open_case(connector_a)
    assert post(client, apply_url(case, macro), {}).status_code == 404
    assert Macro.objects.filter(pk=macro.pk).exists()
