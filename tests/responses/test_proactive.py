"""Proactive messages: care writes first. An approved WhatsApp template goes out once through the
normal delivery to the fake Graph API (the same key twice sends once); outside the 24-hour window
free text is refused, as are unknown templates, wrong values, listen-only sources, customers who
opted out and a customer over the frequency cap, each with its reason; a signal rule's "send a
proactive template" action sends on the case it opens, and a refusal is written on the case."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from listening.actions import ingest_messages
from listening.connectors.base import InboundAuthor, InboundMessage
from listening.models import Customer
from listening.signal_actions import ingest_signals, parse_signal
from responses import proactive
from responses.exceptions import InvalidRequest, NotAllowed
from responses.models import CaseActivity, CaseStatus, ProactiveMessage, Reply, SignalRule, SignalRuleFiring
from tests.fakes.meta import FakeGraph
from tests.responses.conftest import open_case

NUMBER_ID, WA_ID = "999000111222333", "15551234567"
ACCESS_TOKEN = "EAAGtest-token"
CREDENTIALS = {"app_secret": "0f1e2d3c4b5a69788796a5b4c3d2e1f0", "verify_token": "v", "access_token": ACCESS_TOKEN}
TEMPLATES = ["device_help | en | Hi {{1}}, your {{2}} reported errors. Reply here and we will help.",
             "order_update | pt_BR | Olá {{1}}!"]
JSON = "application/json"


@pytest.fixture
def graph(fake_provider):
    return FakeGraph(fake_provider, token=ACCESS_TOKEN)


@pytest.fixture
def whatsapp(team_a, make_connector, graph):
    connector = make_connector("meta", slug="acme-whatsapp", credentials=CREDENTIALS,
                               config={"api_base": graph.url, "phone_number_id": NUMBER_ID, "templates": TEMPLATES})
    team_a.connectors.add(connector)
    return connector


def wrote_on_whatsapp(connector, hours_ago: float, text: str = "Thermostat looks odd"):
    """Ana wrote on WhatsApp `hours_ago`; her case is routed and resolved. Returns the customer."""
    sent = timezone.now() - timedelta(hours=hours_ago)
    ingest_messages(connector, [InboundMessage(
        external_id=f"wamid.{hours_ago}", text=text, channel="whatsapp", sent_at=sent,
        thread_id=f"{NUMBER_ID}:{WA_ID}", author=InboundAuthor(external_id=WA_ID, display_name="Ana Lima",
                                                                email="ana@example.com", email_verified=True))])
    return Customer.objects.get(email="ana@example.com")


@pytest.fixture
def burst_rule():
    return SignalRule.objects.create(
        name="Device in trouble", signal_type="device_error", per="device", threshold=3, window_minutes=60,
        actions={"open_case": True, "priority": 0.9, "alert": True,
                 "proactive": {"template": "device_help", "values": ["{customer_first_name}", "thermostat"]}})


def burst(capture, n=3, prefix="e"):
    now = timezone.now()
    items = [parse_signal({"id": f"{prefix}{i}", "type": "device_error", "device_id": "thermo-42",
                           "customer": {"email": "ana@example.com"}, "payload": {"code": "E42"},
                           "occurred_at": (now - timedelta(minutes=10 - i)).isoformat()}) for i in range(n)]
    with capture(execute=True):
        ingest_signals("api", items, strict=True)


def proactive_case(capture, whatsapp, hours_ago=72):
    """A burst opened a proactive case on Ana's WhatsApp (a rule without the proactive action)."""
    wrote_on_whatsapp(whatsapp, hours_ago)
    SignalRule.objects.create(name="Trouble", signal_type="device_error", per="device", threshold=3,
                              window_minutes=60, actions={"open_case": True})
    burst(capture)
    return SignalRuleFiring.objects.get().case


