"""Issue 18's leftovers in a real browser, on a desktop and a phone with no sideways scroll:
- an admin builds a segment of several tests in the form (adds and removes rows) and watches the
  live count change before saving;
- deleting an attribute is refused while that segment reads it (the page names it), then, once
  the segment is gone, confirmed with the count of values that go;
- an agent's inbox says why a proactive case is there, and the customer panel says the time zone
  came from the channel and what it won over."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from listening import attributes
from listening.models import AttributeDefinition, Customer, Segment, Signal
from responses import proactive
from responses.models import Case, Role, Team
from responses.routing import route_messages
from responses.teams import ensure_default_queues
from tests.e2e.conftest import login, screenshot
from tests.responses.conftest import PASSWORD, classify, make_user, store_message

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (or fails in CI) with the reason
    expect = None

SIDEWAYS = "() => document.documentElement.scrollWidth - window.innerWidth"
VIEWPORTS = [{"width": 1440, "height": 900}, {"width": 390, "height": 844}]


def _no_sideways_scroll(page, where: str) -> None:
    assert page.evaluate(SIDEWAYS) <= 0, f"{where} scrolls sideways"


def _world(django_user_model, make_connector) -> Case:
    team = Team.objects.create(name="Care", slug="care")
    ensure_default_queues(team)
    connector = make_connector("webhook", slug="brand", credentials={"signing_secret": "a"},
                               config={"callback_url": "http://127.0.0.1:9/replies"})
    team.connectors.add(connector)
    make_user(django_user_model, "maria_agent", Role.AGENT, [team])
    django_user_model.objects.create_superuser(username="ines_admin", password=PASSWORD, email="ines@example.com")
    attributes.save_definition({"key": "plan", "name": "Plan", "kind": "choice", "choices": ["basic", "gold"]})
    ada = Customer.objects.create(display_name="Ada Lovelace", email="ada@example.com", phone="+4915123456789",
                                  tier="premium", attributes={"plan": "gold"})
    Customer.objects.create(display_name="Bo", email="bo@example.com", tier="premium", attributes={"plan": "basic"})
    Customer.objects.create(display_name="Cy", email="cy@example.com", tier="standard", attributes={"plan": "gold"})
    for n in range(3):
        Signal.objects.create(source="mqtt", external_id=f"e{n}", type="device_error", customer=ada,
                              occurred_at=timezone.now() - timedelta(hours=n + 1), payload={"code": "E42"})
    message = store_message(connector, "My thermostat keeps rebooting", author="ada", name="Ada Lovelace",
                            email="ada@example.com", email_verified=True)
    classify(message)
    route_messages([message.pk])
    attributes.record_channel_time_zone(ada, "America/Chicago", at=timezone.now(), source="web:author")
    return Case.objects.get(conversation=message.conversation)


@pytest.mark.parametrize("viewport", VIEWPORTS, ids=["desktop", "phone"])
def test_context_segment_rows_live_count_and_attribute_deletion(browser, live_server_url, django_user_model,
                                                                 make_connector, settings, viewport):
    settings.CXM_CLASSIFY_ON_INGEST = False
    _world(django_user_model, make_connector)
    width = viewport["width"]
    context = browser.new_context(viewport=viewport, locale="en-GB")
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        login(page, live_server_url, "ines_admin", PASSWORD)
        page.goto(f"{live_server_url}/console/segments/")
        form = page.locator("#segment-form")
        live = page.locator("#segment-live")
        expect(live).to_contain_text("Add a test")
        form.locator("#segment-name").fill("Gold premium with trouble")
        form.locator("input[name=tier][value=premium]").check()
        expect(live).to_contain_text("2 customers match now")  # Ada and Bo
        form.locator("select[name=attr_key_0]").select_option("plan")
        form.locator("select[name=attr_op_0]").select_option("in")
        form.locator("input[name=attr_value_0]").fill("gold")
        expect(live).to_contain_text("1 customer matches now: tier Premium; Plan is gold")
        form.locator("[data-add=signal]").click()  # a second signal row: two tests of one kind
        form.locator("select[name=signal_type_0]").select_option("device_error")
        rows = form.locator('.test-rows[data-kind="signal"] > .test-row')
        expect(rows).to_have_count(2)
        new_row = rows.nth(1)
        new_row.locator("select").first.select_option("device_error")
        new_row.locator("input[type=number]").first.fill("9")
        expect(live).to_contain_text("0 customers match now")
        new_row.locator(".remove-test").click()  # too strict: remove it again
        expect(rows).to_have_count(1)
        expect(live).to_contain_text("1 customer matches now: tier Premium; Plan is gold; 3+ device error in 7 days")
        _no_sideways_scroll(page, "the segment form with several tests")
        screenshot(form, f"segment-rows-{width}")
        with page.expect_navigation():
            form.locator("button[type=submit]").click()
        segment = Segment.objects.get()
        assert segment.definition == {"tier": ["premium"], "attributes": [{"key": "plan", "in": ["gold"]}],
                                      "signals": [{"type": "device_error", "count": 3, "days": 7}]}
        expect(page.locator(f"#segment-{segment.pk} .segment-count")).to_have_text("1 customer")

        plan = AttributeDefinition.objects.get(key="plan")
        page.goto(f"{live_server_url}/console/attributes/{plan.pk}/")
        with page.expect_navigation():
            page.locator("#attribute-delete-link").click()
        refs = page.locator("#attribute-references")
        expect(refs).to_contain_text("Plan cannot be deleted yet")
        expect(refs.locator("a", has_text="Gold premium with trouble")).to_be_visible()
        _no_sideways_scroll(page, "the refused deletion")
        screenshot(page, f"attribute-delete-refused-{width}", full_page=True)
        Segment.objects.all().delete()
        page.reload()
        expect(page.locator("#attribute-delete-holders")).to_contain_text("3 customers have a value of Plan")
        _no_sideways_scroll(page, "the deletion's confirmation")
        screenshot(page, f"attribute-delete-confirm-{width}", full_page=True)
        with page.expect_navigation():
            page.locator("#attribute-delete-form button[type=submit]").click()
        expect(page.locator("#attributes-deleted")).to_contain_text("Attribute Plan (plan)")
        assert not Customer.objects.filter(attributes__has_key="plan").exists()
    finally:
        context.close()


@pytest.mark.parametrize("viewport", VIEWPORTS, ids=["desktop", "phone"])
def test_context_inbox_says_why_a_proactive_case_is_there_and_the_panel_where_the_zone_came_from(
        browser, live_server_url, django_user_model, make_connector, settings, viewport):
    settings.CXM_CLASSIFY_ON_INGEST = False
    case = _world(django_user_model, make_connector)
    Case.objects.filter(pk=case.pk).update(status="resolved")
    agent = django_user_model.objects.get(username="maria_agent")
    ada = Customer.objects.get(email="ada@example.com")
    sent = proactive.send_to_customer(agent, ada.pk, text="We saw your thermostat's errors: can we help?",
                                      key="e2e-1")
    width = viewport["width"]
    context = browser.new_context(viewport=viewport, locale="en-GB")
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        login(page, live_server_url, "maria_agent", PASSWORD)
        page.goto(f"{live_server_url}/console/")
        row = page.locator(f"#case-{sent.case_id}")
        expect(row.locator(".proactive-why")).to_have_text("Why: Proactive Website message sent by Maria")
        _no_sideways_scroll(page, "the inbox")
        screenshot(page, f"inbox-proactive-why-{width}")
        page.goto(f"{live_server_url}/console/cases/{sent.case_id}/")
        profile = page.locator("#customer-profile")
        profile.locator("details.why summary").click()
        expect(profile.locator("#profile-zone-why")).to_have_text(
            "Time zone America/Chicago, from Website (the sender's time zone) "
            "(it wins over: the phone number's prefix says Europe/Berlin)")
        _no_sideways_scroll(page, "the case page")
        page.locator("#customer").scroll_into_view_if_needed()
        screenshot(page.locator("#customer"), f"profile-zone-why-{width}")
    finally:
        context.close()
