"""The console on a phone (390x844) and a desktop (1440x900): no sideways scroll on any console
page, the inbox as cards on a phone, "Log out" reachable, scores behind "why"; live rows placed
in the inbox order and a case's side panel and toast following a delivered reply; each role's
landing page after login."""

from __future__ import annotations

import pytest

from responses.models import Case, CaseStatus, Presence, Role, Team
from responses.routing import route_messages
from responses.teams import ensure_default_queues
from tests.e2e.conftest import PAGE_TIMEOUT_MS, login
from tests.fakes.http import Reply
from tests.responses.conftest import PASSWORD, classify, make_user, store_message

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (or fails in CI) with the reason
    expect = None

DESKTOP, TABLET, PHONE = {"width": 1440, "height": 900}, {"width": 820, "height": 1180}, {"width": 390, "height": 844}
VIEWPORTS = pytest.mark.parametrize("viewport", [DESKTOP, TABLET, PHONE], ids=["desktop", "tablet", "phone"])
SIDEWAYS = "() => document.documentElement.scrollWidth - window.innerWidth"
LIVE_MS = 15_000
LONG_NAME = "Maximiliane Alexandra Featherstonehaugh-Montgomery"


def _open(connector, text, *, author, priority=0.5, name="Dana Doe", lane="issue", intent="complaint"):
    message = store_message(connector, text, author=author, name=name, thread=f"t-{author}")
    classify(message, priority=priority, lane=lane, intent=intent)
    route_messages([message.pk])
    return Case.objects.get(conversation=message.conversation)


@pytest.fixture
def desk(transactional_db, django_user_model, make_connector, fake_provider, settings):
    settings.CXM_CLASSIFY_ON_INGEST = False  # classified below, as each test needs
    team = Team.objects.create(name="Care", slug="care")
    ensure_default_queues(team)
    connector = make_connector("webhook", slug="brand-a", config={"callback_url": f"{fake_provider.url}/replies"},
                               credentials={"signing_secret": "s"})
    team.connectors.add(connector)
    people = {
        "agent": make_user(django_user_model, "maria_agent", Role.AGENT, [team], presence=Presence.OFFLINE),
        "manager": make_user(django_user_model, "omar_manager", Role.BRAND_MANAGER, [team]),
        "admin": make_user(django_user_model, "ines_admin", Role.ADMIN, [team]),
    }
    cases = [
        _open(connector, "Charged twice for my plan " + "and nobody answers " * 8, author="c1", priority=0.96,
              name=LONG_NAME),
        _open(connector, "How do I change my email?", author="c2", priority=0.30, intent="question"),
        _open(connector, "Cancel it or I leave", author="c3", priority=0.05, intent="churn_threat"),
    ]
    Case.objects.filter(pk=cases[1].pk).update(status=CaseStatus.PENDING)  # answered: sinks
    return {"team": team, "connector": connector, "cases": cases, "provider": fake_provider, **people}


def _page(browser, viewport):
    context = browser.new_context(viewport=viewport)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    return context, page, errors


def _no_sideways(page, where: str) -> None:
    assert page.evaluate(SIDEWAYS) <= 0, f"{where} scrolls sideways by {page.evaluate(SIDEWAYS)} px"


def _log_out_reachable(page) -> None:
    button = page.get_by_role("button", name="Log out")
    expect(button).to_be_visible()
    box = button.bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= page.evaluate("window.innerWidth")


@VIEWPORTS
def test_console_pages_fit_the_screen_and_read_as_words(browser, live_server_url, desk, viewport):
    context, page, errors = _page(browser, viewport)
    try:
        login(page, live_server_url, "maria_agent", PASSWORD)
        expect(page.locator("#case-rows")).to_be_visible()
        rows = page.locator("#case-rows tr.case-row")
        expect(rows).to_have_count(3)
        ids = [int(i) for i in rows.evaluate_all("rs => rs.map(r => r.dataset.caseId)")]
        urgent, answered, churn = (c.pk for c in desk["cases"])
        assert ids[0] == urgent and ids[-1] == answered  # waiting on the customer sinks
        _no_sideways(page, "the inbox")
        _log_out_reachable(page)
        name = page.locator(f"#case-{urgent} .case-link")
        expect(name).to_be_visible()
        assert name.bounding_box()["width"] >= 120, "the customer's name is squeezed"
        assert page.evaluate("document.documentElement.scrollHeight") < 6 * viewport["height"]
        # Words, not slugs or scores: names on chips, numbers behind "why".
        first = page.locator(f"#case-{urgent}")
        expect(first.locator(".chip.sentiment")).to_have_text("Negative")
        expect(first.locator(".priority")).to_have_text("Urgent")
        expect(first.locator(".why-text")).to_be_hidden()
        expect(page.locator(f"#case-{churn} .chip.intent")).not_to_have_text("churn_threat")
        expect(page.locator(f"#case-{urgent} .channel").first).to_have_attribute("title", "Website")
        if viewport is PHONE:
            assert first.evaluate("r => getComputedStyle(r).display") == "grid", "no card layout on a phone"
        page.screenshot(path=f"/tmp/console-inbox-{viewport['width']}.png", full_page=False)

        page.goto(f"{live_server_url}/console/cases/{urgent}/")
        expect(page.locator("#thread")).to_contain_text("Charged twice")
        _no_sideways(page, "the case page")
        _log_out_reachable(page)
        expect(page.locator("#reply-text")).to_be_visible()
        signals = page.locator("#thread .msg-signals").first
        expect(signals.locator(".why-text")).to_be_hidden()
        signals.locator(".why summary").click()
        expect(signals.locator(".why-text")).to_contain_text("Model")
        _no_sideways(page, "the case page with the why open")
        page.screenshot(path=f"/tmp/console-case-{viewport['width']}.png", full_page=False)

        for path in ("/console/canned/", "/console/noise/", "/console/queue/?queue=resolved", "/console/tokens/",
                     "/console/search/?q=plan", "/console/macros/"):
            page.goto(f"{live_server_url}{path}")
            _no_sideways(page, path)
            _log_out_reachable(page)
        assert not errors, errors
    finally:
        context.close()