def test_proactive_template_goes_out_once_through_the_normal_delivery(whatsapp, graph, agent_a,
                                                                      django_capture_on_commit_callbacks):
    case = proactive_case(django_capture_on_commit_callbacks, whatsapp)
    assert case.conversation.external_id.startswith("proactive:")  # a thread the provider has never seen
    with django_capture_on_commit_callbacks(execute=True):
        message = proactive.send_proactive_message(agent_a, case.pk, template="device_help",
                                                   values=["Ana", "thermostat"], key="k-1")
    with django_capture_on_commit_callbacks(execute=True):
        again = proactive.send_proactive_message(agent_a, case.pk, template="device_help",
                                                 values=["Ana", "thermostat"], key="k-1")
    assert again.pk == message.pk
    calls = graph.template_calls()
    assert len(calls) == 1 and calls[0].path == f"/v21.0/{NUMBER_ID}/messages"
    sent = calls[0].json()
    assert sent["to"] == WA_ID and "text" not in sent
    assert sent["template"] == {"name": "device_help", "language": {"code": "en"}, "components": [
        {"type": "body", "parameters": [{"type": "text", "text": "Ana"}, {"type": "text", "text": "thermostat"}]}]}
    reply = Reply.objects.get(pk=message.reply_id)
    assert reply.status == Reply.Status.DELIVERED and reply.external_id.startswith("wamid.")
    assert reply.text == "Hi Ana, your thermostat reported errors. Reply here and we will help."
    case.refresh_from_db()
    assert case.status == CaseStatus.PENDING and case.first_response_at is not None and case.assignee == agent_a
    activity = CaseActivity.objects.get(case=case, kind="proactive")
    assert activity.by == agent_a and "the approved template “device_help” (en)" in activity.text


def test_proactive_free_text_outside_the_window_is_refused_with_the_reason(client, whatsapp, graph, agent_a,
                                                                          django_capture_on_commit_callbacks):
    case = proactive_case(django_capture_on_commit_callbacks, whatsapp, hours_ago=30)
    client.force_login(agent_a)
    url = f"/console/cases/{case.pk}/proactive/"
    response = client.post(url, json.dumps({"text": "Hello Ana!", "key": "t-1"}), content_type=JSON)
    assert response.status_code == 400
    assert "24 hours" in response.json()["reason"] and "template" in response.json()["reason"]
    for data, words in (({"template": "nope", "values": [], "key": "t-2"}, "not an approved"),
                        ({"template": "device_help", "values": ["Ana"], "key": "t-3"}, "takes 2 value"),
                        ({"template": "device_help", "values": ["Ana", " "], "key": "t-4"}, "empty"),
                        ({"template": "device_help", "values": ["Ana", "x"], "key": "bad key!"}, "key"),
                        ({"template": "device_help", "values": ["Ana", "x"]}, "key")):
        response = client.post(url, json.dumps(data), content_type=JSON)
        assert response.status_code == 400 and words in response.json()["reason"], (data, response.content)
    assert not ProactiveMessage.objects.exists() and graph.whatsapp_calls() == []


def test_proactive_text_inside_the_window_goes_as_text(whatsapp, graph, agent_a, django_capture_on_commit_callbacks):
    case = proactive_case(django_capture_on_commit_callbacks, whatsapp, hours_ago=2)
    with django_capture_on_commit_callbacks(execute=True):
        proactive.send_proactive_message(agent_a, case.pk, text="We saw your thermostat's errors.", key="w-1")
    (call,) = graph.whatsapp_calls()
    assert call.json()["type"] == "text" and call.json()["text"]["body"] == "We saw your thermostat's errors."


def test_proactive_respects_opt_out_and_the_frequency_cap(client, whatsapp, graph, agent_a, settings,
                                                         django_capture_on_commit_callbacks):
    settings.CXM_PROACTIVE_CAP, settings.CXM_PROACTIVE_CAP_HOURS = 1, 24
    case = proactive_case(django_capture_on_commit_callbacks, whatsapp)
    client.force_login(agent_a)
    url = f"/console/cases/{case.pk}/proactive/"
    body = {"template": "device_help", "values": ["Ana", "thermostat"]}
    Customer.objects.update(proactive_opt_out=True)
    response = client.post(url, json.dumps({**body, "key": "o-1"}), content_type=JSON)
    assert response.status_code == 409 and "asked not to be contacted" in response.json()["reason"]
    Customer.objects.update(proactive_opt_out=False)
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(url, json.dumps({**body, "key": "o-2"}), content_type=JSON).status_code == 200
    response = client.post(url, json.dumps({**body, "key": "o-3"}), content_type=JSON)
    assert response.status_code == 429 and "in the last 24 hours (at most 1)" in response.json()["reason"]
    assert len(graph.template_calls()) == 1 and ProactiveMessage.objects.count() == 1


