"""What the admin pages need from the Twilio connector, against the fake Twilio API over real HTTP:
the connect form's words, "test connection" (the Account resource) and no backfill."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from listening.connectors.twilio import TwilioConnector
from listening.exceptions import ConfigInvalid, NotSupported, ProviderAuthError, SecretNotConfigured
from tests.fakes.twilio import FakeTwilio

ACCOUNT = "ACa1b2c3d4e5f60718293a4b5c6d7e8f90"
TOKEN = "9f8e7d6c5b4a39281706f5e4d3c2b1a0"


@pytest.fixture
def twilio_api(fake_provider) -> FakeTwilio:
    return FakeTwilio(fake_provider, ACCOUNT, TOKEN)


@pytest.fixture
def account(make_connector, twilio_api):
    return make_connector("twilio", slug="sms", credentials={"auth_token": TOKEN},
                          config={"account_sid": ACCOUNT, "api_base": twilio_api.url})


def test_twilio_connect_form_explains_every_key_and_requires_the_auth_token():
    assert set(TwilioConnector.config_help) == set(TwilioConnector.config_defaults)
    assert set(TwilioConnector.credential_help) == set(TwilioConnector.credential_fields)
    assert TwilioConnector.required_credentials == ("auth_token",)
    assert "Account SID" in TwilioConnector.config_help["account_sid"]


def test_twilio_check_reads_the_account_and_never_repeats_its_token(twilio_api, account, settings):
    settings.CXM_PUBLIC_URL = "https://cxm.example.com"
    said = account.get_backend().check_connection()
    assert said == (f"Signed in to Twilio account Acme Care ({ACCOUNT}): active. Set each number's \"A message "
                    "comes in\" webhook to https://cxm.example.com/hooks/sms/ (HTTP POST).")
    [call] = twilio_api.provider.calls(rf"/2010-04-01/Accounts/{ACCOUNT}\.json")
    assert call.headers["authorization"].startswith("Basic ")
    assert TOKEN not in said  # the Account resource carries the auth token: it is never read out


def test_twilio_check_warns_that_a_trial_account_reaches_only_verified_numbers(twilio_api, account):
    twilio_api.account["type"] = "Trial"
    assert account.get_backend().check_connection() == (
        f"Signed in to Twilio account Acme Care ({ACCOUNT}): active, a trial account (it can only message "
        "verified numbers).")


@pytest.mark.parametrize("status", ["suspended", "closed"])
def test_twilio_check_of_an_inactive_account_fails_with_its_status(twilio_api, account, status):
    twilio_api.account["status"] = status
    with pytest.raises(ProviderAuthError, match=f"the Twilio account {ACCOUNT} is {status}"):
        account.get_backend().check_connection()


def test_twilio_check_with_a_wrong_token_is_twilios_words_without_it(make_connector, twilio_api):
    wrong = "00000000000000000000000000000bad"
    row = make_connector("twilio", credentials={"auth_token": wrong},
                         config={"account_sid": ACCOUNT, "api_base": twilio_api.url})
    with pytest.raises(ProviderAuthError) as caught:
        row.get_backend().check_connection()
    assert caught.value.reason == "Twilio error 20003: Authenticate (https://www.twilio.com/docs/errors/20003)"
    assert wrong not in str(caught.value)


def test_twilio_check_without_sid_or_token_fails_before_calling(make_connector, twilio_api):
    no_sid = make_connector("twilio", credentials={"auth_token": TOKEN}, config={"api_base": twilio_api.url})
    with pytest.raises(ConfigInvalid, match="account_sid is empty"):
        no_sid.get_backend().check_connection()
    no_token = make_connector("twilio", config={"account_sid": ACCOUNT, "api_base": twilio_api.url})
    with pytest.raises(SecretNotConfigured, match="auth_token"):
        no_token.get_backend().check_connection()
    assert twilio_api.provider.requests == []


def test_twilio_backfill_is_refused_with_the_webhook_only_reason(account):
    assert TwilioConnector.supports_backfill is False
    with pytest.raises(NotSupported, match="by webhook only"):
        account.get_backend().backfill(datetime(2026, 10, 1, tzinfo=UTC), {})
