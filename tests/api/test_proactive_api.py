"""POST/GET /api/v1/proactive-messages: the console's proactive rules over the API (responses.proactive
is the one implementation): an approved WhatsApp template goes out once through the normal delivery
to the fake Graph API, the same Idempotency-Key sends once, free text outside the 24-hour window,
listen-only sources, opted-out customers and the frequency cap are refused with the console's
reasons (and Retry-After on the cap), nothing is stored on a refusal (not even the case), the
channel can be chosen, and lists show status and stay within the token's teams."""

from __future__ import annotations

import pytest

from listening.models import Customer, Message
from responses.models import ACTIVE_STATUSES, Case, CaseActivity, ProactiveMessage, Reply
from responses.routing import route_messages
from tests.api.conftest import Api, token_for
from tests.responses.conftest import classify, open_case
from tests.responses.test_proactive import WA_ID, wrote_on_whatsapp

TEMPLATE = {"template": "device_help", "values": ["Ana", "thermostat"]}


def ana_wrote(connector, hours_ago: float, *, resolve: bool = True) -> Customer:
    """Ana wrote on WhatsApp `hours_ago`; her case is resolved (so nothing is active)."""
    customer = wrote_on_whatsapp(connector, hours_ago)
    if resolve:
        Case.objects.update(status="resolved")
    return customer


@pytest.fixture
def api(agent_a, settings):
    settings.CXM_API_RATE = "10000/min"
    return Api(token_for(agent_a))


def send(api, body, key="k-1"):
    return api.post("/proactive-messages", body, headers={"Idempotency-Key": key} if key else None)


def test_proactive_api_sends_a_template_once_on_a_new_proactive_case(api, whatsapp, graph, agent_a,
                                                                     django_capture_on_commit_callbacks):
    ana = ana_wrote(whatsapp, 72)
    with django_capture_on_commit_callbacks(execute=True):
        first = send(api, {"customer": ana.pk, **TEMPLATE})
    assert first.status_code == 201, first.content
    body = first.json()
    assert body["channel"] == "whatsapp" and body["customer"] == ana.pk and body["key"] == f"api-{agent_a.pk}-k-1"
    assert body["template"] == {"name": "device_help", "language": "en", "values": ["Ana", "thermostat"]}
    assert body["text"] == "Hi Ana, your thermostat reported errors. Reply here and we will help."
    assert body["sent_by"]["id"] == agent_a.pk
    case = Case.objects.get(pk=body["case"])
    assert case.status in ACTIVE_STATUSES and "proactive" in case.tags and case.queue.slug == "care"
    assert case.conversation.external_id.startswith("proactive:")
    # The same key and body: the same answer, marked replayed; nothing sent again.
    with django_capture_on_commit_callbacks(execute=True):
        again = send(api, {"customer": ana.pk, **TEMPLATE})
    assert again.status_code == 201 and again.json()["id"] == body["id"]
    assert again["Idempotent-Replayed"] == "true"
    assert send(api, {"customer": ana.pk, "template": "device_help", "values": ["Bo", "x"]}).status_code == 422
    (call,) = graph.template_calls()
    assert call.json()["to"] == WA_ID and call.json()["template"]["name"] == "device_help"
    # Its status, read back.
    read = api.get(f"/proactive-messages/{body['id']}").json()
    assert read["status"] == Reply.Status.DELIVERED and read["delivered_at"] and read["error"] == ""
    listed = api.get("/proactive-messages", {"customer": ana.pk, "status": "delivered"}).json()["results"]
    assert [m["id"] for m in listed] == [body["id"]]
    assert api.get("/proactive-messages", {"status": "failed"}).json()["results"] == []
    assert api.get("/proactive-messages", {"status": "nope"}).status_code == 400
    activity = CaseActivity.objects.get(case=case, kind="proactive")
    assert "approved template “device_help”" in activity.text


