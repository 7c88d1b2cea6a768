"""Connecting a source through the provider's OAuth 2 flow from the source's page: the redirect to
the provider's consent page (state, PKCE S256, scopes), the return with a code, the token
exchange against a local authorization server, and every way the return can be forged, replayed,
late or refused."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest
from django.urls import reverse

from listening import crypto
from listening.models import AuditEvent, Connector
from listening.oauth import STATE_TTL_SECONDS, challenge
from responses.views.connect import OAUTH_PENDING
from tests.fakes.http import Reply

CLIENT_ID, CLIENT_SECRET = "app-key-123", "app-secret-456"


class AuthorizationServer:
    """The token endpoint of a Mastodon instance (POST /oauth/token, client credentials in the
    body, PKCE checked), and verify_credentials for the token it grants."""

    def __init__(self, provider) -> None:
        self.codes: dict[str, str] = {}  # code -> code_challenge
        self.granted: list[str] = []
        provider.route("POST", "/oauth/token")(self.token)
        provider.route("GET", "/api/v1/accounts/verify_credentials")(self.me)

    def token(self, request) -> Reply:
        form = request.form()
        if (form.get("client_id"), form.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
            return Reply(401, {"error": "invalid_client", "error_description": "Client authentication failed"})
        expected = self.codes.pop(form.get("code", ""), None)
        if expected is None or form.get("grant_type") != "authorization_code":
            return Reply(400, {"error": "invalid_grant", "error_description": "The authorization code is invalid"})
        if challenge(form.get("code_verifier", "")) != expected:
            return Reply(400, {"error": "invalid_grant", "error_description": "PKCE verification failed"})
        token = f"token-{len(self.granted) + 1}"
        self.granted.append(token)
        return Reply(200, {"access_token": token, "token_type": "Bearer", "scope": "read write",
                           "created_at": int(time.time())})

    def me(self, request) -> Reply:
        if request.headers.get("authorization") not in {f"Bearer {t}" for t in self.granted}:
            return Reply(401, {"error": "The access token is invalid"})
        return Reply(200, {"id": "1", "username": "acme", "acct": "acme", "display_name": "Acme Care",
                           "url": "https://example.social/@acme", "followers_count": 10})


@pytest.fixture
def instance(fake_provider):
    return AuthorizationServer(fake_provider)


@pytest.fixture
def mastodon(make_connector, fake_provider):
    return make_connector("mastodon", slug="acme-social", config={"instance_url": fake_provider.url, "mentions": True},
                          credentials={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})


@pytest.fixture
def admin(client, admin_user):
    client.force_login(admin_user)
    return admin_user


def start(client, connector) -> dict[str, str]:
    response = client.post(reverse("console:connector-oauth", kwargs={"connector_id": connector.pk}))
    assert response.status_code == 302
    return {k: v[0] for k, v in parse_qs(urlsplit(response["Location"]).query).items()} | {
        "_url": response["Location"]}


def consent(instance, params: dict[str, str], code: str = "the-code") -> None:
    """What the provider's consent page does when the admin clicks Authorize."""
    instance.codes[code] = params["code_challenge"]


def test_connect_with_mastodon_saves_the_granted_token_and_tests_it(client, admin, instance, mastodon, fake_provider):
    params = start(client, mastodon)
    assert params["_url"].startswith(f"{fake_provider.url}/oauth/authorize?")
    callback = "http://testserver" + reverse("console:oauth-callback")
    assert params["client_id"] == CLIENT_ID and params["redirect_uri"] == callback
    assert params["response_type"] == "code" and params["scope"] == "read write"
    assert params["code_challenge_method"] == "S256" and len(params["state"]) >= 40

    consent(instance, params)
    back = client.get(reverse("console:oauth-callback"), {"state": params["state"], "code": "the-code"})
    assert back.status_code == 302 and back["Location"] == reverse("console:connector",
                                                                   kwargs={"connector_id": mastodon.pk})
    html = client.get(back["Location"]).content.decode()
    assert "✓" in html and "acme" in html and "token-1" not in html
    assert Connector.objects.get(pk=mastodon.pk).credentials["access_token"] == "token-1"
    event = AuditEvent.objects.get(action="oauth_connected")
    assert event.changes["credentials"] == {"added": ["access_token"]} and "token-1" not in str(event.changes)


