"""Outbound webhooks in a real browser (Debian's Chromium) against the real server, on a desktop
(1440x900) and a phone (390x844): an admin adds a webhook to a local receiver and copies its
secret, sees deliveries arrive, sees it switched off after the receiver failed (and why), switches
it back on, and sends one delivery again. No page scrolls sideways."""

from __future__ import annotations

import pytest

from responses import outbound
from responses.models import Role, Team, WebhookDelivery, WebhookSubscription
from responses.teams import ensure_default_queues
from tests.e2e.conftest import login, nav_link, screenshot
from tests.fakes.http import Reply
from tests.responses.conftest import PASSWORD, make_user, open_case

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (or fails in CI) with the reason
    expect = None

SIDEWAYS = "() => document.documentElement.scrollWidth - window.innerWidth"  # > 0: the page scrolls sideways


def _shot(page, name: str) -> None:
    screenshot(page, name.removesuffix(".png"), full_page=True)


@pytest.mark.parametrize("viewport", [{"width": 1440, "height": 900}, {"width": 390, "height": 844}],
                         ids=["desktop", "phone"])
def test_admin_adds_watches_and_revives_a_webhook(browser, live_server_url, django_user_model, make_connector,
                                                  fake_provider, settings, viewport):
    settings.CXM_CLASSIFY_ON_INGEST = False
    settings.CXM_WEBHOOK_DISABLE_AFTER = 2  # this process sends the deliveries of the cases it opens
    team = Team.objects.create(name="Team A", slug="team-a")
    ensure_default_queues(team)
    connector = make_connector("webhook", slug="brand-a", credentials={"signing_secret": "a"})
    team.connectors.add(connector)
    make_user(django_user_model, "olga_admin", Role.ADMIN)
    answer = {"status": 200}
    # No body: a 204 carries none.
    fake_provider.route("POST", "/hook")(lambda r: Reply(answer["status"]))
    size = "desktop" if viewport["width"] > 1000 else "phone"

    context = browser.new_context(viewport=viewport)
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        login(page, live_server_url, "olga_admin", PASSWORD)
        page.goto(f"{live_server_url}/console/")
        nav_link(page, "webhooks-link").click()
        page.wait_for_url("**/console/webhooks/")
        page.get_by_label("Name", exact=True).fill("CRM sync <b>bold</b>")
        page.get_by_label("URL", exact=True).fill(f"{fake_provider.url}/hook")
        page.get_by_label("A case was opened").check()
        page.get_by_label("A case was resolved or closed").check()
        page.get_by_role("button", name="Add webhook").click()
        secret = page.locator("#secret").inner_text()
        row = WebhookSubscription.objects.get()
        assert secret == outbound.crypto.decrypt_text(row.secret_encrypted) and secret.startswith("whsec_")
        expect(page.locator(f"#webhook-{row.pk}")).to_contain_text("Active")
        expect(page.locator(f"#webhook-{row.pk} h2")).to_have_text("CRM sync <b>bold</b>")  # inert text
        assert page.evaluate(SIDEWAYS) <= 0, f"the webhooks page scrolls sideways at {viewport}"

        # A case is opened: the receiver gets it, signed.
        open_case(connector, "My parcel never came", author="c1")
        call = fake_provider.calls("/hook")[0]
        assert outbound.verify(secret, call.headers["x-cxm-signature"], call.body)
        # The receiver breaks: two failures in a row switch the webhook off.
        answer["status"] = 500
        open_case(connector, "Still waiting", author="c2")
        open_case(connector, "Hello?", author="c3")
        row.refresh_from_db()
        assert not row.enabled

        page.goto(f"{live_server_url}/console/webhooks/")
        card = page.locator(f"#webhook-{row.pk}")
        expect(card).to_contain_text("Switched off after failures")
        expect(card).to_contain_text("the receiver answered 500")
        assert secret not in page.content()
        card.get_by_role("link", name="CRM sync <b>bold</b>").click()
        expect(page.locator("#state")).to_have_text("Switched off after failures")
        expect(page.locator("#deliveries .response-status")).to_have_text(["500", "500", "200"])
        assert page.evaluate(SIDEWAYS) <= 0, f"the webhook's page scrolls sideways at {viewport}"
        _shot(page, f"webhook-switched-off-{size}.png")

        # Fixed: switching it on sends what waited, at once.
        answer["status"] = 204
        page.get_by_role("button", name="Switch on and send what waits").click()
        expect(page.locator("#state")).to_have_text("Active")
        expect(page.locator("#deliveries .response-status")).to_have_text(["204", "204", "200"])
        assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"delivered"}

        # Send the oldest again by hand: the receiver sees the same event id twice.
        first = WebhookDelivery.objects.order_by("id").first()
        before = len(fake_provider.calls("/hook"))
        page.locator(f"#delivery-{first.pk}").get_by_role("button", name="Send again").click()
        expect(page.locator(f"#delivery-{first.pk}")).to_contain_text("2 attempts")
        calls = fake_provider.calls("/hook")
        assert len(calls) == before + 1 and calls[-1].headers["x-cxm-delivery"] == str(first.event_id)
        assert page.evaluate(SIDEWAYS) <= 0
        _shot(page, f"webhook-log-{size}.png")
    finally:
        context.close()
