"""Context in routing and replies: rule conditions on the customer's tier, attributes, local time
and recent signals, and canned replies filling {customer.tier} and {customer.attr.<key>}."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from listening import attributes
from listening.models import Customer, Signal
from responses.models import RoutingRule
from responses.replies import render_canned
from responses.rules import validate_rule
from tests.responses.conftest import open_case

EMAIL = "ada@example.com"


def rule(name, conditions, tags):
    validate_rule(conditions, {"tags": tags})
    return RoutingRule.objects.create(name=name, conditions=conditions, actions={"tags": tags}, position=10)


@pytest.fixture
def ada(db):
    attributes.save_definition({"key": "plan", "name": "Plan", "kind": "choice", "choices": ["basic", "gold"]})
    attributes.save_definition({"key": "seats", "name": "Seats", "kind": "number"})
    customer = Customer.objects.create(display_name="Ada Lovelace", email=EMAIL)
    return attributes.set_profile(customer, {"tier": "premium", "attributes": {"plan": "gold", "seats": 40}},
                                  source="api")


def case_for(connector, **kw):
    return open_case(connector, author="ada", email=EMAIL, email_verified=True, **kw)


def test_rule_context_tier_and_attribute_conditions_route(connector_a, ada):
    rule("premium", [{"field": "tier", "op": "in", "value": ["premium"]}], ["premium"])
    rule("gold big", [{"field": "attribute", "op": "matches", "value": {"key": "plan", "in": ["gold"]}},
                      {"field": "attribute", "op": "matches", "value": {"key": "seats", "gte": 25}}], ["big-gold"])
    rule("basic", [{"field": "attribute", "op": "matches", "value": {"key": "plan", "in": ["basic"]}}], ["basic"])
    assert case_for(connector_a).tags == ["big-gold", "premium"]


def test_rule_context_a_customer_without_the_attribute_does_not_match(connector_a, ada):
    rule("gold", [{"field": "attribute", "op": "matches", "value": {"key": "plan", "in": ["gold"]}}], ["gold"])
    rule("no seats", [{"field": "attribute", "op": "matches", "value": {"key": "seats", "set": False}}], ["unsized"])
    assert open_case(connector_a, author="stranger").tags == ["unsized"]


def test_rule_context_signals_in_a_window(connector_a, ada):
    rule("device trouble", [{"field": "signals", "op": "at_least",
                             "value": {"type": "device_error", "count": 3, "minutes": 60}}], ["device-trouble"])
    now = timezone.now()
    for n, minutes in enumerate((5, 20, 90)):  # the third is outside the hour
        Signal.objects.create(source="api", external_id=f"e{n}", type="device_error", customer=ada,
                              occurred_at=now - timedelta(minutes=minutes), payload={"code": "E1"})
    assert case_for(connector_a).tags == []
    Signal.objects.create(source="api", external_id="e3", type="device_error", customer=ada,
                          occurred_at=now - timedelta(minutes=1), payload={"code": "E1"})
    assert case_for(connector_a, text="Still broken").tags == ["device-trouble"]


def test_rule_context_time_of_day_reads_the_customers_clock(connector_a, ada):
    tokyo = datetime.now(ZoneInfo("Asia/Tokyo"))
    hour = f"{tokyo.hour:02d}:00"
    until = f"{(tokyo.hour + 1) % 24:02d}:00"
    rule("tokyo hours", [{"field": "time_of_day", "op": "between", "value": {"from": hour, "to": until}}], ["now"])
    # The server runs on UTC, nine hours from Tokyo: the customer's hour is not the server's.
    assert open_case(connector_a, author="someone-else").tags == []
    attributes.set_profile(ada, {"time_zone": "Asia/Tokyo"}, source="agent")
    assert case_for(connector_a).tags == ["now"]


def test_rule_context_time_zone_from_the_phone_when_none_is_set(connector_a, db):
    Customer.objects.create(display_name="Bo", phone="+81312345678")
    tokyo = datetime.now(ZoneInfo("Asia/Tokyo"))
    rule("tokyo hours", [{"field": "time_of_day", "op": "between",
                          "value": {"from": f"{tokyo.hour:02d}:00", "to": f"{(tokyo.hour + 1) % 24:02d}:00"}}], ["now"])
    case = open_case(connector_a, author="bo", phone="+81312345678", phone_verified=True)
    assert case.tags == ["now"]


@pytest.mark.parametrize(("condition", "reason"), [
    ({"field": "attribute", "op": "matches", "value": {"key": "shoe", "in": ["42"]}}, "no attribute with key 'shoe'"),
    ({"field": "attribute", "op": "matches", "value": {"key": "plan"}}, "needs in, gte, lte or set"),
    ({"field": "attribute", "op": "matches", "value": {"key": "plan", "like": "g%"}}, "attribute takes"),
    ({"field": "signals", "op": "at_least", "value": {"type": "teleport", "count": 1, "minutes": 5}}, "teleport"),
    ({"field": "signals", "op": "at_least", "value": {"type": "device_error", "count": 0, "minutes": 5}}, "count"),
    ({"field": "signals", "op": "at_least", "value": {"type": "device_error", "count": 2, "minutes": 99999}},
     "minutes"),
    ({"field": "tier", "op": "is", "value": True}, "tier takes"),
])
def test_rule_context_bad_conditions_are_refused_with_a_reason(ada, condition, reason):
    with pytest.raises(ValidationError) as refused:
        validate_rule([condition], {"tags": ["x"]})
    assert reason in refused.value.messages[0]


def test_rule_context_canned_replies_fill_profile_placeholders(connector_a, agent_a, ada):
    case = case_for(connector_a)
    text = render_canned("Hi {customer_first_name}: {customer.tier} member, {customer.attr.plan} plan, "
                         "{customer.attr.seats} seats.{customer.attr.nope}", case, agent_a)
    assert text == "Hi Casey: Premium member, gold plan, 40 seats.{customer.attr.nope}"
    Customer.objects.filter(pk=ada.pk).update(attributes={}, tier="")
    case.conversation.contact.refresh_from_db()
    case.conversation.contact.customer.refresh_from_db()
    assert render_canned("[{customer.tier}|{customer.attr.plan}]", case, agent_a) == "[|]"
