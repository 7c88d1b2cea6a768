"""Rules over signals: counted incrementally per key with state in the database, one burst fires
once, proactive cases in the Care queue with the signals as their reason, the other kinds
(followed by an unhappy message, silence), and empty rules refused."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from listening.models import CustomerTag, Signal
from listening.signal_actions import ingest_signals, parse_signal
from responses.models import ConsoleEvent, SignalRule, SignalRuleFiring, SignalRuleState
from responses.signal_rules import check_absence, evaluate_messages, evaluate_signals, validate_signal_rule
from tests.responses.conftest import classify, store_message

EMAIL = "ana@example.com"


@pytest.fixture
def ana_message(connector_a):
    """Ana wrote once on team A's channel with a verified email: she is a Customer."""
    return store_message(connector_a, "hello there", author="ana", name="Ana Lima", email=EMAIL,
                         email_verified=True)


@pytest.fixture
def burst_rule(team_a):
    return SignalRule.objects.create(name="Device in trouble", signal_type="device_error", per="device",
                                     threshold=10, window_minutes=60,
                                     actions={"open_case": True, "priority": 0.9, "tag": "device-trouble",
                                              "alert": True})


def send(n, start, *, minutes_apart=1.0, device="dev-1", prefix="e", capture=None):
    """Ingest n device errors (as the entry points do), each announced on commit."""
    now = timezone.now()
    items = [parse_signal({"id": f"{prefix}{i}", "type": "device_error", "device_id": device,
                           "customer": {"email": EMAIL}, "payload": {"code": "E42"},
                           "occurred_at": (now - timedelta(minutes=start - i * minutes_apart)).isoformat()})
             for i in range(n)]
    with capture(execute=True):
        return ingest_signals("api", items, strict=True)


def test_signal_rule_burst_opens_one_proactive_case(ana_message, burst_rule, agent_a,
                                                    django_capture_on_commit_callbacks):
    send(9, 120, capture=django_capture_on_commit_callbacks)
    assert not SignalRuleFiring.objects.exists()
    send(16, 110, prefix="f", capture=django_capture_on_commit_callbacks)  # the tenth error within the hour
    firing = SignalRuleFiring.objects.get()
    assert len(firing.signal_ids) == 10
    assert set(Signal.objects.filter(pk__in=firing.signal_ids).values_list("device_id", flat=True)) == {"dev-1"}
    case = firing.case
    assert case.queue.slug == "care" and case.team.slug == "team-a" and case.priority == pytest.approx(0.9)
    assert "proactive" in case.tags and case.conversation.contact == ana_message.author
    assert case.assignee == agent_a  # auto-assigned like any Care case
    assert ConsoleEvent.objects.filter(type="case.created", case=case).exists()
    alert = ConsoleEvent.objects.get(type="signal.alert")
    assert alert.team_id == case.team_id and "10 × device error within 1 hour" in alert.payload["reason"]
    assert CustomerTag.objects.filter(customer=ana_message.author.customer, name="device-trouble").exists()


def test_signal_rule_state_survives_and_a_retry_counts_nothing_twice(ana_message, burst_rule,
                                                                     django_capture_on_commit_callbacks):
    result = send(9, 30, capture=django_capture_on_commit_callbacks)
    evaluate_signals(result.created_ids)  # a redelivered task: the same signals again
    assert len(SignalRuleState.objects.get(rule=burst_rule).recent) == 9
    assert not SignalRuleFiring.objects.exists()
    send(1, 5, prefix="g", capture=django_capture_on_commit_callbacks)
    assert SignalRuleFiring.objects.count() == 1


def test_signal_rule_later_burst_fires_again_and_slow_trickle_never(ana_message, burst_rule,
                                                                   django_capture_on_commit_callbacks):
    send(10, 300, capture=django_capture_on_commit_callbacks)  # a burst five hours ago
    send(10, 100, minutes_apart=9, prefix="slow", capture=django_capture_on_commit_callbacks)  # 10 over 81 min
    assert SignalRuleFiring.objects.count() == 1
    send(10, 20, minutes_apart=0.5, prefix="h", capture=django_capture_on_commit_callbacks)
    assert SignalRuleFiring.objects.count() == 2
    # The second firing joins the proactive case still open instead of opening another.
    first, second = SignalRuleFiring.objects.order_by("id")
    assert first.done[0] == "case_opened" and second.done[0] == "case_joined" and first.case == second.case


