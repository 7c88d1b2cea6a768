"""The living profile in a real browser, on a desktop and a phone with no sideways scroll: an
admin finds Segments in the navigation and saves "premium customers with 3+ device errors this
week" (a mistake first, refused with the reason), seeing its count; an agent opens the case of
one of those customers, reads the profile in the side panel and sets an attribute."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from listening import attributes
from listening.models import Customer, Segment, Signal
from responses.models import Case, Role, Team
from responses.routing import route_messages
from responses.teams import ensure_default_queues
from tests.e2e.conftest import login, nav_link, screenshot
from tests.responses.conftest import PASSWORD, classify, make_user, store_message

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (or fails in CI) with the reason
    expect = None

SIDEWAYS = "() => document.documentElement.scrollWidth - window.innerWidth"


def _no_sideways_scroll(page, where: str) -> None:
    assert page.evaluate(SIDEWAYS) <= 0, f"{where} scrolls sideways"


def _world(django_user_model, make_connector) -> Case:
    team = Team.objects.create(name="Care", slug="care")
    ensure_default_queues(team)
    connector = make_connector("webhook", slug="brand", credentials={"signing_secret": "a"})
    team.connectors.add(connector)
    make_user(django_user_model, "maria_agent", Role.AGENT, [team])
    django_user_model.objects.create_superuser(username="ines_admin", password=PASSWORD, email="ines@example.com")
    attributes.save_definition({"key": "plan", "name": "Plan", "kind": "choice", "choices": ["basic", "gold"]})
    ada = Customer.objects.create(display_name="Ada Lovelace", email="ada@example.com", phone="+4915123456789",
                                  tier="premium", learned_channel="web")
    for n in range(3):
        Signal.objects.create(source="mqtt", external_id=f"e{n}", type="device_error", customer=ada,
                              occurred_at=timezone.now() - timedelta(hours=n + 1), payload={"code": "E42"})
    Customer.objects.create(display_name="Bo", email="bo@example.com", tier="standard")
    message = store_message(connector, "My thermostat keeps rebooting", author="ada", name="Ada Lovelace",
                            email="ada@example.com", email_verified=True)
    classify(message)
    route_messages([message.pk])
    return Case.objects.get(conversation=message.conversation)


@pytest.mark.parametrize("viewport", [{"width": 1440, "height": 900}, {"width": 390, "height": 844}],
                         ids=["desktop", "phone"])
def test_profile_admin_saves_a_segment_and_an_agent_sets_an_attribute(
        browser, live_server_url, django_user_model, make_connector, settings, viewport):
    settings.CXM_CLASSIFY_ON_INGEST = False
    case = _world(django_user_model, make_connector)
    width = viewport["width"]
    context = browser.new_context(viewport=viewport, locale="en-GB")
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        login(page, live_server_url, "ines_admin", PASSWORD)
        page.goto(f"{live_server_url}/console/sources/")
        with page.expect_navigation():
            nav_link(page, "segments-link").click()
        _no_sideways_scroll(page, "the empty segments page")
        form = page.locator("#segment-form")
        form.locator("#segment-name").fill("Premium with device trouble")
        with page.expect_navigation():  # a mistake: no test at all would be everyone, refused
            form.locator("button[type=submit]").click()
        expect(page.locator("#segment-form .error")).to_contain_text("a segment needs at least one test")
        assert not Segment.objects.exists()
        form = page.locator("#segment-form")
        expect(form.locator("#segment-name")).to_have_value("Premium with device trouble")
        form.locator("input[name=tier][value=premium]").check()
        form.locator("select[name=signal_type_0]").select_option("device_error")
        form.locator("input[name=signal_count_0]").fill("3")
        with page.expect_navigation():
            form.locator("button[type=submit]").click()
        segment = Segment.objects.get()
        card = page.locator(f"#segment-{segment.pk}")
        expect(card.locator(".segment-count")).to_have_text("1 customer")
        expect(card).to_contain_text("tier Premium; 3+ device error in 7 days")
        _no_sideways_scroll(page, "the segments page")
        screenshot(page, f"segments-{width}", full_page=True)

        page.context.clear_cookies()
        login(page, live_server_url, "maria_agent", PASSWORD)
        page.goto(f"{live_server_url}/console/cases/{case.pk}/")
        profile = page.locator("#customer-profile")
        expect(profile.locator("#profile-tier")).to_have_text("Premium")
        # +49: Berlin's clock, not the server's (UTC): within a minute of Berlin's time now.
        shown = profile.locator("#profile-local-time").inner_text().split()[0]
        berlin = datetime.now(ZoneInfo("Europe/Berlin"))
        assert shown in {(berlin - timedelta(minutes=m)).strftime("%H:%M") for m in (0, 1)}, shown
        expect(profile.locator("#profile-channel")).to_have_text("Website")
        profile.locator("details.profile-edit summary").click()
        profile.locator("#attr-plan").select_option("gold")
        with page.expect_navigation():
            profile.locator("#profile-form button[type=submit]").click()
        expect(page.locator('#customer-profile [data-attribute="plan"]')).to_have_text("gold")
        assert Customer.objects.get(email="ada@example.com").attributes == {"plan": "gold"}
        page.locator("#customer-profile details.why summary").click()
        expect(page.locator("#customer-profile .why-text")).to_contain_text("Europe/Berlin, from the phone number")
        _no_sideways_scroll(page, "the case page with the profile")
        page.locator("#customer").scroll_into_view_if_needed()
        screenshot(page.locator("#customer"), f"profile-{width}")
    finally:
        context.close()
