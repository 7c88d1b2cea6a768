"""Deleting a custom attribute definition: the confirmation says how many customers hold a value,
the values go with it (one UPDATE), the deletion is audited, and while a segment, a routing
rule, a canned reply, a macro or a signal rule reads the key the deletion is refused, naming them."""

from __future__ import annotations

import time

import pytest
from django.urls import reverse

from listening import attributes
from listening.models import AttributeDefinition, AuditEvent, Customer, Segment
from responses.models import CannedResponse, Macro, RoutingRule, SignalRule

JSON = "application/json"


@pytest.fixture
def plan(db):
    definition = attributes.save_definition({"key": "plan", "name": "Plan", "kind": "choice",
                                             "choices": ["basic", "gold"]})
    attributes.save_definition({"key": "store", "name": "Store", "kind": "text"})
    Customer.objects.create(display_name="Ada", attributes={"plan": "gold", "store": "Berlin"})
    Customer.objects.create(display_name="Bo", attributes={"plan": "basic"})
    Customer.objects.create(display_name="Cy", attributes={"store": "Paris"})
    return definition


def url(definition, suffix="attribute-delete"):
    return reverse(f"console:{suffix}", kwargs={"attribute_id": definition.pk})


def test_attribute_delete_confirmation_counts_customers_with_a_value(client, admin_user, plan):
    client.force_login(admin_user)
    page = client.get(url(plan))
    assert page.status_code == 200
    text = page.content.decode()
    assert "2 customers</strong> have a value of Plan" in text and "Delete Plan and 2 values" in text
    answer = client.get(url(plan), HTTP_ACCEPT=JSON).json()
    assert answer["customers_with_value"] == 2 and answer["references"] == []
    edit = client.get(url(plan, "attribute")).content.decode()
    assert url(plan) in edit  # the edit page links to it


def test_attribute_delete_removes_the_definition_and_every_value_and_is_audited(client, admin_user, plan):
    client.force_login(admin_user)
    answer = client.post(url(plan), HTTP_ACCEPT=JSON)
    assert answer.status_code == 200, answer.content
    assert answer.json() == {"ok": True, "deleted": "plan", "values_removed": 2}
    assert not AttributeDefinition.objects.filter(key="plan").exists()
    values = dict(Customer.objects.values_list("display_name", "attributes"))
    assert values == {"Ada": {"store": "Berlin"}, "Bo": {}, "Cy": {"store": "Paris"}}  # others untouched
    event = AuditEvent.objects.get(action="attribute_deleted")
    assert event.actor == admin_user and event.connector is None
    assert event.changes["attribute"]["choices"] == ["basic", "gold"] and event.changes["values_removed"] == 2
    assert event.connector_label == "Attribute Plan (plan)"
    listing = client.get(reverse("console:attributes")).content.decode()
    assert "Attribute Plan (plan), by " in listing and "2 values removed" in listing
    # The key is free again, and no stale value comes back with a new definition of it.
    attributes.save_definition({"key": "plan", "name": "Plan", "kind": "text"})
    assert Customer.objects.filter(attributes__has_key="plan").count() == 0


def test_attribute_delete_a_plain_form_goes_back_to_the_list(client, admin_user, plan):
    client.force_login(admin_user)
    answer = client.post(url(plan))
    assert answer.status_code == 302 and answer["Location"] == reverse("console:attributes")
    assert not AttributeDefinition.objects.filter(pk=plan.pk).exists()


def test_attribute_delete_is_refused_while_something_reads_it_and_names_each(client, admin_user, plan):
    Segment.objects.create(name="Gold customers", definition={"attributes": [{"key": "plan", "in": ["gold"]}]})
    Segment.objects.create(name="Stores", definition={"attributes": [{"key": "store", "set": True}]})  # not plan
    RoutingRule.objects.create(name="Gold first", conditions=[{"field": "attribute", "op": "matches",
                                                               "value": {"key": "plan", "in": ["gold"]}}],
                               actions={"priority_boost": 0.2})
    CannedResponse.objects.create(title="Your plan", text="You are on {customer.attr.plan}.")
    CannedResponse.objects.create(title="Planet", text="{customer.attr.planet} is not plan")  # another key
    Macro.objects.create(title="Upsell", actions=[{"type": "reply", "text": "Hi, {customer.attr.plan} member"}])
    SignalRule.objects.create(name="Device help", signal_type="device_error", threshold=3, window_minutes=60,
                              actions={"open_case": True, "proactive": {"template": "device_help",
                                                                        "values": ["{customer.attr.plan}"]}})
    client.force_login(admin_user)
    page = client.get(url(plan)).content.decode()
    assert "Plan cannot be deleted yet" in page and 'id="attribute-delete-form"' not in page
    for name in ("Gold customers", "Gold first", "Your plan", "Upsell", "Device help"):
        assert name in page
    assert "Stores" not in page and "Planet" not in page
    refused = client.post(url(plan), HTTP_ACCEPT=JSON)
    assert refused.status_code == 409
    reason = refused.json()["reason"]
    assert reason.startswith("Plan is still read by 1 segment (Gold customers), 1 routing rule (Gold first), "
                             "1 canned reply (Your plan), 1 macro (Upsell) and 1 signal rule (Device help)")
    form = client.post(url(plan))
    assert form.status_code == 409 and "still read by" in form.content.decode()
    assert AttributeDefinition.objects.filter(pk=plan.pk).exists()
    assert Customer.objects.filter(attributes__has_key="plan").count() == 2 and not AuditEvent.objects.exists()


