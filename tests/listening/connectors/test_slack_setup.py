"""What the admin pages need from the Slack connector: the connect form's words, "test connection"
(auth.test), Connect with Slack (OAuth v2 against the fake's oauth.v2.access) and no backfill."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest

from listening.connectors.slack import SlackAuthError, SlackConnector
from listening.exceptions import ConfigInvalid, NotSupported, SecretNotConfigured
from tests.fakes.oauth import authorize_url, exchange_code
from tests.fakes.slack import BOT_USER, TEAM, FakeSlack

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TOKEN = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy"
CLIENT_ID, CLIENT_SECRET = "3336676.569200954261", "2141029472.691fe3ee6f5b4b3c8c5f8b2a1b3f"
REDIRECT = "https://cxm.example.com/connect/slack/callback/"


@pytest.fixture
def slack(fake_provider) -> FakeSlack:
    return FakeSlack(fake_provider, TOKEN, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)


@pytest.fixture
def workspace(make_connector, slack):
    return make_connector("slack", credentials={"signing_secret": SECRET, "bot_token": TOKEN},
                          config={"api_base": slack.url})


def test_slack_connect_form_explains_every_key_and_requires_the_secret_and_token():
    assert set(SlackConnector.config_help) == set(SlackConnector.config_defaults)
    assert set(SlackConnector.credential_help) == set(SlackConnector.credential_fields)
    assert SlackConnector.required_credentials == ("signing_secret", "bot_token")
    assert "Signing Secret" in SlackConnector.credential_help["signing_secret"]
    assert SlackConnector.supports_backfill is False


def test_slack_check_signs_in_as_the_bot_in_its_workspace(slack, workspace):
    assert workspace.get_backend().check_connection() == "Signed in as acmecare in Acme Community."
    [call] = slack.calls("auth.test")
    assert call.headers["authorization"] == f"Bearer {TOKEN}"
    assert slack.posted == []


def test_slack_check_refuses_a_token_from_another_workspace_than_team_id(make_connector, slack):
    row = make_connector("slack", credentials={"signing_secret": SECRET, "bot_token": TOKEN},
                         config={"api_base": slack.url, "team_id": "T0OTHER00"})
    with pytest.raises(ConfigInvalid, match=f"belongs to workspace {TEAM} .Acme Community., but team_id is T0OTHER00"):
        row.get_backend().check_connection()


def test_slack_check_with_a_revoked_token_is_slacks_words_without_the_token(make_connector, slack):
    wrong = "xoxb-17653672481-19874698323-revokedTOKENxxxxxxxxxx"
    row = make_connector("slack", credentials={"signing_secret": SECRET, "bot_token": wrong},
                         config={"api_base": slack.url})
    with pytest.raises(SlackAuthError) as caught:
        row.get_backend().check_connection()
    assert caught.value.reason.startswith("Slack auth.test failed (200): invalid_auth")
    assert wrong not in str(caught.value)


def test_slack_check_without_a_signing_secret_fails_before_calling(make_connector, slack):
    row = make_connector("slack", credentials={"bot_token": TOKEN}, config={"api_base": slack.url})
    with pytest.raises(SecretNotConfigured, match="signing_secret"):
        row.get_backend().check_connection()
    assert slack.calls("auth.test") == []


def test_slack_oauth_spec_asks_slack_for_the_bot_scopes():
    spec = SlackConnector.oauth
    assert spec is not None
    assert (spec.authorize_url, spec.token_url) == ("https://slack.com/oauth/v2/authorize",
                                                    "{api_base}/api/oauth.v2.access")
    assert (spec.pkce, spec.client_auth, spec.scope_separator) == (False, "body", ",")


def test_slack_oauth_code_exchange_gives_the_bot_token_and_workspace(make_connector, slack):
    row = make_connector("slack", credentials={"signing_secret": SECRET, "client_id": CLIENT_ID,
                                               "client_secret": CLIENT_SECRET}, config={"api_base": slack.url})
    backend = row.get_backend()
    url = urlsplit(authorize_url(backend, REDIRECT, "st4te"))
    query = parse_qs(url.query)
    assert f"{url.scheme}://{url.netloc}{url.path}" == "https://slack.com/oauth/v2/authorize"
    assert query["scope"] == ["channels:history,groups:history,im:history,app_mentions:read,chat:write,users:read"]
    assert (query["client_id"], "code_challenge" in query) == ([CLIENT_ID], False)

    answer = exchange_code(backend, slack.authorize(REDIRECT), REDIRECT)
    assert answer["ok"] is True and answer["token_type"] == "bot" and answer["bot_user_id"] == BOT_USER
    assert answer["team"] == {"name": "Acme Community", "id": TEAM}
    [call] = slack.calls("oauth.v2.access")
    assert (call.form()["client_id"], "authorization" in call.headers) == (CLIENT_ID, False)  # client_auth body

    saved = backend.oauth_credentials(answer)
    assert saved == {"bot_token": TOKEN}
    assert backend.oauth_config(answer) == {"team_id": TEAM}
    row.credentials = {**row.credentials, **saved}
    row.save()
    assert row.get_backend().check_connection() == "Signed in as acmecare in Acme Community."


@pytest.mark.parametrize(
    ("credentials", "code", "error"),
    [({"client_id": CLIENT_ID, "client_secret": "wrong"}, None, "bad_client_secret"),
     ({"client_id": "9.9", "client_secret": CLIENT_SECRET}, None, "invalid_client_id"),
     ({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}, "used-or-forged", "invalid_code")],
)
def test_slack_oauth_failed_exchange_is_slacks_error(make_connector, slack, credentials, code, error):
    backend = make_connector("slack", credentials=credentials, config={"api_base": slack.url}).get_backend()
    answer = exchange_code(backend, code or slack.authorize(REDIRECT), REDIRECT)
    with pytest.raises(SlackAuthError, match=f"Slack oauth.v2.access failed: {error}"):
        backend.oauth_credentials(answer)
    assert backend.oauth_config({"ok": True, "team": {"id": "not a team"}}) == {}


def test_slack_oauth_answer_without_a_bot_token_saves_nothing(workspace):
    user_only = {"ok": True, "access_token": "xoxp-1234-user-token", "token_type": "user", "team": {"id": TEAM}}
    with pytest.raises(SlackAuthError, match="no bot token"):
        workspace.get_backend().oauth_credentials(user_only)


def test_slack_backfill_is_refused_with_the_events_apis_reason(workspace):
    with pytest.raises(NotSupported, match="delivers only new events"):
        workspace.get_backend().backfill(datetime(2026, 11, 1, tzinfo=UTC), {})
