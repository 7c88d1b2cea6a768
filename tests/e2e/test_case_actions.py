"""Case actions in a real browser: an agent snoozes a case (it leaves the queue, and comes back
when the customer writes), applies a macro, merges two conversations and undoes the merge; on a
desktop and on a phone."""

from __future__ import annotations

import pytest
from django.urls import NoReverseMatch, reverse

from responses.models import Case, Macro, Role, Team
from responses.routing import route_messages
from responses.teams import ensure_default_queues
from tests.e2e.conftest import login, screenshot
from tests.responses.conftest import PASSWORD, classify, make_user, store_message

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (or fails in CI) with the reason
    expect = None

SIDEWAYS = "() => document.documentElement.scrollWidth - window.innerWidth"


def _queue_path() -> str:
    """The inbox itself (/console/ lands each role on its page once the console has a queue route)."""
    try:
        return reverse("console:queue")
    except NoReverseMatch:
        return reverse("console:inbox")


def _case(connector, text, thread):
    message = store_message(connector, text, author="cust-e2e", thread=thread, name="Dana Doe")
    classify(message)
    route_messages([message.pk])
    return Case.objects.get(conversation=message.conversation)


@pytest.mark.parametrize("viewport", [{"width": 1440, "height": 900}, {"width": 390, "height": 844}],
                         ids=["desktop", "phone"])
def test_agent_snoozes_applies_a_macro_merges_and_undoes(browser, live_server_url, django_user_model, make_connector,
                                                         settings, viewport):
    settings.CXM_CLASSIFY_ON_INGEST = False
    team = Team.objects.create(name="Team A", slug="team-a")
    ensure_default_queues(team)
    connector = make_connector("webhook", slug="brand-a", credentials={"signing_secret": "a"})
    team.connectors.add(connector)
    make_user(django_user_model, "alice_agent", Role.AGENT, [team])
    first = _case(connector, "My parcel never arrived", "t-one")
    second = _case(connector, "And the invoice shows the wrong address", "t-two")
    Macro.objects.create(team=team, title="Refund flow", actions=[{"type": "add_tags", "tags": ["refund"]},
                                                                  {"type": "priority", "value": 0.9}])
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        login(page, live_server_url, "alice_agent", PASSWORD)
        page.goto(f"{live_server_url}/console/cases/{first.pk}/")
        page.select_option("#snooze-preset", "reply")
        with page.expect_navigation():
            page.locator("#snooze-form button[type=submit]").click()
        page.goto(f"{live_server_url}{_queue_path()}")
        expect(page.locator(f"#case-{first.pk}")).to_have_count(0)
        page.goto(f"{live_server_url}{_queue_path()}?queue=snoozed")
        expect(page.locator(f"#case-{first.pk}")).to_have_count(1)

        message = store_message(connector, "Any news about my parcel?", author="cust-e2e", thread="t-one")
        classify(message)
        route_messages([message.pk])  # the customer writes: the case is back
        page.goto(f"{live_server_url}{_queue_path()}")
        expect(page.locator(f"#case-{first.pk}")).to_have_count(1)

        page.goto(f"{live_server_url}/console/cases/{first.pk}/")
        expect(page.locator(".activity-text", has_text="Back from snooze: the customer wrote")).to_be_visible()
        with page.expect_navigation():
            page.locator("button[data-macro='Refund flow']").click()
        expect(page.locator(".activity-text", has_text="Macro “Refund flow” applied")).to_be_visible()
        assert Case.objects.get(pk=first.pk).tags == ["refund"]

        page.locator("#merge summary").click()
        page.select_option("#merge-source", str(second.pk))
        with page.expect_navigation():
            page.locator("#merge button[type=submit]").click()
        expect(page.get_by_text("And the invoice shows the wrong address")).to_be_visible()
        assert Case.objects.get(pk=second.pk).status == "closed"
        assert page.evaluate(SIDEWAYS) <= 0
        screenshot(page, f"case-actions-{viewport['width']}")

        with page.expect_navigation():
            page.locator(f"button[data-undo-merge='{second.pk}']").click()
        expect(page.get_by_text("And the invoice shows the wrong address")).to_have_count(0)
        assert Case.objects.get(pk=second.pk).status != "closed"
    finally:
        context.close()
