"""The console as an agent's daily tool: the inbox in the order of what needs an agent now, counts
that agree, `n` that skips cases waiting on the customer, side-panel fields that follow live
events, each role's landing page, and words instead of slugs."""

from __future__ import annotations

import re

from django.contrib.auth import get_user_model
from django.urls import reverse

from responses import replies
from responses.models import AgentProfile, Case, CaseStatus, ConsoleEvent, Presence
from tests.responses.conftest import PASSWORD, open_case


def everyone_offline():
    AgentProfile.objects.update(presence=Presence.OFFLINE)


def row_ids(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<tr class="case-row[^"]*" id="case-(\d+)"', html)]


def test_inbox_waiting_on_customer_sinks_below_lower_priority(client, agent_a, connector_a):
    everyone_offline()
    answered = open_case(connector_a, "answered", author="c-1", priority=0.96)
    Case.objects.filter(pk=answered.pk).update(status=CaseStatus.PENDING)
    low = open_case(connector_a, "low", author="c-2", priority=0.05)
    mid = open_case(connector_a, "mid", author="c-3", priority=0.30)
    client.force_login(agent_a)

    html = client.get("/console/").content.decode()

    assert row_ids(html) == [mid.pk, low.pk, answered.pk]
    assert "Pending customer" in html


def test_inbox_earlier_sla_due_first_at_equal_priority(client, agent_a, connector_a):
    everyone_offline()
    later = open_case(connector_a, "later", author="c-1", priority=0.5)
    sooner = open_case(connector_a, "sooner", author="c-2", priority=0.5)
    due = Case.objects.get(pk=later.pk).sla_due_at or Case.objects.get(pk=later.pk).opened_at
    Case.objects.filter(pk=later.pk).update(sla_state="ok", sla_due_at=due.replace(year=due.year + 1))
    Case.objects.filter(pk=sooner.pk).update(sla_state="ok", sla_due_at=due)
    client.force_login(agent_a)

    assert row_ids(client.get("/console/").content.decode()) == [sooner.pk, later.pk]


def test_row_sort_keys_order_rows_as_the_server_does(client, agent_a, connector_a):
    """console.js places a live row by its data-sort: sorting by it must give the server's order."""
    everyone_offline()
    cases = [open_case(connector_a, f"case {n}", author=f"c-{n}", priority=p)
             for n, p in enumerate((0.2, 0.9, 0.5, 0.9, 0.1))]
    Case.objects.filter(pk=cases[1].pk).update(status=CaseStatus.PENDING)
    Case.objects.filter(pk=cases[4].pk).update(sla_state="breached")
    client.force_login(agent_a)

    html = client.get("/console/").content.decode()

    keys = {int(i): [float(x) for x in key.split(",")]
            for i, key in re.findall(r'id="case-(\d+)" data-case-id="\d+" data-status="\w+" data-sort="([^"]+)"', html)}
    assert len(keys) == 5
    assert sorted(keys, key=lambda i: keys[i]) == row_ids(html)
    assert row_ids(html)[0] == cases[4].pk and row_ids(html)[-1] == cases[1].pk


def test_next_case_never_opens_a_case_waiting_on_the_customer(client, agent_a, connector_a):
    everyone_offline()
    answered = open_case(connector_a, "answered", author="c-1", priority=0.99)
    Case.objects.filter(pk=answered.pk).update(status=CaseStatus.PENDING)
    open_one = open_case(connector_a, "open", author="c-2", priority=0.1)
    client.force_login(agent_a)

    assert client.get("/console/next/")["Location"] == f"/console/cases/{open_one.pk}/"
    assert client.get(f"/console/next/?after={open_one.pk}")["Location"] == "/console/"  # nothing else to do
    Case.objects.filter(pk=open_one.pk).update(status=CaseStatus.PENDING)
    assert client.get("/console/next/")["Location"] == "/console/"


def test_heading_count_is_the_sidebar_count_it_follows(client, agent_a, connector_a):
    everyone_offline()
    case = open_case(connector_a, "one", author="c-1")
    open_case(connector_a, "two", author="c-2")
    client.force_login(agent_a)

    html = client.get("/console/").content.decode()
    assert re.search(r'class="heading-count" data-count="active">2<', html)
    queue = client.get(f"/console/?queue={case.queue_id}").content.decode()
    assert re.search(rf'class="heading-count" data-count-queue="{case.queue_id}">2<', queue)
    held = client.get("/console/?queue=held").content.decode()
    counts = client.get("/console/counts/").json()
    assert re.search(rf'class="heading-count" data-count="held">{counts["held"]}<', held)