def test_proactive_refuses_listen_only_sources_readers_and_outsiders(make_connector, team_a, agent_a, manager_a,
                                                                     agent_b, whatsapp,
                                                                     django_capture_on_commit_callbacks):
    rss = make_connector("rss", slug="news", config={"feed_url": "https://example.com/feed"})
    team_a.connectors.add(rss)
    case = open_case(rss, author="reader-1", email="rita@example.com", email_verified=True)
    with pytest.raises(InvalidRequest, match="only listens"):
        proactive.send_proactive_message(agent_a, case.pk, text="Hello", key="r-1")
    wa_case = proactive_case(django_capture_on_commit_callbacks, whatsapp)
    with pytest.raises(NotAllowed):
        proactive.send_proactive_message(manager_a, wa_case.pk, template="device_help", values=["A", "b"], key="r-2")
    with pytest.raises(Exception, match="no such case"):
        proactive.send_proactive_message(agent_b, wa_case.pk, template="device_help", values=["A", "b"], key="r-3")
    assert not ProactiveMessage.objects.exists()


def test_signal_rule_sends_its_template_on_the_case_it_opens(whatsapp, graph, burst_rule,
                                                             django_capture_on_commit_callbacks):
    wrote_on_whatsapp(whatsapp, 72)
    burst(django_capture_on_commit_callbacks)
    firing = SignalRuleFiring.objects.get()
    assert "proactive_sent" in firing.done
    (call,) = graph.template_calls()
    values = [p["text"] for p in call.json()["template"]["components"][0]["parameters"]]
    assert values == ["Ana", "thermostat"]  # {customer_first_name} filled in
    message = ProactiveMessage.objects.get()
    assert message.case == firing.case and message.rule == burst_rule and message.sent_by is None
    assert message.reply.automatic and message.reply.status == Reply.Status.DELIVERED


def test_signal_rule_proactive_refusal_is_written_on_the_case(whatsapp, graph, burst_rule,
                                                              django_capture_on_commit_callbacks):
    wrote_on_whatsapp(whatsapp, 72)
    Customer.objects.update(proactive_opt_out=True)
    burst(django_capture_on_commit_callbacks)
    firing = SignalRuleFiring.objects.get()
    assert firing.case is not None and "proactive_refused" in firing.done  # the case still opened
    note = CaseActivity.objects.get(case=firing.case, kind="proactive")
    assert note.text.startswith("No proactive message sent:") and "asked not to be contacted" in note.text
    assert graph.whatsapp_calls() == [] and not ProactiveMessage.objects.exists()


def test_proactive_case_page_shows_the_reason_the_timeline_and_the_template_picker(
        client, whatsapp, agent_a, django_capture_on_commit_callbacks):
    case = proactive_case(django_capture_on_commit_callbacks, whatsapp)
    client.force_login(agent_a)
    html = client.get(f"/console/cases/{case.pk}/").content.decode()
    assert "Why this case" in html and "3 × device error within 1 hour" in html
    assert html.count("thermo-42") >= 4  # three signals in the reason, and the customer's timeline
    assert 'id="signal-timeline"' in html
    assert "Send proactive message" in html and 'data-template="device_help"' in html
    assert "only an approved template can start the conversation" in html
    assert 'name="text"' not in html.split('id="proactive"')[1].split("</section>")[0]  # no free text: window closed
    # Which channel, and why: none learned yet here; then learned from her answers; then an agent's choice.
    assert "on WhatsApp <span" in html and "(this case&#x27;s channel: no preferred channel is known yet)" in html
    for changes, why in (
            ({"learned_channel": "whatsapp"}, "their preferred channel, learned from where they last answered"),
            ({"channel_override": "whatsapp"}, "their preferred channel, chosen by an agent"),
            ({"channel_override": "sms"}, "this case&#x27;s channel; they prefer SMS")):
        Customer.objects.update(**changes)
        assert f"({why})" in client.get(f"/console/cases/{case.pk}/").content.decode()
