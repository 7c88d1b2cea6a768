"""The dashboards in a real browser (Debian's Chromium) against the real server: charts drawn by
Plotly.js under the console's CSP from classified messages, a click on a bar opens the messages
behind it and their case, CSV, PNG and PDF exports download, and a message classified while the
page is open updates the charts without a reload.

Data is built with the ORM (store, classify, route, then the rollups rebuilt from it); the live
test posts one signed webhook delivery that the server classifies with the bundled model.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from insight.panels import PANELS
from learning import rollups
from responses.models import Role, Team
from responses.teams import ensure_default_queues
from tests.e2e.conftest import PAGE_TIMEOUT_MS, login, screenshot
from tests.e2e.test_console import FIRST_CLASSIFIED_MS, SECRET_A, post_message
from tests.responses.conftest import PASSWORD, make_user, open_case

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (or fails in CI) with the reason
    expect = None

# What the page shows (not inside a closed disclosure, tables and charts scroll in their own box)
# past the right edge of the window.
WIDER_THAN_THE_SCREEN = """() => [...document.querySelectorAll('main *')].filter((e) => {
    const r = e.getBoundingClientRect(); return r.width > 0 && r.right > innerWidth + 1
      && !e.closest('details:not([open]) > :not(summary), .table-scroll, .js-plotly-plot, [data-table]');
  }).map((e) => `${e.tagName} ${e.className}`.trim())"""
CSP_WORDS = ("Content Security Policy", "Content-Security-Policy", "addRelatedStyleRule", "addStyleRule")


@dataclass
class Desk:
    team: Team
    connector: object
    manager: object
    cases: dict


@pytest.fixture
def desk(transactional_db, django_user_model, make_connector, settings) -> Desk:
    """Team A owns a webhook connector with three classified, routed messages (two negative, one
    positive); Mia is its brand manager. Team B's message must never show."""
    settings.CXM_CLASSIFY_ON_INGEST = False  # these are classified here, without the model
    team = Team.objects.create(name="Team A", slug="team-a")
    other = Team.objects.create(name="Team B", slug="team-b")
    ensure_default_queues(team)
    ensure_default_queues(other)
    connector = make_connector("webhook", slug="brand-a", credentials={"signing_secret": SECRET_A})
    connector_b = make_connector("webhook", slug="brand-b", credentials={"signing_secret": "s3cret-b"})
    team.connectors.add(connector)
    other.connectors.add(connector_b)
    cases = {
        "angry": open_case(connector, "My order never arrived!", author="c1"),
        "refund": open_case(connector, "Still waiting for my refund", author="c2", intent="refund_request",
                            emotion="sadness"),
        "happy": open_case(connector, "Thanks, great service", author="c3", lane="praise", sentiment="positive",
                           intent="praise", emotion="joy"),
        "other": open_case(connector_b, "TEAM-B-ONLY message", author="c4"),
    }
    rollups.rebuild()
    manager = make_user(django_user_model, "mia_a", Role.BRAND_MANAGER, [team])
    return Desk(team=team, connector=connector, manager=manager, cases=cases)


@pytest.fixture
def dashboard(browser, live_server_url):
    """dashboard(username) -> a logged-in page on the dashboards with every panel loaded and the
    live socket up. Script errors and CSP refusals on the page fail the test."""
    contexts, problems = [], []

    def open_(username: str, query: str = ""):
        context = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
        page.on("console", lambda message: problems.append(f"console: {message.text}")
                if any(w in message.text for w in CSP_WORDS) else None)
        login(page, live_server_url, username, PASSWORD)
        page.goto(f"{live_server_url}/console/insight/{query}")
        for name in ("sentiment", "volume", "intents", "emotions", "topics", "care", "recovered"):
            expect(page.locator(f"#panel-{name}")).to_have_attribute("data-loaded", "1")
        expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
        return page

    yield open_
    for context in contexts:
        context.close()
    assert not problems, problems


def kpi(page, panel: str, label: str):
    return page.locator(f"#panel-{panel} .kpi", has=page.locator(".kpi-label", has_text=label)).locator(".kpi-value")


def test_dashboard_draws_charts_from_classified_messages_under_the_csp(dashboard, desk):
    page = dashboard("mia_a")
    expect(kpi(page, "sentiment", "Messages")).to_have_text("3")
    expect(kpi(page, "sentiment", "Net sentiment")).to_have_text("-33")
    # Plotly drew real charts: three sentiment bar traces and the net score line.
    expect(page.locator("#panel-sentiment .js-plotly-plot .trace.bars")).to_have_count(3)
    expect(page.locator("#panel-sentiment .js-plotly-plot .scatterlayer .trace")).to_have_count(1)
    expect(page.locator("#panel-sentiment .xtitle")).to_have_text("Day")
    expect(page.locator("#panel-sentiment .ytitle").first).to_have_text("Share of messages (%)")
    expect(page.locator("#panel-volume .js-plotly-plot")).to_have_count(2)
    expect(page.locator("#panel-intents .js-plotly-plot .trace.bars").first).to_be_attached()
    # Plotly's own rules come from our stylesheet, not from a refused <style> element.
    position = "getComputedStyle(document.querySelector('#panel-sentiment .main-svg')).position"
    assert page.evaluate(position) == "absolute"
    assert page.locator("style#plotly\\.js-style-global").count() == 0
    # The numbers behind each chart are in a table, for screen readers and keyboards.
    table = page.locator("#panel-intents [data-table='items'] table")
    expect(table.locator("caption")).to_have_text("Intents")
    expect(table.locator("tbody tr")).to_have_count(3)
    expect(table.locator("tbody")).to_contain_text("Refund request")
    assert "TEAM-B-ONLY" not in page.content()
    # The care panel says which filters it ignores.
    expect(page.locator("#panel-care [data-role='ignored']")).to_contain_text("language and term")