def test_signal_rule_burst_evaluated_out_of_order_fires_once(ana_message, burst_rule,
                                                             django_capture_on_commit_callbacks):
    """Concurrent workers take one burst's deliveries in any order. Newest first, then the tenth
    last: kept at the newest ten, the state had dropped the first error and the burst never fired.
    Whatever the order, eleven errors within the hour fire once."""
    import random

    def stored_only(execute):  # evaluated below, in the order a test picks
        return django_capture_on_commit_callbacks(execute=False)

    for seed in range(4):
        created = send(11, 60, device=f"dev-{seed}", prefix=f"o{seed}-", capture=stored_only).created_ids
        by_time = sorted(created, key=lambda pk: Signal.objects.get(pk=pk).occurred_at)
        order = [by_time[10], *by_time[:9], by_time[9]] if seed == 0 else random.Random(seed).sample(by_time, 11)
        for pk in order:
            evaluate_signals([pk])
        firing = SignalRuleFiring.objects.get(key=f"d:dev-{seed}")
        assert len(firing.signal_ids) >= 10 and set(firing.signal_ids) <= set(by_time)
        if seed == 0:  # once ten were known (the ninth came): the newest's window held them
            assert sorted(firing.signal_ids) == sorted([*by_time[:9], by_time[10]])


def test_signal_rule_needs_a_type_a_window_and_an_action(team_a):
    empty = SignalRule(name="Everything", signal_type="", actions={})
    with pytest.raises(ValidationError) as caught:
        validate_signal_rule(empty)
    assert {"signal_type", "actions"} <= set(caught.value.message_dict)
    with pytest.raises(ValidationError):
        validate_signal_rule(SignalRule(name="x", signal_type="device_error", threshold=0, actions={"alert": True}))
    with pytest.raises(ValidationError):
        validate_signal_rule(SignalRule(name="x", kind="followed_by_negative", per="device",
                                        signal_type="order_delayed", actions={"alert": True}))
    validate_signal_rule(SignalRule(name="ok", signal_type="device_error", threshold=3, window_minutes=10,
                                    actions={"alert": True}))


def test_signal_rule_followed_by_unhappy_message_fires_once(connector_a, ana_message,
                                                           django_capture_on_commit_callbacks):
    rule = SignalRule.objects.create(name="Late and angry", kind="followed_by_negative", signal_type="order_delayed",
                                     window_minutes=60, actions={"open_case": True, "priority": 0.8})
    with django_capture_on_commit_callbacks(execute=True):
        ingest_signals("api", [parse_signal({"id": "o1", "type": "order_delayed", "customer": {"email": EMAIL},
                                             "payload": {"order_id": "A-1"}})], strict=True)
    calm = store_message(connector_a, "ok thanks", author="ana", email=EMAIL, email_verified=True)
    classify(calm, sentiment="positive", lane="praise")
    assert evaluate_messages([calm.pk]) == []
    angry = store_message(connector_a, "Where is my order?!", author="ana", email=EMAIL, email_verified=True)
    classify(angry)
    fired = evaluate_messages([angry.pk])
    assert len(fired) == 1
    firing = SignalRuleFiring.objects.get(pk=fired[0])
    assert firing.rule == rule and firing.message == angry and firing.case is not None
    assert evaluate_messages([angry.pk]) == []


def test_signal_rule_silence_fires_once_per_silence(ana_message, django_capture_on_commit_callbacks):
    rule = SignalRule.objects.create(name="Went quiet", kind="absence", signal_type="device_heartbeat",
                                     absence_days=3, actions={"tag": "went-quiet"})
    with django_capture_on_commit_callbacks(execute=True):
        ingest_signals("api", [parse_signal({"id": "hb1", "type": "device_heartbeat", "customer": {"email": EMAIL}})],
                       strict=True)
    assert check_absence() == []
    later = timezone.now() + timedelta(days=4)
    assert len(check_absence(now=later)) == 1
    assert check_absence(now=later + timedelta(days=1)) == []
    assert CustomerTag.objects.filter(name="went-quiet").exists()
    assert SignalRuleFiring.objects.get().rule == rule


def test_signal_rule_case_is_invisible_to_another_team(client, ana_message, burst_rule, agent_b,
                                                       django_capture_on_commit_callbacks):
    send(10, 30, capture=django_capture_on_commit_callbacks)
    case = SignalRuleFiring.objects.get().case
    client.force_login(agent_b)
    assert client.get(f"/console/cases/{case.pk}/").status_code == 404
    assert not ConsoleEvent.objects.filter(team=agent_b.cxm_teams.first(), type="signal.alert").exists()


