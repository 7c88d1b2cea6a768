"""Segments (saved filters over tier, attributes, signals and tags, with counts), the dashboards'
segment sentiment panel, the attribute definitions page and an agent's profile edit on a case."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.db import connection
from django.http import QueryDict
from django.urls import reverse
from django.utils import timezone

from insight import filters
from insight.panels import PANELS
from listening import attributes
from listening.models import AttributeDefinition, Customer, CustomerTag, Segment, Signal
from responses import segments
from responses.exceptions import InvalidRequest
from tests.responses.conftest import open_case

JSON = "application/json"
PREMIUM_TROUBLE = {"tier": ["premium"], "signals": [{"type": "device_error", "count": 3, "days": 7}]}


def errors(customer, n: int, days_ago: float = 1) -> None:
    at = timezone.now() - timedelta(days=days_ago)
    start = Signal.objects.count()
    for i in range(n):
        Signal.objects.create(source="api", external_id=f"e-{start + i}", type="device_error", customer=customer,
                              occurred_at=at - timedelta(minutes=i), payload={"code": "E42"})


def customer(name: str, tier: str = "", **attrs) -> Customer:
    return Customer.objects.create(display_name=name, email=f"{name.lower()}@example.com", tier=tier,
                                   attributes=attrs)


@pytest.fixture
def people(db):
    attributes.save_definition({"key": "plan", "name": "Plan", "kind": "choice", "choices": ["basic", "gold"]})
    attributes.save_definition({"key": "renewal", "name": "Renewal date", "kind": "date"})
    ada = customer("Ada", "premium", plan="gold", renewal="2027-01-15")
    errors(ada, 3)
    bo = customer("Bo", "premium", plan="basic")
    errors(bo, 2)
    errors(bo, 5, days_ago=10)  # last week's do not count this week
    cy = customer("Cy", "standard", plan="gold", renewal="2027-06-01")
    errors(cy, 4)
    di = customer("Di", "premium")
    errors(di, 6)
    CustomerTag.objects.create(customer=di, name="device-trouble")
    return {"ada": ada, "bo": bo, "cy": cy, "di": di}


def names(definition) -> set[str]:
    return set(segments.customers(segments.clean_definition(definition)).values_list("display_name", flat=True))


def test_segments_premium_customers_with_3_device_errors_this_week(people):
    assert names(PREMIUM_TROUBLE) == {"Ada", "Di"}


def test_segments_attribute_tag_and_tier_tests(people):
    assert names({"attributes": [{"key": "plan", "in": ["gold"]}]}) == {"Ada", "Cy"}
    assert names({"attributes": [{"key": "renewal", "lte": "2027-03-01"}]}) == {"Ada"}
    assert names({"attributes": [{"key": "plan", "set": False}]}) == {"Di"}
    assert names({"tier": ["premium"], "tags": ["device-trouble"]}) == {"Di"}


def test_segments_count_is_one_query(people, django_assert_num_queries, admin_user):
    segment = Segment.objects.create(name="Trouble", definition=PREMIUM_TROUBLE)
    with django_assert_num_queries(1):  # a superuser needs no role lookup: one COUNT
        assert segments.count_for(admin_user, segment) == 2


@pytest.mark.parametrize(("definition", "reason"), [
    ({}, "needs at least one test"),
    ({"tier": ["gold"]}, "tier must be a list of"),
    ({"colour": ["red"]}, "unknown parts: colour"),
    ({"signals": [{"type": "teleport", "count": 1, "days": 1}]}, "teleport"),
    ({"signals": [{"type": "device_error", "count": 0, "days": 1}]}, "count must be a whole number"),
    ({"signals": [{"type": "device_error", "count": 1}]}, "takes type, count and days"),
    ({"attributes": [{"key": "shoe", "in": ["42"]}]}, "no attribute with key 'shoe'"),
    ("premium", "must be an object"),
])
def test_segments_bad_definitions_are_refused_with_a_reason(people, definition, reason):
    with pytest.raises(InvalidRequest) as refused:
        segments.clean_definition(definition)
    assert reason in refused.value.reason


def test_segments_page_lists_counts_and_saves_from_the_form(client, people, admin_user):
    client.force_login(admin_user)
    response = client.post(reverse("console:segments"), {
        "name": "Premium trouble", "tier": ["premium"], "signal_type": "device_error", "signal_count": "3",
        "signal_days": "7"})
    assert response.status_code == 302
    segment = Segment.objects.get(name="Premium trouble")
    assert segment.definition == PREMIUM_TROUBLE
    page = client.get(reverse("console:segments")).content.decode()
    assert "Premium trouble" in page and "<strong>2</strong> customers" in page
    assert "tier Premium; 3+ device error in 7 days" in page
    listed = client.get(reverse("console:segments"), HTTP_ACCEPT=JSON).json()["segments"]
    assert listed == [{"id": segment.pk, "name": "Premium trouble", "definition": PREMIUM_TROUBLE,
                       "description": "tier Premium; 3+ device error in 7 days", "customers": 2}]


def test_segments_bad_input_is_a_400_with_a_reason_and_nothing_saved(client, people, admin_user):
    client.force_login(admin_user)
    url = reverse("console:segments")
    answer = client.post(url, data='{"name": "x", "definition": {"tier": ["gold"]}}', content_type=JSON)
    assert answer.status_code == 400 and "tier must be a list of" in answer.json()["reason"]
    form = client.post(url, {"name": "x", "signal_type": "device_error", "signal_count": "lots", "signal_days": "7"})
    assert form.status_code == 400 and "signal count must be a whole number" in form.content.decode()
    empty = client.post(url, {"name": "Everyone"})
    assert empty.status_code == 400 and "needs at least one test" in empty.content.decode()
    assert not Segment.objects.exists()


def test_segments_brand_managers_count_only_their_teams_customers(client, connector_a, manager_a, agent_a, people):
    case = open_case(connector_a, author="ada", email="ada@example.com", email_verified=True)
    assert case.conversation.contact.customer_id == people["ada"].pk
    segment = Segment.objects.create(name="Trouble", definition=PREMIUM_TROUBLE)
    client.force_login(manager_a)
    listed = client.get(reverse("console:segments"), HTTP_ACCEPT=JSON).json()["segments"]
    assert [s["customers"] for s in listed] == [1]  # Di never wrote to team A
    client.force_login(agent_a)
    refused = client.get(reverse("console:segment", kwargs={"segment_id": segment.pk}), HTTP_ACCEPT=JSON)
    assert refused.status_code == 403 and refused.json()["reason"]


@pytest.fixture
def feelings(connector_a, people):
    for n, sentiment in enumerate(("negative", "negative", "positive")):
        open_case(connector_a, f"ada {n}", author="ada", email="ada@example.com", email_verified=True,
                  sentiment=sentiment)
    for n, sentiment in enumerate(("positive", "positive", "neutral", "negative")):
        open_case(connector_a, f"someone {n}", author=f"someone-{n}", sentiment=sentiment)
    # open_case writes classifications directly; the workers count theirs into the rollups as they
    # classify, and everyone's row is read from there.
    from learning import rollups

    rollups.rebuild()
    return Segment.objects.create(name="Premium trouble", definition=PREMIUM_TROUBLE)


def test_segments_panel_compares_the_segments_sentiment_with_everyones(feelings, manager_a):
    answer = PANELS["segment_sentiment"].query(filters.parse_filters(QueryDict(""), manager_a))
    rows = {row["label"]: row for row in answer["rows"]}
    assert rows["Everyone"]["count"] == 7 and rows["Everyone"]["value"] == round(100 * (3 - 3) / 7, 1)
    assert rows["Premium trouble"]["count"] == 3 and rows["Premium trouble"]["value"] == round(100 * -1 / 3, 1)
    assert rows["Premium trouble"]["negative"] == 2


def test_segments_panel_is_served_as_json_and_csv_and_hides_other_teams(client, feelings, manager_a,
                                                                        django_user_model, team_b):
    from responses.models import Role
    from tests.responses.conftest import make_user

    client.force_login(manager_a)
    url = reverse("console:insight-panel", kwargs={"name": "segment_sentiment"})
    assert [r["label"] for r in client.get(url, HTTP_ACCEPT=JSON).json()["rows"]] == ["Everyone", "Premium trouble"]
    rows = list(csv.reader(io.StringIO(client.get(url, {"format": "csv"}).content.decode())))
    assert rows[0] == ["segment", "label", "messages", "negative", "neutral", "positive", "net_percent"]
    assert rows[2][1:] == ["Premium trouble", "3", "2", "0", "1", "-33.3"]
    client.force_login(make_user(django_user_model, "manager_b", Role.BRAND_MANAGER, [team_b]))
    assert client.get(url, HTTP_ACCEPT=JSON).json()["rows"] == []


@pytest.mark.skipif(connection.vendor != "postgresql", reason="insight_raw is PostgreSQL SQL")
def test_segments_panel_equals_its_raw_reference(feelings, manager_a):
    from bench import insight_raw

    panel = PANELS["segment_sentiment"]
    f = filters.parse_filters(QueryDict(""), manager_a)
    assert insight_raw.first_difference(panel.query(f), insight_raw.reference(panel)(f)) == ""


def test_segments_attribute_page_defines_attributes_and_refuses_bad_ones(client, admin_user, db):
    client.force_login(admin_user)
    url = reverse("console:attributes")
    made = client.post(url, {"key": "plan", "name": "Plan", "kind": "choice", "choices": "basic, gold"})
    assert made.status_code == 302
    assert AttributeDefinition.objects.get().choices == ["basic", "gold"]
    bad = client.post(url, {"key": "size", "name": "Size", "kind": "choice", "choices": ""})
    assert bad.status_code == 400 and "needs 1 to 50 choices" in bad.content.decode()
    answer = client.post(url, data='{"key": "Bad Key", "name": "x", "kind": "text"}', content_type=JSON)
    assert answer.status_code == 400 and "key must start with a letter" in answer.json()["reason"]
    assert AttributeDefinition.objects.count() == 1


def test_segments_agent_edits_the_profile_on_the_case_page(client, connector_a, agent_a, people):
    case = open_case(connector_a, author="ada", email="ada@example.com", email_verified=True)
    client.force_login(agent_a)
    page = client.get(reverse("console:case", kwargs={"case_id": case.pk})).content.decode()
    assert 'id="customer-profile"' in page and "Premium" in page and "2027-01-15" in page
    url = reverse("console:case-profile", kwargs={"case_id": case.pk})
    saved = client.post(url, {"tier": "business", "time_zone": "Europe/Lisbon", "attr.plan": "basic",
                              "attr.renewal": ""})
    assert saved.status_code == 302
    ada = Customer.objects.get(pk=people["ada"].pk)
    assert (ada.tier, ada.time_zone, ada.attributes) == ("business", "Europe/Lisbon", {"plan": "basic"})
    page = client.get(reverse("console:case", kwargs={"case_id": case.pk})).content.decode()
    assert "Time zone Europe/Lisbon, set by an agent" in page
    bad = client.post(url, data='{"attributes": {"plan": "diamond"}}', content_type=JSON)
    assert bad.status_code == 400 and "attribute plan must be one of basic, gold" in bad.json()["reason"]
    zone = client.post(url, data='{"time_zone": "Atlantis/Capital"}', content_type=JSON)
    assert zone.status_code == 400 and "not a known IANA time zone" in zone.json()["reason"]
    assert Customer.objects.get(pk=ada.pk).attributes == {"plan": "basic"}


def test_segments_form_takes_several_tests_of_each_kind_and_shows_them_back(client, people, admin_user):
    client.force_login(admin_user)
    response = client.post(reverse("console:segments"), {
        "name": "Gold and troubled", "tier": ["premium", "standard"],
        "signal_type_0": "device_error", "signal_count_0": "3", "signal_days_0": "7",
        "signal_type_1": "", "signal_count_1": "3", "signal_days_1": "7",  # a blank row is no test
        "signal_type_2": "device_error", "signal_count_2": "2", "signal_days_2": "30",
        "attr_key_0": "plan", "attr_op_0": "in", "attr_value_0": "gold",
        "attr_key_1": "renewal", "attr_op_1": "lte", "attr_value_1": "2027-03-01"})
    assert response.status_code == 302, response.content
    segment = Segment.objects.get(name="Gold and troubled")
    assert segment.definition == {
        "tier": ["premium", "standard"],
        "signals": [{"type": "device_error", "count": 3, "days": 7}, {"type": "device_error", "count": 2, "days": 30}],
        "attributes": [{"key": "plan", "in": ["gold"]}, {"key": "renewal", "lte": "2027-03-01"}]}
    assert names(segment.definition) == {"Ada"}  # Cy renews in June
    page = client.get(reverse("console:segment", kwargs={"segment_id": segment.pk})).content.decode()
    # Every saved test is a row of the form (so saving again keeps them), plus one blank row of each kind.
    assert page.count('name="signal_type_') == 3 + 1  # two tests, one blank, and the template's
    assert 'name="signal_count_1" min="1" value="2"' in page and 'name="signal_days_1" min="1" value="30"' in page
    assert '<option value="lte" selected>' in page
    assert 'name="attr_value_1" maxlength="200" placeholder="gold, platinum" value="2027-03-01"' in page
    saved_again = client.post(reverse("console:segment", kwargs={"segment_id": segment.pk}), {
        "name": "Gold and troubled", "tier": ["premium", "standard"],
        "signal_type_0": "device_error", "signal_count_0": "3", "signal_days_0": "7",
        "attr_key_0": "plan", "attr_op_0": "in", "attr_value_0": "gold",
        "attr_key_1": "renewal", "attr_op_1": "lte", "attr_value_1": "2027-03-01"})
    assert saved_again.status_code == 302
    segment.refresh_from_db()
    assert len(segment.definition["signals"]) == 1 and len(segment.definition["attributes"]) == 2
    bad = client.post(reverse("console:segments"), {"name": "Bad", "signal_type_0": "device_error",
                                                     "signal_count_0": "3", "signal_days_0": "7",
                                                     "signal_type_1": "device_error", "signal_count_1": "many",
                                                     "signal_days_1": "7"})
    assert bad.status_code == 400 and "signal count must be a whole number (signal test 2)" in bad.content.decode()
    assert 'name="signal_type_0"' in bad.content.decode()


def test_segments_live_count_previews_the_forms_tests_without_saving(client, people, admin_user, manager_a,
                                                                      connector_a):
    client.force_login(admin_user)
    url = reverse("console:segment-preview")
    answer = client.post(url, {"tier": ["premium"], "signal_type_0": "device_error", "signal_count_0": "3",
                               "signal_days_0": "7", "attr_key_0": "plan", "attr_op_0": "set"}).json()
    assert answer == {"ok": True, "customers": 1, "description": "tier Premium; Plan set; 3+ device error in 7 days"}
    assert client.post(url, {"attr_key_0": "plan", "attr_op_0": "in", "attr_value_0": "gold"}).json()["customers"] == 2
    empty = client.post(url, {"name": "x"}).json()
    assert empty["ok"] is False and empty["empty"] is True
    wrong = client.post(url, {"signal_type_0": "device_error", "signal_count_0": "0", "signal_days_0": "7"}).json()
    assert wrong["ok"] is False and "count must be a whole number from 1" in wrong["reason"]
    assert not Segment.objects.exists()
    open_case(connector_a, author="ada", email="ada@example.com", email_verified=True)
    client.force_login(manager_a)  # a brand manager counts only customers who wrote to their teams
    mine = client.post(url, {"attr_key_0": "plan", "attr_op_0": "in", "attr_value_0": "gold"}).json()
    assert mine["customers"] == 1
