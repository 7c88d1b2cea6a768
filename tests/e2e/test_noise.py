"""No customer goes unheard, in a real browser: an agent finds a customer among the messages set
aside as spam, says "Not spam — open a case", and lands on the case, on a desktop and on a phone.
"""

from __future__ import annotations

import pytest

from learning.models import Correction
from responses.models import Case, Role, Team
from responses.routing import route_messages
from responses.teams import ensure_default_queues
from tests.e2e.conftest import login
from tests.responses.conftest import PASSWORD, classify, make_user, store_message

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (or fails in CI) with the reason
    expect = None

CUSTOMER = "@Acme wann wird meine Rückerstattung überwiesen? Bestellnummer 48213"
OTHER_TEAM = "TEAM-B-ONLY promo: follow for follow"
SIDEWAYS = "() => document.documentElement.scrollWidth - window.innerWidth"  # > 0: the page scrolls sideways


@pytest.mark.parametrize("viewport", [{"width": 1440, "height": 900}, {"width": 390, "height": 844}],
                         ids=["desktop", "phone"])
def test_agent_opens_a_customer_set_aside_as_spam_and_lands_on_the_case(
        browser, live_server_url, django_user_model, make_connector, settings, viewport):
    settings.CXM_CLASSIFY_ON_INGEST = False  # the test says what the models read
    team_a = Team.objects.create(name="Team A", slug="team-a")
    team_b = Team.objects.create(name="Team B", slug="team-b")
    for team in (team_a, team_b):
        ensure_default_queues(team)
    connector_a = make_connector("webhook", slug="brand-a", credentials={"signing_secret": "a"})
    connector_b = make_connector("webhook", slug="brand-b", credentials={"signing_secret": "b"})
    team_a.connectors.add(connector_a)
    team_b.connectors.add(connector_b)
    make_user(django_user_model, "alice_agent", Role.AGENT, [team_a])
    messages = [store_message(connector_a, CUSTOMER, author="kunde-1"),
                store_message(connector_b, OTHER_TEAM, author="spammer-1")]
    for message in messages:
        classify(message, lane="noise", sentiment="neutral", intent="spam", emotion="neutral", language="de")
    route_messages([m.pk for m in messages])
    assert not Case.objects.exists()

    context = browser.new_context(viewport=viewport)
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        login(page, live_server_url, "alice_agent", PASSWORD)
        page.goto(f"{live_server_url}/console/")
        assert page.evaluate(SIDEWAYS) <= 0, f"the inbox scrolls sideways at {viewport}"
        entry = page.get_by_role("link", name="Set aside as spam")
        expect(entry).to_contain_text("1")
        entry.click()
        page.wait_for_url("**/console/noise/")
        item = page.locator(".noise-item", has_text="Rückerstattung")
        expect(item).to_be_visible()
        expect(page.locator("#noise-messages")).not_to_contain_text("TEAM-B-ONLY")
        overflow = page.evaluate(SIDEWAYS)
        assert overflow <= 0, f"the spam view scrolls sideways by {overflow}px at {viewport}"

        item.get_by_role("button", name="Not spam — open a case").click()
        page.wait_for_url("**/console/cases/*/")
        case = Case.objects.get(conversation=messages[0].conversation)
        assert page.url.endswith(f"/console/cases/{case.pk}/")
        expect(page.locator("#thread")).to_contain_text("Bestellnummer 48213")
        expect(page.locator("#thread")).to_contain_text("from Spam as Issue")
        assert (case.lane, case.queue.slug, case.team_id) == ("issue", "care", team_a.pk)
        assert Correction.objects.filter(message=messages[0], field="lane", value="issue").count() == 1

        page.goto(f"{live_server_url}/console/noise/")
        expect(page.locator("#no-noise")).to_be_visible()
    finally:
        context.close()
