"""Sources in a real browser (Debian's Chromium) against the real server: an admin connects a
source from the product's pages, tests the connection, watches it, pauses and resumes it, and
backfills it from a date. Two kinds: an RSS feed (pasted settings, polling) and a Mastodon
account (OAuth sign-in on the provider's page). The providers are local fakes on loopback."""

from __future__ import annotations

import html
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.utils import timezone

from listening.models import AuditEvent, Connector, Message
from responses.models import Role
from tests.e2e.test_console import console, open_page  # noqa: F401 -- open_page is a fixture
from tests.fakes.http import Reply
from tests.fakes.mastodon import FakeMastodon
from tests.listening.test_backfill import mention_at
from tests.responses.conftest import make_user

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (or fails in CI) with the reason
    expect = None

FEED = (Path(__file__).parents[1] / "fixtures" / "rss" / "app_reviews.rss.xml").read_bytes()


@pytest.fixture
def ops(transactional_db, django_user_model, settings):
    settings.CXM_CLASSIFY_ON_INGEST = False
    return make_user(django_user_model, "olga_admin", Role.ADMIN)


def fill_common(page, name: str, slug: str) -> None:
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Slug", exact=True).fill(slug)


def test_an_admin_connects_tests_watches_pauses_and_backfills_a_feed(open_page, live_server_url, ops,  # noqa: F811
                                                                      fake_provider):
    fake_provider.route("GET", "/reviews.xml")(lambda r: Reply(200, FEED, {"Content-Type": "application/rss+xml"}))
    page = console(open_page, live_server_url, "olga_admin", "/console/sources/")
    page.get_by_role("link", name="Connect a source").click()
    page.get_by_role("link", name="RSS / Atom feed").click()
    fill_common(page, "App reviews feed", "app-reviews")
    page.get_by_label("URL", exact=True).fill(f"{fake_provider.url}/reviews.xml")
    page.get_by_role("button", name="Save source").click()

    expect(page.locator("h1")).to_contain_text("App reviews feed")
    page.locator("body[data-sources-ready='1']").wait_for()
    page.get_by_role("button", name="Test connection").click()
    expect(page.locator("#test-result")).to_contain_text("✓")
    assert not Message.objects.exists(), "a test must store nothing"

    since = (timezone.now() - timedelta(days=365)).date().isoformat()
    page.locator("body[data-sources-ready='1']").wait_for()
    page.locator("#since").fill(since)
    page.get_by_role("button", name="Backfill").click()
    # Tasks are eager in this server: the POST answers once it has stored and classified the page.
    expect(page.locator("#backfill-status")).to_contain_text("done", timeout=90_000)
    stored = Message.objects.filter(connector__slug="app-reviews").count()
    assert stored > 0
    expect(page.locator("#backfill-status")).to_contain_text(f"{stored} new")

    page.get_by_role("link", name="← Sources").click()
    row = page.locator(f"#connector-{Connector.objects.get(slug='app-reviews').pk}")
    expect(row.locator("td.num").nth(0)).to_have_text(str(stored))  # messages in the last hour
    row.get_by_role("button", name="Pause").click()
    expect(row).to_contain_text("paused")
    assert not Connector.objects.get(slug="app-reviews").enabled
    row.get_by_role("button", name="Resume").click()
    expect(row.get_by_role("button", name="Pause")).to_be_visible()

    actions = list(AuditEvent.objects.order_by("id").values_list("action", flat=True))
    assert actions == ["created", "backfill", "paused", "resumed"]


def consent_page(mastodon):
    """The instance's /oauth/authorize page: the account owner clicks Authorize and is sent back to
    CXM with a code bound to the redirect URI and the PKCE challenge."""
    def serve(request):
        query = request.query
        code = mastodon.authorize(query["redirect_uri"], challenge=query.get("code_challenge", ""),
                                  scope=query.get("scope", ""))
        back = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"
        page = (f"<!doctype html><title>Authorize</title><h1>Authorization required</h1>"
                f"<p>{html.escape(query['client_id'])} would like to access your account.</p>"
                f"<a href=\"{html.escape(back)}\">Authorize</a>")
        return Reply(200, page.encode(), {"Content-Type": "text/html; charset=utf-8"})
    return serve


def test_an_admin_connects_a_mastodon_account_with_oauth_then_backfills_and_watches_it(
        open_page, live_server_url, ops, fake_provider):  # noqa: F811
    mastodon = FakeMastodon(fake_provider, "granted-token", client_id="cxm-app", client_secret="cxm-app-secret")
    fake_provider.route("GET", "/oauth/authorize")(consent_page(mastodon))
    now = timezone.now()
    for day in range(12):
        mention_at(mastodon, now - timedelta(days=day, hours=2), day)

    page = console(open_page, live_server_url, "olga_admin", "/console/sources/new/")
    page.get_by_role("link", name="Mastodon account").click()
    fill_common(page, "Acme on Mastodon", "acme-social")
    page.get_by_label("Instance URL", exact=True).fill(fake_provider.url)
    page.get_by_label("Client ID", exact=True).fill("cxm-app")
    page.get_by_label("Client secret", exact=True).fill("cxm-app-secret")
    page.get_by_role("button", name="Save source").click()
    expect(page.locator("#missing")).to_contain_text("access_token")
    assert "cxm-app-secret" not in page.content()

    page.get_by_role("button", name="Connect with Mastodon account").click()
    expect(page.locator("h1")).to_have_text("Authorization required")
    page.get_by_role("link", name="Authorize").click()
    expect(page.locator("#test-result")).to_contain_text("✓ Signed in as @acme")
    assert Connector.objects.get(slug="acme-social").credentials["access_token"] == "granted-token"
    assert "granted-token" not in page.content()

    page.locator("body[data-sources-ready='1']").wait_for()
    page.locator("#since").fill((now - timedelta(days=7)).date().isoformat())
    page.get_by_role("button", name="Backfill").click()
    # Tasks are eager in this server: the POST answers once it has stored and classified the page.
    expect(page.locator("#backfill-status")).to_contain_text("done", timeout=90_000)
    stored = Message.objects.filter(connector__slug="acme-social").count()
    assert 7 <= stored <= 8, stored
    page.reload()
    expect(page.locator("#headroom")).to_contain_text("of 300 calls left")
    expect(page.locator("#last-hour")).to_have_text(str(stored))

    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#state")).to_have_text("paused")
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#state")).to_have_text("ok")
    actions = list(AuditEvent.objects.order_by("id").values_list("action", flat=True))
    assert actions == ["created", "oauth_connected", "backfill", "paused", "resumed"]