def test_proactive_api_refusals_carry_the_console_reasons_and_store_nothing(api, whatsapp, graph, settings,
                                                                          django_capture_on_commit_callbacks):
    settings.CXM_PROACTIVE_CAP, settings.CXM_PROACTIVE_CAP_HOURS = 1, 24
    ana = ana_wrote(whatsapp, 30)
    cases_before = Case.objects.count()
    refused = send(api, {"customer": ana.pk, "text": "Hello Ana!"}, key="r-1")
    assert refused.status_code == 400 and refused["Content-Type"] == "application/problem+json"
    assert "24 hours" in refused.json()["detail"] and "template" in refused.json()["detail"]
    unknown = send(api, {"customer": ana.pk, "template": "nope"}, key="r-2")
    assert unknown.status_code == 400 and "not an approved" in unknown.json()["detail"]
    wrong = send(api, {"customer": ana.pk, "template": "device_help", "values": ["Ana"]}, key="r-3")
    assert wrong.status_code == 400 and "takes 2 value" in wrong.json()["detail"]
    assert send(api, {"customer": ana.pk, **TEMPLATE}, key=None).status_code == 400  # no key at all
    assert send(api, {"customer": ana.pk}, key="r-4").status_code == 400  # neither text nor template
    bad_channel = send(api, {"customer": ana.pk, "channel": "pigeon", **TEMPLATE}, key="r-5")
    assert bad_channel.status_code == 400 and "pigeon" in bad_channel.content.decode()
    Customer.objects.update(proactive_opt_out=True)
    opted = send(api, {"customer": ana.pk, **TEMPLATE}, key="r-6")
    assert opted.status_code == 409 and opted.json()["reason"] == "opted_out"
    assert Case.objects.count() == cases_before and not ProactiveMessage.objects.exists()  # no case left behind
    Customer.objects.update(proactive_opt_out=False)
    with django_capture_on_commit_callbacks(execute=True):
        assert send(api, {"customer": ana.pk, **TEMPLATE}, key="r-7").status_code == 201
    capped = send(api, {"customer": ana.pk, **TEMPLATE}, key="r-8")
    assert capped.status_code == 429 and "at most 1" in capped.json()["detail"]
    assert 23 * 3600 < int(capped["Retry-After"]) <= 24 * 3600
    assert ProactiveMessage.objects.count() == 1 and len(graph.template_calls()) == 1


def test_proactive_api_listen_only_source_and_the_channel_choice(api, whatsapp, graph, make_connector, team_a,
                                                                django_capture_on_commit_callbacks):
    rss = make_connector("rss", slug="news", config={"feed_url": "https://example.com/feed"})
    team_a.connectors.add(rss)
    rita_case = open_case(rss, author="reader-1", email="rita@example.com", email_verified=True)
    rita = rita_case.conversation.contact.customer
    listen_only = send(api, {"customer": rita.pk, "text": "Hello"}, key="c-1")
    assert listen_only.status_code == 400 and "only listens" in listen_only.json()["detail"]
    ana = ana_wrote(whatsapp, 2)  # the window is open: free text goes
    never = send(api, {"customer": ana.pk, "channel": "sms", "text": "Hi"}, key="c-2")
    assert never.status_code == 400 and "has not written on SMS" in never.json()["detail"]
    with django_capture_on_commit_callbacks(execute=True):
        sent = send(api, {"customer": ana.pk, "channel": "whatsapp", "text": "We saw your errors."}, key="c-3")
    assert sent.status_code == 201, sent.content
    (call,) = graph.whatsapp_calls()
    assert call.json()["type"] == "text" and call.json()["text"]["body"] == "We saw your errors."
    # An explicit case on another channel is refused: a message goes on its own channel's case.
    other = send(api, {"customer": ana.pk, "case": rita_case.pk, "text": "x"}, key="c-4")
    assert other.status_code == 400 and "not this customer's" in other.json()["detail"]


def test_proactive_api_joins_the_customers_active_case(api, whatsapp, graph, django_capture_on_commit_callbacks):
    ana = ana_wrote(whatsapp, 2, resolve=False)
    message = Message.objects.get()
    classify(message)
    route_messages([message.pk])
    active = Case.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        sent = send(api, {"customer": ana.pk, "text": "Following up on your thermostat."}, key="j-1")
    assert sent.status_code == 201 and sent.json()["case"] == active.pk and Case.objects.count() == 1


def test_proactive_api_outsiders_and_scopes(whatsapp, graph, agent_a, agent_b, manager_a, settings,
                                            django_capture_on_commit_callbacks):
    settings.CXM_API_RATE = "10000/min"
    ana = ana_wrote(whatsapp, 72)
    with django_capture_on_commit_callbacks(execute=True):
        mine = send(Api(token_for(agent_a)), {"customer": ana.pk, **TEMPLATE}).json()
    outsider = Api(token_for(agent_b))
    refused = send(outsider, {"customer": ana.pk, **TEMPLATE}, key="o-1")
    assert refused.status_code == 404 and "Ana" not in refused.content.decode()
    assert outsider.get(f"/proactive-messages/{mine['id']}").status_code == 404
    assert outsider.get("/proactive-messages").json()["results"] == []
    reader = Api(token_for(agent_a, ["cases:read"]))
    assert send(reader, {"customer": ana.pk, **TEMPLATE}, key="o-2").status_code == 403
    assert reader.get(f"/proactive-messages/{mine['id']}").status_code == 200
    assert send(Api(token_for(manager_a)), {"customer": ana.pk, **TEMPLATE}, key="o-3").status_code == 403
    assert ProactiveMessage.objects.count() == 1


def test_proactive_api_is_in_the_schema(client):
    schema = client.get("/api/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    assert "post" in schema["paths"]["/api/v1/proactive-messages"]
    assert "get" in schema["paths"]["/api/v1/proactive-messages/{id}"]
