"""A spike alert in a real browser (Debian's Chromium) against the real server: detection runs
while a supervisor's console is open, the alert arrives live as a toast and on the Alerts badge,
and its link opens the alert with the numbers in words and the messages behind it."""

from __future__ import annotations

import pytest
from django.utils import timezone

from insight import alerts
from insight.models import AlertSettings
from responses.models import Role, Team
from tests.e2e.test_console import console, open_page  # noqa: F401 -- open_page is a fixture
from tests.insight.test_alerts import baseline, burst, flat
from tests.responses.conftest import make_user

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (or fails in CI) with the reason
    expect = None


@pytest.fixture
def spike(transactional_db, django_user_model, make_connector, settings):
    """Team A's connector: ten messages an hour all week, then forty in the last ten minutes."""
    settings.CXM_CLASSIFY_ON_INGEST = False
    team = Team.objects.create(name="Team A", slug="team-a")
    connector = make_connector("webhook", slug="brand-a", name="Brand A site")
    team.connectors.add(connector)
    make_user(django_user_model, "sam_a", Role.SUPERVISOR, [team])
    now = timezone.now()
    baseline(connector, now, flat(10))
    burst(connector, now, 40, text="Checkout is broken")
    AlertSettings.current()
    return now


def test_a_spike_reaches_an_open_console_live_and_links_to_its_messages(open_page, live_server_url, spike):  # noqa: F811
    page = console(open_page, live_server_url, "sam_a")
    assert alerts.detect_spikes(spike), "the burst raised no alert"

    toast = page.locator(".toast-alert")
    expect(toast).to_contain_text("Volume spike: Connector Brand A site")
    expect(toast).to_contain_text("40 messages in the last hour against a usual 10")
    expect(page.locator("#alerts-badge")).to_have_text("1")
    toast.get_by_role("link", name="View alert").click()

    expect(page.locator("main")).to_contain_text("40 messages in")
    expect(page.locator("main")).to_contain_text("a usual 10 (z = 9.5)")
    rows = page.locator("table.alert-messages tbody tr")
    expect(rows).to_have_count(40)
    expect(rows.first).to_contain_text("Checkout is broken #")
    page.get_by_role("button", name="Acknowledge").click()
    expect(page.locator("main")).to_contain_text("Acknowledged")