def test_a_return_that_was_not_started_here_is_refused(client, admin, instance, mastodon):
    params = start(client, mastodon)
    consent(instance, params)
    forged = client.get(reverse("console:oauth-callback"), {"state": "x" * 43, "code": "the-code"},
                        HTTP_ACCEPT="application/json")
    assert forged.status_code == 400 and "not started here" in forged.json()["reason"]
    # The forged return used up the pending flow: the real state is no good any more either.
    replay = client.get(reverse("console:oauth-callback"), {"state": params["state"], "code": "the-code"},
                        HTTP_ACCEPT="application/json")
    assert replay.status_code == 400
    assert "access_token" not in Connector.objects.get(pk=mastodon.pk).credentials


def test_a_return_is_single_use_and_expires(client, admin, instance, mastodon):
    params = start(client, mastodon)
    consent(instance, params)
    first = client.get(reverse("console:oauth-callback"), {"state": params["state"], "code": "the-code"})
    assert first.status_code == 302
    again = client.get(reverse("console:oauth-callback"), {"state": params["state"], "code": "the-code"},
                       HTTP_ACCEPT="application/json")
    assert again.status_code == 400

    params = start(client, mastodon)
    session = client.session
    pending = crypto.decrypt_json(session[OAUTH_PENDING])  # kept encrypted (test_secrets_in_session)
    session[OAUTH_PENDING] = crypto.encrypt_json({**pending, "created": time.time() - STATE_TTL_SECONDS - 1})
    session.save()
    late = client.get(reverse("console:oauth-callback"), {"state": params["state"], "code": "the-code"},
                      HTTP_ACCEPT="application/json")
    assert late.status_code == 400 and "ten minutes" in late.json()["reason"]
    assert len(instance.granted) == 1


def test_a_refusal_or_a_bad_code_is_shown_with_the_providers_words(client, admin, instance, mastodon):
    params = start(client, mastodon)
    denied = client.get(reverse("console:oauth-callback"), {
        "state": params["state"], "error": "access_denied",
        "error_description": "The resource owner or authorization server denied the request."},
        HTTP_ACCEPT="application/json")
    assert denied.status_code == 400
    assert denied.json()["reason"] == ("the provider refused: access_denied: The resource owner or "
                                       "authorization server denied the request.")

    params = start(client, mastodon)  # no consent: the instance never issued this code
    bad = client.get(reverse("console:oauth-callback"), {"state": params["state"], "code": "made-up"},
                     HTTP_ACCEPT="application/json")
    assert bad.status_code == 400 and "invalid_grant" in bad.json()["reason"]
    assert "access_token" not in Connector.objects.get(pk=mastodon.pk).credentials
    assert not AuditEvent.objects.exists()


def test_a_wrong_pkce_verifier_gets_no_token(client, admin, instance, mastodon):
    params = start(client, mastodon)
    instance.codes["the-code"] = challenge("someone else's verifier")
    response = client.get(reverse("console:oauth-callback"), {"state": params["state"], "code": "the-code"},
                          HTTP_ACCEPT="application/json")
    assert response.status_code == 400 and "PKCE" in response.json()["reason"]


def test_connecting_needs_the_apps_client_id_first_and_a_kind_with_oauth(client, admin, make_connector):
    bare = make_connector("mastodon", slug="bare", config={"instance_url": "https://example.social"})
    response = client.post(reverse("console:connector-oauth", kwargs={"connector_id": bare.pk}),
                           HTTP_ACCEPT="application/json")
    assert response.status_code == 400 and "client_id first" in response.json()["reason"]
    feed = make_connector("rss", slug="feed", config={"url": "https://example.com/feed"})
    response = client.post(reverse("console:connector-oauth", kwargs={"connector_id": feed.pk}),
                           HTTP_ACCEPT="application/json")
    assert response.status_code == 400 and "paste its credentials" in response.json()["reason"]
