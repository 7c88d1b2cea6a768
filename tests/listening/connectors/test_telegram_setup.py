"""What the admin pages need from the Telegram connector: the connect form's words, "test
connection" (getMe + getWebhookInfo against the fake Bot API) and an honest refusal to backfill."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from listening.connectors.telegram import TelegramConnector
from listening.exceptions import NotSupported, ProviderAuthError, SecretNotConfigured
from tests.fakes.telegram import FakeTelegram

TOKEN = "123456789:AAHfakeTokenForTests_0123456789abcdef"
SECRET = "hook-secret_42"
PUBLIC = "https://cxm.example.com"


@pytest.fixture
def telegram(fake_provider) -> FakeTelegram:
    return FakeTelegram(fake_provider, TOKEN)


@pytest.fixture
def hook(make_connector, telegram, settings):
    settings.CXM_PUBLIC_URL = PUBLIC
    return make_connector("telegram", slug="tg-hook", credentials={"bot_token": TOKEN, "webhook_secret": SECRET},
                          config={"api_base": telegram.api_base})


@pytest.fixture
def poller(make_connector, telegram):
    return make_connector("telegram", slug="tg-poll", credentials={"bot_token": TOKEN},
                          config={"mode": "polling", "long_poll_seconds": 0, "api_base": telegram.api_base})


def test_telegram_connect_form_explains_every_key_and_requires_the_token():
    assert set(TelegramConnector.config_help) == set(TelegramConnector.config_defaults)
    assert set(TelegramConnector.credential_help) == set(TelegramConnector.credential_fields)
    assert TelegramConnector.required_credentials == ("bot_token",)
    assert "BotFather" in TelegramConnector.credential_help["bot_token"]
    assert "secret_token" in TelegramConnector.credential_help["webhook_secret"]
    assert TelegramConnector.oauth is None


def test_telegram_check_in_polling_mode_signs_in_and_stores_nothing(telegram, poller):
    telegram.push({"update_id": 1, "message": {"message_id": 5, "date": 1793534400, "text": "hi",
                                               "chat": {"id": 42, "type": "private"}}})
    said = poller.get_backend().check_connection()
    assert said == "Signed in as @acme_care_bot. No webhook is set, so polling with getUpdates works."
    assert telegram.calls("getUpdates") == []  # nothing fetched, so nothing confirmed to Telegram
    assert len(telegram.updates) == 1


def test_telegram_check_in_polling_mode_warns_of_a_leftover_webhook(telegram, poller):
    telegram.set_webhook("https://old.example.com/telegram")
    said = poller.get_backend().check_connection()
    assert said.endswith("A webhook is still set (https://old.example.com/telegram): getUpdates fails with 409 "
                         "Conflict until deleteWebhook is called.")


def test_telegram_check_in_webhook_mode_says_the_url_is_ours_and_healthy(telegram, hook):
    telegram.set_webhook(f"{PUBLIC}/hooks/tg-hook/")
    said = hook.get_backend().check_connection()
    assert said == (f"Signed in as @acme_care_bot. The webhook URL is set to {PUBLIC}/hooks/tg-hook/; "
                    "0 update(s) waiting for delivery. No delivery errors reported.")
    assert [c.path for c in telegram.provider.requests] == [f"/bot{TOKEN}/getMe", f"/bot{TOKEN}/getWebhookInfo"]


def test_telegram_check_in_webhook_mode_reports_telegrams_last_delivery_error(telegram, hook):
    failed_at = int(datetime(2026, 11, 2, 9, 30, tzinfo=UTC).timestamp())
    telegram.set_webhook(f"{PUBLIC}/hooks/tg-hook/", last_error_message="Wrong response from the webhook: 403 "
                         "Forbidden", last_error_date=failed_at)
    said = hook.get_backend().check_connection()
    assert said.endswith("Telegram's last delivery error at 2026-11-02 09:30 UTC: Wrong response from the webhook: "
                         "403 Forbidden")


def test_telegram_check_in_webhook_mode_names_a_foreign_url_without_its_query(telegram, hook):
    telegram.set_webhook("https://elsewhere.example.com/tg?key=hunter2", last_error_message="Connection refused")
    said = hook.get_backend().check_connection()
    assert f"set to https://elsewhere.example.com/tg, not this connector's {PUBLIC}/hooks/tg-hook/" in said
    assert "hunter2" not in said
    assert said.endswith("Connection refused")


def test_telegram_check_in_webhook_mode_says_how_to_set_a_missing_webhook(telegram, hook):
    said = hook.get_backend().check_connection()
    assert said.endswith(f"No webhook URL is set: call setWebhook with url={PUBLIC}/hooks/tg-hook/ and "
                         "secret_token=<the webhook_secret>.")
    assert SECRET not in said


def test_telegram_check_in_webhook_mode_without_a_secret_fails_before_calling(make_connector, telegram):
    row = make_connector("telegram", credentials={"bot_token": TOKEN}, config={"api_base": telegram.api_base})
    with pytest.raises(SecretNotConfigured, match="no webhook_secret"):
        row.get_backend().check_connection()
    assert telegram.provider.requests == []


def test_telegram_check_with_a_wrong_token_is_an_auth_error_without_the_token(make_connector, telegram):
    wrong = "987654321:AAHwrongTokenForTests_0123456789abcde"
    row = make_connector("telegram", credentials={"bot_token": wrong},
                         config={"mode": "polling", "api_base": telegram.api_base})
    with pytest.raises(ProviderAuthError) as caught:
        row.get_backend().check_connection()
    assert caught.value.reason == "Telegram getMe failed (401): Unauthorized"
    assert wrong not in str(caught.value)


def test_telegram_backfill_is_refused_with_the_bot_apis_reason(poller):
    assert TelegramConnector.supports_backfill is False
    with pytest.raises(NotSupported, match="keeps undelivered ones for 24 hours at most"):
        poller.get_backend().backfill(datetime.fromtimestamp(time.time() - 3600, tz=UTC), {})
