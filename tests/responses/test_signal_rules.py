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
