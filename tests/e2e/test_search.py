"""Search in a real browser: an agent searches from the top bar, narrows with a filter, opens a
result, saves the search as a view and finds it in the sidebar with its count; on a desktop and on
a phone, with no sideways scroll, and nothing of another team's on the page."""

from __future__ import annotations

import pytest
from django.urls import reverse

from responses.models import Case, CaseStatus, Role, SavedView, Team
from responses.routing import route_messages
from responses.teams import ensure_default_queues
from tests.e2e.conftest import login, screenshot
from tests.responses.conftest import PASSWORD, classify, make_user, store_message

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (or fails in CI) with the reason
    expect = None

SIDEWAYS = "() => document.documentElement.scrollWidth - window.innerWidth"


def _case(connector, text: str, thread: str, name: str, *, lane: str = "issue") -> Case:
    message = store_message(connector, text, author=f"cust-{thread}", thread=thread, name=name)
    classify(message, lane=lane)
    route_messages([message.pk])
    return Case.objects.get(conversation=message.conversation)


@pytest.mark.parametrize("viewport", [{"width": 1440, "height": 900}, {"width": 390, "height": 844}],
                         ids=["desktop", "phone"])
def test_search_agent_searches_filters_opens_and_saves_a_view(browser, live_server_url, django_user_model,
                                                              make_connector, settings, viewport):
    settings.CXM_CLASSIFY_ON_INGEST = False
    team = Team.objects.create(name="Team A", slug="team-a")
    other = Team.objects.create(name="Team B", slug="team-b")
    ensure_default_queues(team)
    ensure_default_queues(other)
    connector = make_connector("webhook", slug="brand-a", credentials={"signing_secret": "a"})
    hidden = make_connector("webhook", slug="brand-b", credentials={"signing_secret": "b"})
    team.connectors.add(connector)
    other.connectors.add(hidden)
    make_user(django_user_model, "alice_agent", Role.AGENT, [team])
    waiting = _case(connector, "Where is my refund? It has been two weeks", "t-wait", "Dana Doe")
    done = _case(connector, "Thanks, the refund arrived today", "t-done", "Eli Moss", lane="praise")
    _case(connector, "The app crashes when I open the map", "t-other", "Fay Lund")
    _case(hidden, "Refund for order 7 of team B", "t-hidden", "Secret Person")
    Case.objects.filter(pk=done.pk).update(status=CaseStatus.RESOLVED)

    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        login(page, live_server_url, "alice_agent", PASSWORD)
        page.goto(f"{live_server_url}{reverse('console:queue')}")
        box = page.locator("#search-q")
        box.fill("refund")
        with page.expect_navigation():
            box.press("Enter")
        results = page.locator("#search-results .result")
        expect(results).to_have_count(2)
        expect(page.locator("#search-title")).to_have_text("2 matches")
        expect(page.locator("#search-results mark").first).to_have_text("refund")
        expect(page.get_by_text("Secret Person")).to_have_count(0)  # team B's case is not shown
        assert page.evaluate(SIDEWAYS) <= 0

        page.locator(".search-filters summary").click()
        page.select_option(".search-filters select[name=status]", "active")
        with page.expect_navigation():
            page.locator(".filter-actions button[type=submit]").click()
        expect(results).to_have_count(1)
        expect(page.locator("#search-title")).to_have_text("1 match")
        expect(results.first).to_contain_text("Where is my refund?")
        assert page.evaluate(SIDEWAYS) <= 0

        page.locator(".save-view summary").first.click()
        page.fill("#save-view-form input[name=name]", "Open refunds")
        with page.expect_navigation():
            page.locator("#save-view-form button[type=submit]").click()
        view = SavedView.objects.get(owner__username="alice_agent")
        assert view.query == "refund" and view.filters == {"status": "active"}
        link = page.locator(f".saved-views a[data-view-id='{view.pk}']")
        expect(link).to_contain_text("Open refunds")
        expect(page.locator(f"[data-view-count='{view.pk}']")).to_have_text("1")
        expect(page.locator("#search-title")).to_have_text("Open refunds · 1 match")
        assert page.evaluate(SIDEWAYS) <= 0
        screenshot(page, f"search-{viewport['width']}")

        # The sidebar's count follows a new matching message once the page refreshes the counts.
        _case(connector, "A second refund question", "t-new", "Gus Hale")
        page.evaluate("() => document.dispatchEvent(new Event('visibilitychange'))")
        expect(page.locator(f"[data-view-count='{view.pk}']")).to_have_text("2")

        with page.expect_navigation():
            page.locator("#search-results .result-title", has_text="Dana Doe").click()
        assert page.url.endswith(reverse("console:case", kwargs={"case_id": waiting.pk}))
        expect(page.get_by_text("Where is my refund? It has been two weeks")).to_be_visible()
        assert page.evaluate(SIDEWAYS) <= 0
    finally:
        context.close()
