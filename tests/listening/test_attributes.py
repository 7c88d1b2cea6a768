"""Custom attributes: admins define them (typed), values are checked by type wherever they come
from (API, CSV import, a mapped signal field, an agent), and a bad value is refused with a reason
and nothing saved."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.utils import timezone

from listening import attributes
from listening.exceptions import PayloadInvalid
from listening.models import AttributeDefinition, Customer
from listening.signal_actions import ingest_signals, parse_signal


@pytest.fixture
def plan(db):
    return attributes.save_definition({"key": "plan", "name": "Plan", "kind": "choice",
                                       "choices": ["basic", "gold", "platinum"]})


@pytest.fixture
def defined(plan):
    attributes.save_definition({"key": "seats", "name": "Seats", "kind": "number"})
    attributes.save_definition({"key": "renewal", "name": "Renewal date", "kind": "date"})
    attributes.save_definition({"key": "store", "name": "Home store", "kind": "text"})
    return attributes.definitions()


@pytest.fixture
def ada(db):
    return Customer.objects.create(display_name="Ada", email="ada@example.com", phone="+4915123456789")


def test_attributes_values_are_checked_by_type_and_stored(defined, ada):
    customer = attributes.set_profile(ada, {"tier": "premium", "attributes": {
        "plan": "gold", "seats": "12", "renewal": "2027-03-01", "store": "Berlin Mitte"}}, source="api")
    customer.refresh_from_db()
    assert customer.tier == "premium"
    assert customer.attributes == {"plan": "gold", "seats": 12, "renewal": "2027-03-01", "store": "Berlin Mitte"}
    customer = attributes.set_profile(customer, {"attributes": {"seats": None}}, source="agent")
    assert "seats" not in customer.attributes


@pytest.mark.parametrize(("changes", "reason"), [
    ({"attributes": {"plan": "diamond"}}, "attribute plan must be one of basic, gold, platinum"),
    ({"attributes": {"seats": "many"}}, "attribute seats must be a number"),
    ({"attributes": {"seats": True}}, "attribute seats must be a number"),
    ({"attributes": {"renewal": "next spring"}}, "attribute renewal must be a date"),
    ({"attributes": {"store": 5}}, "attribute store must be text"),
    ({"attributes": {"shoe_size": 44}}, "unknown attributes: shoe_size"),
    ({"tier": "platinum"}, "tier must be one of"),
    ({"colour": "red"}, "unknown profile fields: colour"),
    ({"attributes": ["plan"]}, "attributes must be an object"),
])
def test_attributes_bad_values_are_refused_and_nothing_is_saved(defined, ada, changes, reason):
    before = {"plan": "basic"}
    Customer.objects.filter(pk=ada.pk).update(attributes=before)
    with pytest.raises(PayloadInvalid) as refused:
        attributes.set_profile(ada, {**changes, "tier": changes.get("tier", "business")}, source="api")
    assert reason in refused.value.reason
    ada.refresh_from_db()
    assert ada.attributes == before and ada.tier == ""


@pytest.mark.parametrize(("data", "reason"), [
    ({"key": "Plan!", "name": "Plan", "kind": "text"}, "key must start with a letter"),
    ({"key": "tier", "name": "Tier", "kind": "text"}, "is a profile field"),
    ({"key": "size", "name": "", "kind": "text"}, "name is required"),
    ({"key": "size", "name": "Size", "kind": "colour"}, "kind must be one of"),
    ({"key": "size", "name": "Size", "kind": "choice", "choices": []}, "needs 1 to 50 choices"),
    ({"key": "size", "name": "Size", "kind": "choice", "choices": ["s", "s"]}, "must not repeat"),
    ({"key": "size", "name": "Size", "kind": "text", "signal_type": "device_error"}, "needs both"),
    ({"key": "size", "name": "Size", "kind": "text", "signal_type": "teleport", "signal_field": "x"}, "teleport"),
])
def test_attributes_bad_definitions_are_refused(db, data, reason):
    with pytest.raises(PayloadInvalid) as refused:
        attributes.save_definition(data)
    assert reason in refused.value.reason
    assert not AttributeDefinition.objects.exists()


def test_attributes_a_definition_keeps_its_key_and_kind(plan):
    changed = attributes.save_definition({"key": "other", "name": "Plan name", "kind": "text",
                                          "choices": "basic, gold"}, existing=plan)
    assert (changed.key, changed.kind, changed.choices) == ("plan", "choice", ["basic", "gold"])


def test_attributes_a_mapped_signal_field_sets_the_attribute(db, ada, django_capture_on_commit_callbacks):
    attributes.save_definition({"key": "nps", "name": "Last NPS", "kind": "number",
                                "signal_type": "nps_answer", "signal_field": "score"})
    now = timezone.now().isoformat()
    signals = [parse_signal({"id": f"nps-{n}", "type": "nps_answer", "occurred_at": now,
                             "customer": {"email": "ada@example.com"}, "payload": {"score": n}}) for n in (3, 9)]
    with django_capture_on_commit_callbacks(execute=True):
        ingest_signals("api", signals, strict=True)
    ada.refresh_from_db()
    assert ada.attributes == {"nps": 9}


def test_attributes_csv_import_sets_good_rows_and_reports_bad_ones(defined, ada, tmp_path, capsys):
    Customer.objects.create(display_name="Bo", email="bo@example.com")
    path = tmp_path / "profiles.csv"
    path.write_text("email,tier,plan,seats,time_zone\n"
                    "ada@example.com,premium,gold,3,Europe/Berlin\n"
                    "bo@example.com,premium,diamond,1,\n"
                    "nobody@example.com,premium,gold,1,\n")
    call_command("import_profiles", str(path))
    out = capsys.readouterr().out
    ada.refresh_from_db()
    assert (ada.tier, ada.attributes, ada.time_zone) == ("premium", {"plan": "gold", "seats": 3}, "Europe/Berlin")
    assert Customer.objects.get(email="bo@example.com").tier == ""
    assert "line 3: attribute plan must be one of basic, gold, platinum" in out
    assert "line 4: no customer with this email or phone" in out
    assert "1 customer updated" in out


def test_attributes_csv_with_an_unknown_column_is_refused(defined, ada):
    with pytest.raises(PayloadInvalid, match="unknown columns: shoe"):
        attributes.import_profiles("email,shoe\nada@example.com,44\n")