def test_clicking_a_bar_opens_its_messages_and_their_case(dashboard, desk, live_server_url):
    page = dashboard("mia_a")
    # The negative part of today's bar in the sentiment chart.
    bars = page.locator("#panel-sentiment .trace.bars").first.locator("path")
    boxes = [b for b in (bars.nth(i).bounding_box() for i in range(bars.count())) if b and b["height"] > 2]
    assert boxes, "no negative bar drawn"
    box = max(boxes, key=lambda b: b["height"])
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.85  # low: away from the net score line
    page.mouse.move(x, y)
    expect(page.locator(".hoverlayer .hovertext")).to_contain_text("Negative: 2 messages")
    with page.expect_navigation():
        page.mouse.click(x, y)
    assert "/console/insight/messages/" in page.url and "sentiment=negative" in page.url
    rows = page.locator("#drill-messages tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("#drill-messages")).to_contain_text("My order never arrived!")
    expect(page.locator("#drill-messages")).to_contain_text("Still waiting for my refund")
    expect(page.locator("#drill-messages")).not_to_contain_text("Thanks, great service")
    angry = desk.cases["angry"]
    page.locator("#drill-messages tr", has_text="My order never arrived!").locator("a.case-open").click()
    expect(page).to_have_url(f"{live_server_url}/console/cases/{angry.pk}/")
    expect(page.locator("#thread")).to_contain_text("My order never arrived!")


def test_table_links_reach_the_drill_down_from_the_keyboard(dashboard, desk):
    page = dashboard("mia_a")
    link = page.locator("#panel-intents [data-table='items'] a", has_text="1").first
    link.focus()
    expect(link).to_be_visible()  # a focused link in a hidden table shows its table
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "intent=" in page.url
    expect(page.locator("#drill-messages tbody tr")).to_have_count(1)


def test_csv_png_and_pdf_exports_download(dashboard, desk):
    page = dashboard("mia_a")
    with page.expect_download() as csv_download:
        page.locator("#panel-sentiment a[data-role='csv']").click()
    assert re.fullmatch(r"cxm-sentiment-\d{8}-\d{8}\.csv", csv_download.value.suggested_filename)
    text = Path(csv_download.value.path()).read_text(encoding="utf-8")
    assert text.startswith("bucket_start,bucket,negative,neutral,positive,total,net,not_scored")

    with page.expect_download(timeout=30_000) as png_download:
        page.get_by_role("button", name="Download PNG").click()
    assert png_download.value.suggested_filename.endswith(".png")
    png = Path(png_download.value.path()).read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(png))
    assert image.width == 3200 and image.height > 2000, image.size
    # Not a blank canvas: the charts' colours are in it (Okabe–Ito vermillion and blue bars).
    colours = {c for _, c in image.convert("RGB").getcolors(maxcolors=1 << 20)}
    assert (0xD5, 0x5E, 0x00) in colours and (0x00, 0x72, 0xB2) in colours

    with page.expect_download(timeout=30_000) as pdf_download:
        page.get_by_role("button", name="Download PDF").click()
    assert pdf_download.value.suggested_filename.endswith(".pdf")
    assert Path(pdf_download.value.path()).read_bytes().startswith(b"%PDF-")


def test_a_newly_classified_message_updates_the_charts_live(dashboard, desk, live_server_url):
    page = dashboard("mia_a")
    expect(kpi(page, "volume", "Messages")).to_have_text("3")
    page.evaluate("window.__marker = 1")
    post_message(live_server_url, desk.connector, SECRET_A, "The app crashes every time I open my basket",
                 author="c-live")
    # Within 30 s, before the page's 60 s fallback refresh: only the websocket's ping can do it.
    expect(kpi(page, "volume", "Messages")).to_have_text("4", timeout=FIRST_CLASSIFIED_MS)
    expect(kpi(page, "sentiment", "Messages")).to_have_text("4")
    assert page.evaluate("window.__marker") == 1, "the page reloaded instead of updating live"


@pytest.mark.parametrize("viewport", [{"width": 1440, "height": 900}, {"width": 390, "height": 844}],
                         ids=["desktop", "phone"])
def test_the_dashboard_fits_a_desktop_and_a_phone(browser, live_server_url, desk, viewport):
    """Every panel loads, nothing scrolls sideways, and a period against an empty previous one
    reads "new" (not "+4600%"). CXM_SCREENSHOTS=<folder> saves what the page looks like."""
    context = browser.new_context(viewport=viewport)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    problems = []
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    try:
        login(page, live_server_url, "mia_a", PASSWORD)
        page.goto(f"{live_server_url}/console/insight/")
        for name in PANELS:
            expect(page.locator(f"#panel-{name}")).to_have_attribute("data-loaded", "1")
        sentiment_messages = page.locator("#panel-sentiment .kpi", has=page.locator(".kpi-label", has_text="Messages"))
        expect(sentiment_messages.locator(".kpi-compare")).to_have_text("new: none in the previous period")
        widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert widths[0] <= widths[1], f"the page scrolls sideways: {widths[0]} px wide in {widths[1]}"
        wide = page.evaluate(WIDER_THAN_THE_SCREEN)
        assert not wide, f"wider than the screen: {wide[:5]}"
        for choice in page.locator("details.choice").all():  # each filter's list, opened, stays on the screen
            choice.locator("summary").click()
            assert not page.evaluate(WIDER_THAN_THE_SCREEN), choice.locator("summary").inner_text()
            choice.locator("summary").click()
        screenshot(page, f"dashboard-{viewport['width']}")
    finally:
        context.close()
    assert not problems, problems
