"""What the admin pages need from the Mastodon connector, against the fake instance over real HTTP:
the connect form's words, "test connection" (verify_credentials), Connect with Mastodon (OAuth with
PKCE), rate-limit headroom from X-RateLimit-* and backfill walking back with max_id."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from listening.actions import ingest_messages
from listening.connectors.base import RateLimit
from listening.connectors.mastodon import MastodonConnector
from listening.exceptions import ProviderAuthError, ProviderRateLimited
from listening.models import Message
from listening.polling import poll_connector
from tests.fakes.http import Reply
from tests.fakes.mastodon import FakeMastodon
from tests.fakes.oauth import authorize_url, exchange_code, pkce_pair

TOKEN = "ZA-Yj3aBD8U8Cm7lKUp-lm9O9BmDgdhHzDeqsY8tlL0"
CLIENT_ID, CLIENT_SECRET = "TWhM-tNSuncnqN7DBJmoyeLnk6K3iJJ71KKXxgL1hPM", "Ix3HexbTSvDwyq2yX1VDSTMDM8hLmBDsJAaVD-O1xqY"
REDIRECT = "https://cxm.example.com/connect/mastodon/callback/"
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "mastodon"
NOTIFICATIONS, TAG = "/api/v1/notifications", "/api/v1/timelines/tag/acme"
SINCE = datetime(2026, 10, 10, tzinfo=UTC)


def mention_on(day: int) -> dict[str, Any]:
    """A public mention of @acme (no hashtag) written on 2026-10-<day>."""
    body = copy.deepcopy(json.loads((FIXTURES / "status_mention.json").read_text()))
    body.update(content=f"<p>@acme problem of day {day}</p>", tags=[], created_at=f"2026-10-{day:02d}T12:00:00.000Z")
    return body


@pytest.fixture
def mastodon(fake_provider) -> FakeMastodon:
    return FakeMastodon(fake_provider, TOKEN, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)


@pytest.fixture
def account(make_connector, mastodon):
    return make_connector("mastodon", slug="masto", credentials={"access_token": TOKEN},
                          config={"instance_url": mastodon.url, "hashtags": ["#Acme"], "page_size": 2})


def test_mastodon_connect_form_explains_every_key_and_requires_the_token():
    assert set(MastodonConnector.config_help) == set(MastodonConnector.config_defaults)
    assert set(MastodonConnector.credential_help) == set(MastodonConnector.credential_fields)
    assert MastodonConnector.required_credentials == ("access_token",)
    assert "Preferences › Development" in MastodonConnector.credential_help["access_token"]


# --- Test connection -----------------------------------------------------------------------------
def test_mastodon_check_signs_in_and_notes_the_headroom(mastodon, account):
    backend = account.get_backend()
    host = urlsplit(mastodon.url).netloc
    assert backend.check_connection() == f"Signed in as @acme on {host}; listening to mentions, #acme."
    [call] = mastodon.calls("/api/v1/accounts/verify_credentials")
    assert call.headers["authorization"] == f"Bearer {TOKEN}"
    assert backend.rate_limit == RateLimit(remaining=299, limit=300,
                                           resets_at=datetime.fromisoformat(mastodon.rate_reset))


def test_mastodon_check_with_a_revoked_token_is_the_servers_words(make_connector, mastodon):
    row = make_connector("mastodon", credentials={"access_token": "revoked-token-xyz"},
                         config={"instance_url": mastodon.url})
    with pytest.raises(ProviderAuthError) as caught:
        row.get_backend().check_connection()
    assert caught.value.reason == ("Mastodon /api/v1/accounts/verify_credentials failed (401): "
                                   "The access token is invalid")
    assert "revoked-token-xyz" not in str(caught.value)


# --- Rate limits -------------------------------------------------------------------------------
def test_mastodon_poll_notes_the_headroom_of_its_last_answer(mastodon, account):
    backend = account.get_backend()
    assert backend.rate_limit is None
    backend.poll({})  # mentions, then the hashtag: two calls
    assert (backend.rate_limit.remaining, backend.rate_limit.limit) == (298, 300)
    assert backend.rate_limit.resets_at == datetime.fromisoformat(mastodon.rate_reset)


def test_mastodon_429_notes_no_headroom_left_before_raising(mastodon, account):
    reset = "2026-11-02T10:05:00.000Z"
    mastodon.fail(NOTIFICATIONS, Reply(429, {"error": "Too many requests"}, {
        "X-RateLimit-Limit": "300", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}))
    backend = account.get_backend()
    with pytest.raises(ProviderRateLimited):
        backend.poll({})
    assert backend.rate_limit == RateLimit(remaining=0, limit=300, resets_at=datetime(2026, 11, 2, 10, 5, tzinfo=UTC))


def test_mastodon_junk_rate_limit_headers_are_ignored(mastodon, account):
    mastodon.fail(r"/api/v1/accounts/verify_credentials", Reply(200, {"acct": "acme"}, {
        "X-RateLimit-Remaining": "plenty", "X-RateLimit-Reset": "soon"}))
    backend = account.get_backend()
    backend.check_connection()
    assert backend.rate_limit is None


# --- OAuth -------------------------------------------------------------------------------------
def test_mastodon_oauth_with_pkce_saves_the_access_token(make_connector, mastodon):
    row = make_connector("mastodon", credentials={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
                         config={"instance_url": mastodon.url})
    backend = row.get_backend()
    verifier, challenge = pkce_pair()
    url = urlsplit(authorize_url(backend, REDIRECT, "st4te", challenge))
    query = parse_qs(url.query)
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{mastodon.url}/oauth/authorize"
    assert (query["scope"], query["code_challenge_method"]) == (["read write"], ["S256"])

    answer = exchange_code(backend, mastodon.authorize(REDIRECT, challenge=challenge), REDIRECT, verifier)
    assert answer["token_type"] == "Bearer" and answer["scope"] == "read write"
    [call] = mastodon.calls("/oauth/token")
    assert call.form()["client_secret"] == CLIENT_SECRET and "authorization" not in call.headers
    saved = backend.oauth_credentials(answer)
    assert saved == {"access_token": TOKEN}
    row.credentials = {**row.credentials, **saved}
    row.save()
    assert row.get_backend().check_connection().startswith("Signed in as @acme on ")


def test_mastodon_oauth_with_a_wrong_verifier_saves_nothing(make_connector, mastodon):
    backend = make_connector("mastodon", credentials={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
                             config={"instance_url": mastodon.url}).get_backend()
    _, challenge = pkce_pair()
    answer = exchange_code(backend, mastodon.authorize(REDIRECT, challenge=challenge), REDIRECT, "forged-verifier")
    with pytest.raises(ProviderAuthError, match="no access_token: The provided authorization grant is invalid"):
        backend.oauth_credentials(answer)


# --- Backfill ----------------------------------------------------------------------------------
def backfill_all(backend, since: datetime) -> list[tuple[list[str], dict[str, Any]]]:
    pages, state = [], {}
    for _ in range(20):
        page = backend.backfill(since, state)
        assert all(m.sent_at >= since for m in page.messages)  # never older than asked
        pages.append(([m.external_id for m in page.messages], page.cursor))
        state = page.cursor
        if not page.more:
            return pages
    raise AssertionError("backfill never finished")


def test_mastodon_backfill_walks_back_with_max_id_and_stops_at_since(mastodon, account):
    statuses = {day: mastodon.mention(mention_on(day)) for day in range(5, 15)}  # ids grow with the day
    ids = [n["id"] for n in mastodon.notifications]  # notification ids, days 5..14
    pages = backfill_all(account.get_backend(), SINCE)
    assert [found for found, _ in pages] == [[statuses[14]["id"], statuses[13]["id"]],
                                             [statuses[12]["id"], statuses[11]["id"]], [statuses[10]["id"]]]
    assert [state for _, state in pages] == [
        {"mentions": {"max": ids[8]}, "tag:acme": {"done": True}},  # the hashtag has nothing at all
        {"mentions": {"max": ids[6]}, "tag:acme": {"done": True}},
        {"mentions": {"done": True}, "tag:acme": {"done": True}},
    ]
    assert [c.query.get("max_id") for c in mastodon.calls(NOTIFICATIONS)] == [None, ids[8], ids[6]]
    assert len(mastodon.calls(TAG)) == 1  # a finished source is not asked again


def test_mastodon_backfill_overlapping_the_polled_page_is_stored_once(mastodon, account):
    for day in range(5, 15):
        mastodon.mention(mention_on(day))
    assert poll_connector(account.pk).created == 2  # the first poll takes the newest page only
    created = duplicates = 0
    state: dict[str, Any] = {}
    backend = account.get_backend()
    for _ in range(20):
        page = backend.backfill(SINCE, state)
        result = ingest_messages(account, page.messages)
        created, duplicates, state = created + result.created, duplicates + result.duplicates, page.cursor
        if not page.more:
            break
    assert (created, duplicates) == (3, 2)
    texts = sorted(Message.objects.values_list("text", flat=True))
    assert texts == [f"@acme problem of day {day}" for day in range(10, 15)]