@VIEWPORTS
def test_admin_pages_fit_the_screen(browser, live_server_url, desk, viewport):
    context, page, errors = _page(browser, viewport)
    try:
        login(page, live_server_url, "ines_admin", PASSWORD)
        assert page.url.endswith("/console/sources/"), page.url  # admins land on Sources
        for path in ("/console/sources/", "/console/sources/new/", f"/console/sources/{desk['connector'].pk}/",
                     "/console/queue/", "/console/tokens/", "/console/webhooks/", "/console/calendars/",
                     "/console/timed-rules/", "/console/macros/", "/console/insight/", "/console/insight/alerts/"):
            page.goto(f"{live_server_url}{path}")
            _no_sideways(page, path)
            _log_out_reachable(page)
        page.goto(f"{live_server_url}/console/sources/new/")
        card = page.locator(".kind-card[data-kind=telegram]")
        expect(card).to_contain_text("A Telegram bot")  # its description, not a module path
        expect(card).not_to_contain_text("listening.connectors")
        assert not errors, errors
    finally:
        context.close()


def test_a_manager_lands_on_the_dashboards_without_a_status_picker(browser, live_server_url, desk):
    context, page, errors = _page(browser, DESKTOP)
    try:
        login(page, live_server_url, "omar_manager", PASSWORD)
        assert "/console/insight/" in page.url, page.url
        page.goto(f"{live_server_url}/console/queue/")
        expect(page.locator("#case-rows")).to_be_visible()
        expect(page.locator("#presence")).to_have_count(0)
    finally:
        context.close()


def test_live_rows_keep_the_order_and_the_side_panel_follows_the_reply(browser, live_server_url, desk):
    @desk["provider"].route("POST", "/replies")
    def replies(request):
        return Reply(200, {"id": "ext-1"})

    context, page, errors = _page(browser, DESKTOP)
    try:
        login(page, live_server_url, "maria_agent", PASSWORD)
        expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
        page.evaluate("window.__marker = 1")
        urgent, answered, churn = (c.pk for c in desk["cases"])

        middle = _open(desk["connector"], "My router blinks red", author="c5", priority=0.5)

        expect(page.locator(f"#case-{middle.pk}")).to_be_visible(timeout=LIVE_MS)
        ids = [int(i) for i in
               page.locator("#case-rows tr.case-row").evaluate_all("rs => rs.map(r => r.dataset.caseId)")]
        assert ids.index(urgent) < ids.index(middle.pk) < ids.index(answered), ids
        assert page.evaluate("window.__marker") == 1, "the inbox reloaded"
        expect(page.locator(".heading-count")).to_have_text(page.locator("[data-count=active]").first.inner_text())

        page.goto(f"{live_server_url}/console/cases/{middle.pk}/")
        expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
        expect(page.locator("#case-first-response")).to_have_text("not yet")
        page.locator("#reply-text").fill("Sorry about that! A technician is on the way.")
        page.locator("#reply-form button[type=submit][value='1']").click()

        sent = page.locator("#thread article.msg-out", has_text="A technician")
        expect(sent.locator(".status")).to_have_text("delivered", timeout=LIVE_MS)
        expect(page.locator("#case-first-response")).not_to_have_text("not yet", timeout=LIVE_MS)
        expect(page.locator("#case-sla")).to_have_text("—")
        expect(page.locator("#case-status-text")).to_have_text("Resolved", timeout=LIVE_MS)
        expect(page.locator("#toasts")).not_to_contain_text("resolves once", timeout=LIVE_MS)
        assert not errors, errors
    finally:
        context.close()
