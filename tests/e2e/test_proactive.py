"""Proactive care in a real browser, on a desktop and on a phone: a device's burst of errors,
delivered through the signed generic webhook, opens a proactive case live in an agent's inbox (no
reload) with a toast; the agent opens it, sees why (the rule and its signals) and the customer's
signal timeline, and sends an approved WhatsApp template, which the fake Graph API receives
exactly once."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from listening.actions import ingest_messages
from listening.connectors.base import InboundAuthor, InboundMessage
from listening.connectors.webhook import sign
from responses.models import Case, ProactiveMessage, Reply, Role, SignalRule, Team
from responses.teams import ensure_default_queues
from tests.e2e.conftest import login, screenshot
from tests.fakes.meta import FakeGraph
from tests.responses.conftest import PASSWORD, make_user

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (or fails in CI) with the reason
    expect = None

SIDEWAYS = "() => document.documentElement.scrollWidth - window.innerWidth"
NUMBER_ID, WA_ID, TOKEN = "999000111222333", "15551234567", "EAAGtest-token"
SIGNING_SECRET = "device-cloud-secret"
LIVE_MS = 15_000


def _send_signals(base_url: str, slug: str, n: int) -> None:
    now = timezone.now()
    body = json.dumps({"signals": [
        {"id": f"thermo-42-{i}", "type": "device_error", "device_id": "thermo-42",
         "customer": {"email": "ana@example.com"}, "payload": {"code": "E42", "severity": "error"},
         "occurred_at": (now - timedelta(seconds=60 - i)).isoformat()} for i in range(n)]}).encode()
    headers = {"Content-Type": "application/json", **sign(SIGNING_SECRET, int(time.time()), body)}
    response = httpx.post(f"{base_url}/hooks/{slug}/", content=body, headers=headers, timeout=60)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("viewport", [{"width": 1440, "height": 900}, {"width": 390, "height": 844}],
                         ids=["desktop", "phone"])
def test_burst_opens_a_proactive_case_live_and_the_agent_sends_a_template(
        browser, live_server_url, django_user_model, make_connector, fake_provider, settings, viewport):
    settings.CXM_CLASSIFY_ON_INGEST = False
    graph = FakeGraph(fake_provider, token=TOKEN)
    team = Team.objects.create(name="Care", slug="care")
    ensure_default_queues(team)
    whatsapp = make_connector("meta", slug="acme-whatsapp", name="Acme WhatsApp",
                              credentials={"app_secret": "s", "verify_token": "v", "access_token": TOKEN},
                              config={"api_base": graph.url, "phone_number_id": NUMBER_ID, "templates": [
                                  "device_help | en | Hi {{1}}, your {{2}} reported errors. Reply here and we will "
                                  "help."]})
    devices = make_connector("webhook", slug="device-cloud", name="Device cloud",
                             credentials={"signing_secret": SIGNING_SECRET})
    team.connectors.add(whatsapp, devices)
    maria = make_user(django_user_model, "maria", Role.AGENT, [team])
    maria.first_name, maria.last_name = "Maria", "Santos"
    maria.save(update_fields=["first_name", "last_name"])
    # Ana wrote on WhatsApp three days ago: the 24-hour window is closed.
    ingest_messages(whatsapp, [InboundMessage(
        external_id="wamid.old", text="Thanks, all good now", channel="whatsapp",
        sent_at=timezone.now() - timedelta(days=3), thread_id=f"{NUMBER_ID}:{WA_ID}",
        author=InboundAuthor(external_id=WA_ID, display_name="Ana Lima", email="ana@example.com",
                             email_verified=True))])
    SignalRule.objects.create(name="Device in trouble", signal_type="device_error", per="device", threshold=5,
                              window_minutes=60, actions={"open_case": True, "priority": 0.9, "alert": True})

    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.set_default_timeout(10_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    name = "desktop" if viewport["width"] > 700 else "phone"
    try:
        login(page, live_server_url, "maria", PASSWORD)
        page.goto(f"{live_server_url}/console/queue/")
        expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
        page.evaluate("window.__marker = 1")

        _send_signals(live_server_url, devices.slug, 4)  # below the threshold: nothing yet
        _send_signals(live_server_url, devices.slug, 6)  # two new ids: the fifth error in the hour
        row = page.locator(".case-row", has_text="Ana Lima")
        expect(row).to_be_visible(timeout=LIVE_MS)
        expect(row).to_contain_text("proactive")
        expect(page.locator(".toast", has_text="Device in trouble for Ana Lima")).to_be_visible()
        assert page.evaluate("window.__marker") == 1, "the inbox reloaded instead of updating live"
        case = Case.objects.get(conversation__external_id__startswith="proactive:")
        assert page.evaluate(SIDEWAYS) <= 0
        if name == "desktop":
            screenshot(page, "proactive-inbox-desktop")

        page.goto(f"{live_server_url}/console/cases/{case.pk}/")
        reason = page.locator("#signals-reason")
        expect(reason).to_contain_text("5 × device error within 1 hour")
        expect(reason.locator(".signal-item")).to_have_count(5)
        expect(page.locator("#signal-timeline .signal-item").first).to_contain_text("thermo-42")
        picker = page.locator("form.proactive-template[data-template='device_help']")
        expect(picker).to_contain_text("Hi {{1}}, your {{2}} reported errors.")
        assert page.locator("#proactive textarea[name=text]").count() == 0  # the window is closed: templates only
        picker.locator("input[name=value_1]").fill("Ana")
        picker.locator("input[name=value_2]").fill("thermostat")
        assert page.evaluate(SIDEWAYS) <= 0
        screenshot(page, f"proactive-picker-{name}")
        with page.expect_navigation():
            picker.locator("button[type=submit]").click()
        expect(page.locator(".proactive-sent")).to_contain_text("Sent the template “device_help”")
        expect(page.locator(".proactive-sent")).to_contain_text("delivered")
        expect(page.locator("#thread")).to_contain_text("Hi Ana, your thermostat reported errors.")
        assert page.evaluate(SIDEWAYS) <= 0
        screenshot(page, f"proactive-case-{name}", full_page=name == "desktop")

        calls = graph.template_calls()
        assert len(calls) == 1, [c.json() for c in calls]
        sent = calls[0].json()
        assert sent["to"] == WA_ID and sent["template"]["name"] == "device_help"
        assert [p["text"] for p in sent["template"]["components"][0]["parameters"]] == ["Ana", "thermostat"]
        message = ProactiveMessage.objects.get()
        assert message.reply.status == Reply.Status.DELIVERED and message.sent_by.username == "maria"
        assert not errors, errors
    finally:
        context.close()