def test_console_home_lands_each_role_where_its_work_is(client, agent_a, supervisor_a, manager_a, admin_user):
    client.force_login(agent_a)
    assert client.get("/console/").status_code == 200  # the inbox itself
    client.force_login(supervisor_a)
    assert client.get("/console/").status_code == 200
    client.force_login(manager_a)
    assert client.get("/console/")["Location"] == reverse("console:insight")
    assert client.get("/console/queue/").status_code == 200  # the inbox is still one click away
    client.force_login(admin_user)
    assert client.get("/console/")["Location"] == reverse("console:connectors")
    assert client.get("/console/?queue=mine").status_code == 200


def test_login_lands_a_manager_on_the_dashboards(client, manager_a):
    response = client.post(reverse("login"), {"username": manager_a.username, "password": PASSWORD}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("console:insight")


def test_manager_sees_no_presence_picker_agents_do(client, agent_a, manager_a):
    client.force_login(manager_a)
    assert 'id="presence"' not in client.get("/console/queue/").content.decode()
    client.force_login(agent_a)
    assert 'id="presence"' in client.get("/console/queue/").content.decode()


def test_channel_badge_names_the_channel_from_its_connector(client, agent_a, connector_a):
    everyone_offline()
    case = open_case(connector_a, "hello", author="c-1")
    client.force_login(agent_a)

    row = client.get(f"/console/cases/{case.pk}/row/").content.decode()
    page = client.get(f"/console/cases/{case.pk}/").content.decode()

    assert case.conversation.channel == "web"
    assert 'title="Website"' in row and "<svg" in row and 'fill="#3b6fd8"' in row
    assert "Website" in page and ">WEB<" not in page and ">WEB<" not in row


def test_case_updated_event_carries_first_response_and_sla(agent_a, connector_a):
    """The side panel's "First response" and SLA follow this event, without a reload."""
    case = open_case(connector_a, "help", author="c-1")
    before = ConsoleEvent.objects.order_by("-id").first().pk

    replies.send_reply(agent_a, case.pk, "On it!", idempotency_key="k-first-response")

    event = ConsoleEvent.objects.filter(pk__gt=before, type="case.updated").order_by("-id").first()
    summary = event.payload["case"]
    assert summary["first_response_at"] and summary["opened_at"]
    assert summary["sla_state"] == "" and summary["sla_due_at"] is None
    assert summary["status"] == CaseStatus.PENDING


def test_canned_reply_signs_with_a_name_not_the_username(connector_a, django_user_model):
    case = open_case(connector_a, "hi", author="c-1")
    nameless = get_user_model().objects.create_user("maria.k", password=PASSWORD)
    named = get_user_model().objects.create_user("agent7", password=PASSWORD, first_name="Ana", last_name="Silva")

    assert replies.render_canned("I'm {agent_first_name} ({agent_name})", case, nameless) == "I'm Maria (Maria K)"
    assert replies.render_canned("I'm {agent_first_name} ({agent_name})", case, named) == "I'm Ana (Ana Silva)"


def test_chips_name_the_intent_and_drop_one_that_repeats_the_lane():
    from responses.views.inbox import name_chips

    names = {"churn_threat": "Churn threat"}
    chips = name_chips({"intent": {"label": "churn_threat", "confidence": 0.69}}, "issue", names)
    assert chips["intent"]["name"] == "Churn threat" and not chips["intent"]["repeats_lane"]
    assert name_chips({"intent": {"label": "spam"}}, "noise", names)["intent"]["repeats_lane"]
    assert name_chips({"intent": {"label": "follow_up"}}, "issue", {})["intent"]["name"] == "Follow up"
    assert name_chips({}, "issue", names) == {}


def test_case_page_carries_lane_names_for_live_updates(client, agent_a, connector_a):
    """console.js names a lane that changed live from this list, never by its slug."""
    case = open_case(connector_a, "hello", author="c-1")
    client.force_login(agent_a)
    html = client.get(f"/console/cases/{case.pk}/").content.decode()
    script = html[html.index('<script id="lane-names" type="application/json">'):]
    assert '["triage", "Needs a look"]' in script[:script.index("</script>")]
    assert 'id="case-lane"' in html and 'id="case-first-response"' in html and 'id="case-sla"' in html
