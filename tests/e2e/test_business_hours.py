"""Business hours in a real browser: a supervisor finds the pages in the console's navigation,
sets the team's weekly hours (a mistake is refused with the reason), imports a holiday from an
iCal file, and adds a timed rule; a message that arrives at night then shows its SLA due on the
next business morning, after the holiday, on the case page. On a desktop and on a phone, with no
sideways scroll."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from listening.models import Message
from responses.models import BusinessCalendar, CannedResponse, Case, Role, Team, TimedRule
from responses.routing import route_messages
from responses.teams import ensure_default_queues
from tests.e2e.conftest import login, nav_link, screenshot
from tests.responses.conftest import PASSWORD, classify, make_user, store_message

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (or fails in CI) with the reason
    expect = None

PARIS = ZoneInfo("Europe/Paris")
SIDEWAYS = "() => document.documentElement.scrollWidth - window.innerWidth"
HOURS = "09:00-12:30, 13:30-18:00"
# Tuesday 2 March 2027, 23:00 in Paris: the team has closed. Wednesday is the imported holiday,
# so the Care queue's 60-minute SLA runs from Thursday 09:00 and falls due at 10:00.
NIGHT = datetime(2027, 3, 2, 23, 0, tzinfo=PARIS)
DUE = datetime(2027, 3, 4, 10, 0, tzinfo=PARIS)
ICS = b"""BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//CXM tests//EN\r
BEGIN:VEVENT\r
UID:company-day-2027@example.com\r
DTSTAMP:20270101T000000Z\r
SUMMARY:Company day\r
DTSTART;VALUE=DATE:20270303\r
DTEND;VALUE=DATE:20270304\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:all-hands-2027@example.com\r
DTSTAMP:20270101T000000Z\r
SUMMARY:All hands (a meeting, not a closed day)\r
DTSTART:20270305T140000Z\r
DTEND:20270305T150000Z\r
END:VEVENT\r
END:VCALENDAR\r
"""


def _no_sideways_scroll(page, where: str) -> None:
    assert page.evaluate(SIDEWAYS) <= 0, f"{where} scrolls sideways"


def _night_case(connector) -> Case:
    """A customer writes at night: the message is ingested as usual, then dated to the night
    (ingestion stamps received_at with the clock, and the SLA counts from it)."""
    message = store_message(connector, "I was charged twice for my order", author="cust-night", thread="t-night",
                            name="Noor Haddad")
    Message.objects.filter(pk=message.pk).update(sent_at=NIGHT, received_at=NIGHT)
    message.refresh_from_db()
    classify(message, priority=0.6)
    route_messages([message.pk])
    return Case.objects.get(conversation=message.conversation)


@pytest.mark.parametrize("viewport", [{"width": 1440, "height": 900}, {"width": 390, "height": 844}],
                         ids=["desktop", "phone"])
def test_supervisor_sets_business_hours_and_a_night_case_is_due_next_business_morning(
        browser, live_server_url, django_user_model, make_connector, settings, viewport):
    settings.CXM_CLASSIFY_ON_INGEST = False
    team = Team.objects.create(name="Care Paris", slug="care-paris")
    ensure_default_queues(team)
    connector = make_connector("webhook", slug="brand-a", credentials={"signing_secret": "a"})
    team.connectors.add(connector)
    make_user(django_user_model, "sam_supervisor", Role.SUPERVISOR, [team])
    CannedResponse.objects.create(team=team, title="Closing quiet cases",
                                  text="We have not heard back, {customer_name}, so we close this for now.")
    # The supervisor works in Paris: the browser shows times on its own clock, as an agent's would.
    context = browser.new_context(viewport=viewport, timezone_id="Europe/Paris", locale="en-GB")
    page = context.new_page()
    page.set_default_timeout(10_000)
    width = viewport["width"]
    try:
        login(page, live_server_url, "sam_supervisor", PASSWORD)
        page.goto(f"{live_server_url}/console/")
        with page.expect_navigation():
            nav_link(page, "hours-link").click()
        expect(page.locator(f"#calendar-{team.pk}")).to_contain_text("Open around the clock")
        _no_sideways_scroll(page, "the calendars page (no hours yet)")
        with page.expect_navigation():
            page.locator(f"#calendar-{team.pk} a", has_text="Set hours").click()

        # A mistake first: two intervals that overlap are refused with the reason, nothing saved.
        page.fill("#time_zone", "Europe/Paris")
        page.fill("#day_0", "09:00-12:30, 12:00-18:00")
        with page.expect_navigation():
            page.locator("#calendar-form button[type=submit]").click()
        expect(page.locator("#calendar-error")).to_contain_text("Monday: 09:00-12:30 and 12:00-18:00 overlap")
        assert not BusinessCalendar.objects.exists()
        _no_sideways_scroll(page, "the calendar form with an error")
        if width == 1440:
            screenshot(page, "business-hours-1440", full_page=True)

        for day in range(5):
            page.fill(f"#day_{day}", HOURS)
        for day in (5, 6):
            page.fill(f"#day_{day}", "")
        page.set_input_files("#ical", files=[{"name": "holidays.ics", "mimeType": "text/calendar", "buffer": ICS}])
        _no_sideways_scroll(page, "the calendar form")
        with page.expect_navigation():
            page.locator("#calendar-form button[type=submit]").click()
        expect(page.locator(".flash")).to_contain_text("1 holiday date imported from the iCal file")
        expect(page.locator(".flash")).to_contain_text("1 timed event skipped")
        card = page.locator(f"#calendar-{team.pk}")
        expect(card).to_contain_text("Europe/Paris")
        expect(card.locator("dl.hours-grid")).to_contain_text(HOURS)
        expect(card).to_contain_text("Company day")
        _no_sideways_scroll(page, "the calendars page")
        calendar = BusinessCalendar.objects.get(team=team)
        assert [(h.date.isoformat(), h.name) for h in calendar.holidays.all()] == [("2027-03-03", "Company day")]

        # A customer writes at night; the case page shows the SLA due on Thursday morning.
        case = _night_case(connector)
        assert case.sla_due_at == DUE
        page.goto(f"{live_server_url}/console/cases/{case.pk}/")
        due = page.locator("#case-sla time")
        expect(due).to_have_attribute("datetime", DUE.astimezone(ZoneInfo("UTC")).isoformat())
        expect(due).to_contain_text("4 Mar")
        expect(due).to_contain_text("10:00")
        _no_sideways_scroll(page, "the case page")

        # A timed rule, through the page.
        with page.expect_navigation():
            nav_link(page, "timed-rules-link").click()
        expect(page.locator(".empty")).to_contain_text("No timed rules yet")
        with page.expect_navigation():
            page.locator("a", has_text="New rule").click()
        page.fill("#id_name", "Close quiet cases")
        page.select_option("#id_trigger", "pending")
        page.fill("#id_after_hours", "48")
        page.select_option("#id_action", "close")
        page.select_option("#id_canned", label="Closing quiet cases")
        _no_sideways_scroll(page, "the timed rule form")
        with page.expect_navigation():
            page.locator("#timed-rule-form button[type=submit]").click()
        rule = TimedRule.objects.get()
        assert (rule.team_id, rule.trigger, rule.after_minutes, rule.action) == (team.pk, "pending", 48 * 60, "close")
        expect(page.locator(f"#timed-rule-{rule.pk}")).to_contain_text(
            "Waiting on the customer for 48 business hours: close it with “Closing quiet cases”")
        _no_sideways_scroll(page, "the timed rules page")
        if width == 390:
            screenshot(page, "timed-rules-390", full_page=True)
    finally:
        context.close()