def test_attribute_delete_needs_an_admin(client, plan, django_user_model):
    from tests.responses.conftest import make_user

    agent = make_user(django_user_model, "agent", "agent")
    client.force_login(agent)
    assert client.post(url(plan), HTTP_ACCEPT=JSON).status_code == 403
    assert client.get(reverse("console:attribute-delete", kwargs={"attribute_id": "999999"}),
                      HTTP_ACCEPT=JSON).status_code in (403, 404)
    assert AttributeDefinition.objects.filter(pk=plan.pk).exists()


def test_attribute_delete_checks_readers_with_the_definition_locked_and_a_refusal_changes_nothing(
        plan, admin_user):
    from responses.attribute_usage import refuse_if_read
    from responses.exceptions import Conflict
    from responses.segments import save_segment

    seen = []

    def check(key):
        seen.append(key)
        refuse_if_read("Plan", key)

    # A segment saved (it locks the definitions it tests while it saves) before the deletion's check...
    save_segment(admin_user, "Gold", {"attributes": [{"key": "plan", "in": ["gold"]}]})
    with pytest.raises(Conflict, match="Plan is still read by 1 segment"):
        attributes.delete_definition(plan, actor=admin_user, check=check)
    # ...is seen by it, inside the deletion's transaction, and nothing is removed.
    assert seen == ["plan"] and AttributeDefinition.objects.filter(pk=plan.pk).exists()
    assert Customer.objects.filter(attributes__has_key="plan").count() == 2 and not AuditEvent.objects.exists()
    Segment.objects.all().delete()
    assert attributes.delete_definition(plan, actor=admin_user, check=check) == 2
    # A segment testing a deleted attribute is refused with the reason.
    with pytest.raises(Exception, match="no attribute with key 'plan'"):
        save_segment(admin_user, "Gold again", {"attributes": [{"key": "plan", "in": ["gold"]}]})


@pytest.mark.django_db(transaction=True)
def test_attribute_delete_waits_for_a_routing_rule_the_admin_api_is_saving(admin_user):
    """The admin API's routing rule (responses.organisation.create_rule) locks the attributes it
    tests while it saves, as a segment does: a deletion that comes meanwhile waits, then sees the
    rule and refuses. Unlocked, the check ran before the rule committed, missed it, and deleted
    the attribute the rule still tested."""
    import threading

    from django.db import connection, transaction

    from responses import organisation
    from responses.attribute_usage import refuse_if_read
    from responses.exceptions import Conflict

    definition = attributes.save_definition({"key": "plan", "name": "Plan", "kind": "text"})
    saved, outcome = threading.Event(), {}

    def save_rule() -> None:
        try:
            with transaction.atomic():
                organisation.create_rule(admin_user, name="Gold first", conditions=[
                    {"field": "attribute", "op": "matches", "value": {"key": "plan", "in": ["gold"]}}],
                    actions={"priority_boost": 0.2})
                saved.set()
                time.sleep(1.0)  # still uncommitted while the deletion starts
        finally:
            connection.close()

    def delete() -> None:
        saved.wait(10)
        try:
            attributes.delete_definition(definition, actor=admin_user,
                                         check=lambda key: refuse_if_read("Plan", key))
            outcome["deleted"] = True
        except Conflict as exc:
            outcome["refused"] = exc.reason
        finally:
            connection.close()

    threads = [threading.Thread(target=save_rule), threading.Thread(target=delete)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert "Plan is still read by 1 routing rule (Gold first)" in outcome.get("refused", ""), outcome
    assert AttributeDefinition.objects.filter(key="plan").exists()
    assert RoutingRule.objects.filter(name="Gold first").exists()