# --- The console's signal rules page (admins) ---------------------------------------------------
RULE_FORM = {"name": "Device in trouble", "signal_type": "device_error", "kind": "count", "per": "device",
             "threshold": "10", "window_minutes": "60", "absence_days": "0", "enabled": "on", "open_case": "on",
             "priority": "0.9", "tag": "device-trouble", "alert": "on", "proactive_template": "device_help",
             "proactive_values": "{customer_first_name}\nthermostat"}


def test_signal_rule_page_admin_creates_edits_and_switches_off(client, admin_user, team_a):
    client.force_login(admin_user)
    response = client.post("/console/signal-rules/new/", RULE_FORM)
    assert response.status_code == 302 and response["Location"] == "/console/signal-rules/"
    rule = SignalRule.objects.get()
    assert (rule.signal_type, rule.per, rule.threshold, rule.window_minutes) == ("device_error", "device", 10, 60)
    assert rule.actions == {"open_case": True, "priority": 0.9, "tag": "device-trouble", "alert": True,
                            "proactive": {"template": "device_help", "values": ["{customer_first_name}", "thermostat"]}}
    page = client.get("/console/signal-rules/").content.decode()
    assert "When 10 × device error for one device within 1 hour: open a proactive case at priority 0.9" in page
    assert "send the template “device_help”" in page
    form = client.get(f"/console/signal-rules/{rule.pk}/").content.decode()
    assert 'value="Device in trouble"' in form and "thermostat" in form  # the saved rule fills the form
    response = client.post(f"/console/signal-rules/{rule.pk}/", {"name": "Payments", "signal_type": "payment_failed",
                                                                 "kind": "count", "per": "customer", "threshold": 2,
                                                                 "window_minutes": 30, "alert": True},
                           content_type="application/json", HTTP_ACCEPT="application/json")
    assert response.status_code == 200 and response.json()["actions"] == {"alert": True}
    client.post(f"/console/signal-rules/{rule.pk}/enabled/", {"enabled": "0"})
    rule.refresh_from_db()
    assert not rule.enabled and rule.name == "Payments"
    assert "(off)" in client.get("/console/signal-rules/").content.decode()


@pytest.mark.parametrize("change, words", [
    ({"signal_type": ""}, "a rule over every signal is refused"),
    ({"open_case": "", "alert": "", "tag": "", "priority": "", "proactive_template": ""}, "at least one action"),
    ({"open_case": ""}, "on the case the rule opens"),
    ({"threshold": "0"}, "How many signals"),
    ({"proactive_template": "Not A Name"}, "lower-case letters"),
    ({"kind": "followed_by_negative"}, "Messages come from customers"),
])
def test_signal_rule_page_refuses_empty_or_bad_rules_with_the_reason(client, admin_user, change, words):
    client.force_login(admin_user)
    data = {**RULE_FORM, **change}
    response = client.post("/console/signal-rules/new/", data)
    assert response.status_code == 400 and words in response.content.decode()
    json_data = {key: value for key, value in data.items() if value != ""}
    response = client.post("/console/signal-rules/new/", json_data, content_type="application/json",
                           HTTP_ACCEPT="application/json")
    assert response.status_code == 400 and words in response.json()["reason"]
    assert not SignalRule.objects.exists()


def test_signal_rule_case_opens_on_the_preferred_channel(ana_message, connector_a, burst_rule,
                                                         django_capture_on_commit_callbacks):
    """An agent chose WhatsApp for Ana: the proactive case lives there, on her newest WhatsApp
    thread, although she was seen last on the web."""
    from listening.models import Contact, Conversation

    customer = ana_message.author.customer
    earlier = timezone.now() - timedelta(days=3)
    whatsapp = Contact.objects.create(channel="whatsapp", external_id="+351900000001", customer=customer,
                                      last_seen_at=earlier)
    for n, days in enumerate((5, 3)):
        Conversation.objects.create(connector=connector_a, channel="whatsapp", external_id=f"wa-{n}", contact=whatsapp,
                                    started_at=timezone.now() - timedelta(days=days),
                                    last_message_at=timezone.now() - timedelta(days=days))
    customer.channel_override = "whatsapp"
    customer.save(update_fields=["channel_override"])
    send(10, 30, capture=django_capture_on_commit_callbacks)
    case = SignalRuleFiring.objects.get().case
    assert case.channel == "whatsapp" and case.conversation.contact == whatsapp
    assert case.conversation.connector_id == connector_a.pk and case.conversation.external_id.startswith("proactive:")
