"""The App Store connector end to end: ES256 tokens (verified by the fake with the key's public
half), the newest-first walk down to a high-water mark, responses already on reviews, backfill,
rate-limit headroom, and responses from the console, against a fake App Store Connect over real
HTTP (tests/fakes/app_store.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.utils import timezone

from listening import backfill
from listening.actions import ingest_messages
from listening.connectors import app_store as app_store_module, get_connector_class
from listening.connectors.app_store import AppStoreAuthError, AppStoreConnector
from listening.connectors.base import OutboundReply, RateLimit
from listening.exceptions import (
    ConfigInvalid,
    PayloadInvalid,
    ProviderAuthError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
)
from listening.models import Connector, Conversation, Health, Message
from listening.polling import poll_connector
from responses import replies
from responses.exceptions import InvalidRequest
from responses.models import Case, Reply as CaseReply, Role, Team
from responses.routing import route_messages
from responses.teams import ensure_default_queues
from tests.fakes.app_store import FakeAppStore, apple_error
from tests.fakes.http import Reply
from tests.responses.conftest import classify, make_user

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "app_store"
APP_ID = "1479321043"
KEY_ID, ISSUER_ID = "2X9R4HXF34", "57246542-96fe-1a63-e053-0824d011072a"
REFUND, PRAISE, SLOW = (
    "00000046-a0c3-0017-9b2e-3f5d00000000",
    "00000046-a0c3-0017-8c1d-2e4c00000000",
    "00000046-a0c3-0017-7b0c-1d3b00000000",
)
PRAISE_RESPONSE = "6f2b0c1e-5d4a-4b3c-9e8f-7a6b5c4d3e2f@2026-11-01T02:10:00-07:00"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def _pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.fixture(scope="module")
def keys() -> dict[str, ec.EllipticCurvePrivateKey]:
    """Throwaway P-256 keys made for this run: the API key's (a .p8), and one Apple does not know."""
    return {name: ec.generate_private_key(ec.SECP256R1()) for name in ("right", "wrong")}


@pytest.fixture(autouse=True)
def _no_cached_tokens():
    app_store_module._tokens.clear()
    yield
    app_store_module._tokens.clear()


@pytest.fixture
def store(fake_provider, keys) -> FakeAppStore:
    return FakeAppStore(fake_provider, public_key=keys["right"].public_key(), key_id=KEY_ID, issuer_id=ISSUER_ID,
                        app_id=APP_ID)


def credentials(key: ec.EllipticCurvePrivateKey, **overrides: str) -> dict[str, str]:
    return {"key_id": KEY_ID, "issuer_id": ISSUER_ID, "private_key": _pem(key), **overrides}


@pytest.fixture
def poller(make_connector, store, keys):
    return make_connector("app_store", slug="ios", poll_interval_seconds=300, credentials=credentials(keys["right"]),
                          config={"app_id": APP_ID, "api_base": store.url})


def add_recorded(store: FakeAppStore) -> None:
    page = fixture("customer_reviews")
    responses = {r["id"]: r for r in page["included"]}
    for item in page["data"]:
        related = item["relationships"]["response"]["data"]
        store.add_review(item, responses[related["id"]] if related else None)


def review(n: int, created: str, *, rating: int = 4, title: str = "Nice") -> dict[str, Any]:
    return {"type": "customerReviews", "id": f"00000000-0000-0000-0000-{n:012d}", "attributes": {
        "rating": rating, "title": f"{title} {n}", "body": "Works well.", "reviewerNickname": f"user{n}",
        "createdDate": created, "territory": "USA"}}


def rid(n: int) -> str:
    return f"00000000-0000-0000-0000-{n:012d}"


def stored() -> list[str]:
    return sorted(Message.objects.values_list("external_id", flat=True))


# --- Polling ----------------------------------------------------------------------------------
def test_app_store_poll_stores_reviews_with_title_rating_nickname_and_existing_responses(store, poller):
    add_recorded(store)
    outcome = poll_connector(poller.pk)
    assert (outcome.error, outcome.created) == ("", 4)
    refund = Message.objects.get(external_id=REFUND)
    assert refund.text == ("★☆☆☆☆ (1/5) Charged twice <for one latte>\n\nThe app charged my card twice for a "
                           "single order and support has not answered in 3 days.")
    assert refund.sent_at == datetime(2026, 11, 1, 15, 41, 17, tzinfo=UTC)
    assert (refund.channel, refund.direction, refund.raw["attributes"]["territory"]) == ("app_store", "in", "USA")
    assert refund.conversation.subject == "Charged twice <for one latte>"
    assert refund.conversation.external_id == REFUND
    assert (refund.author.external_id, refund.author.handle) == (f"reviewer:{REFUND}", "latte_lover_77")
    assert refund.url == f"https://apps.apple.com/app/id{APP_ID}?see-all=reviews"
    response = Message.objects.get(external_id=PRAISE_RESPONSE)  # written in App Store Connect
    assert (response.direction, response.text) == ("out", "Thank you Anne, see you at the counter!")
    assert response.parent.external_id == PRAISE and response.conversation.external_id == PRAISE
    assert Message.objects.get(external_id=PRAISE).raw["response"]["attributes"]["state"] == "PUBLISHED"
    assert Conversation.objects.count() == 3
    [call] = store.calls(r"/v1/apps/.*/customerReviews")
    assert call.path == f"/v1/apps/{APP_ID}/customerReviews"
    assert call.query == {"sort": "-createdDate", "limit": "200", "include": "response"}
    poller.refresh_from_db()
    # The mark is the newest review's createdDate (08:41:17-07:00), kept in UTC like every source time.
    assert poller.cursor == {"mark": "2026-11-01T15:41:17+00:00", "ids": [REFUND]}
    assert poller.health == Health.OK


def test_app_store_token_is_an_es256_jwt_reused_until_it_nears_expiry(store, poller):
    store.add_review(review(1, "2026-11-01T10:00:00Z"))
    for _ in range(3):
        assert poll_connector(poller.pk, force=True).error == ""
    bearers = {c.headers["authorization"] for c in store.calls(r".*")}
    assert len(bearers) == 1 and len(store.tokens) == 3  # one signature (ES256 is randomised), verified 3 times
    token = store.tokens[0]
    header = jwt.get_unverified_header(token)
    assert (header["alg"], header["kid"], header["typ"]) == ("ES256", KEY_ID, "JWT")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["iss"], claims["aud"]) == (ISSUER_ID, "appstoreconnect-v1")
    assert 0 < claims["exp"] - claims["iat"] <= 20 * 60
    # Apple refusing the token once makes us sign a fresh one, and the poll goes on.
    store.script("reviews", Reply(401, {"errors": [{"status": "401", "code": "NOT_AUTHORIZED", "detail": "x"}]}))
    assert poll_connector(poller.pk, force=True).error == ""
    assert len({c.headers["authorization"] for c in store.calls(r".*")}) == 2


def test_app_store_same_review_polled_three_times_is_stored_once_and_new_ones_follow(store, poller):
    add_recorded(store)
    assert poll_connector(poller.pk).created == 4
    for _ in range(2):
        again = poll_connector(poller.pk, force=True)
        assert (again.error, again.created, again.duplicates) == ("", 0, 0)  # stopped at the mark
    store.add_review(review(1, "2026-11-01T15:41:17Z"))  # the mark's very second, another review
    store.add_review(review(2, "2026-11-02T09:00:00Z"))
    outcome = poll_connector(poller.pk, force=True)
    assert (outcome.created, outcome.duplicates) == (2, 0)
    poller.refresh_from_db()
    assert poller.cursor == {"mark": "2026-11-02T09:00:00+00:00", "ids": [rid(2)]}
    assert poll_connector(poller.pk, force=True).created == 0
    assert Message.objects.filter(external_id__in=[rid(1), rid(2)]).count() == 2
    Connector.objects.filter(pk=poller.pk).update(cursor={})  # a lost cursor: ingest still dedupes
    lost = poll_connector(poller.pk, force=True)
    assert (lost.created, lost.duplicates) == (0, 6)


def test_app_store_reviews_of_the_mark_s_second_are_told_apart_by_id(store, poller):
    store.add_review(review(1, "2026-11-01T10:00:00Z"))
    assert poll_connector(poller.pk).created == 1
    store.add_review(review(2, "2026-11-01T10:00:00Z"))  # same second, indexed later
    assert poll_connector(poller.pk, force=True).created == 1
    poller.refresh_from_db()
    assert poller.cursor == {"mark": "2026-11-01T10:00:00+00:00", "ids": [rid(1), rid(2)]}
    assert poll_connector(poller.pk, force=True).created == 0


def test_app_store_walk_follows_links_next_page_by_page_down_to_the_mark(store, poller):
    poller.config = {**poller.config, "page_size": 2}
    poller.save()
    store.add_review(review(1, "2026-11-01T10:00:00Z"))
    assert poll_connector(poller.pk).created == 1
    for n in range(2, 7):  # five new reviews while we were away: three pages of two
        store.add_review(review(n, f"2026-11-01T1{n}:00:00Z"))
    outcome = poll_connector(poller.pk, force=True)
    assert (outcome.error, outcome.pages, outcome.created) == ("", 3, 5)
    cursors = [c.query.get("cursor") for c in store.calls(r"/v1/apps/.*/customerReviews")]
    assert cursors[:2] == [None, None] and all(cursors[2:]) and len(cursors) == 4
    assert store.calls(r".*customerReviews")[-1].query["include"] == "response"  # links.next keeps the query
    poller.refresh_from_db()
    assert poller.cursor == {"mark": "2026-11-01T16:00:00+00:00", "ids": [rid(6)]}
    assert stored() == [rid(n) for n in range(1, 7)]


def test_app_store_a_walk_cut_short_resumes_from_its_next_link(store, poller):
    poller.config = {**poller.config, "page_size": 2}
    poller.save()
    store.add_review(review(1, "2026-11-01T10:00:00Z"))
    assert poll_connector(poller.pk).created == 1
    for n in range(2, 7):
        store.add_review(review(n, f"2026-11-01T1{n}:00:00Z"))
    assert poll_connector(poller.pk, force=True, max_pages=1).created == 2
    walk = Connector.objects.get(pk=poller.pk).cursor
    assert walk["mark"] == "2026-11-01T10:00:00+00:00"  # the old mark stands until the walk ends
    assert walk["walk"]["next"].startswith(f"{store.url}/v1/apps/{APP_ID}/customerReviews?cursor=")
    assert walk["walk"]["top"] == "2026-11-01T16:00:00+00:00"
    assert poll_connector(poller.pk, force=True).created == 3
    assert Connector.objects.get(pk=poller.pk).cursor == {"mark": "2026-11-01T16:00:00+00:00", "ids": [rid(6)]}


def test_app_store_first_poll_takes_at_most_first_poll_pages(store, poller):
    poller.config = {**poller.config, "page_size": 2, "first_poll_pages": 2}
    poller.save()
    for n in range(1, 8):
        store.add_review(review(n, f"2026-11-01T1{n}:00:00Z"))
    outcome = poll_connector(poller.pk)
    assert (outcome.pages, outcome.created) == (2, 4)
    assert stored() == [rid(n) for n in range(4, 8)]  # the newest four; backfill fetches the rest
    assert Connector.objects.get(pk=poller.pk).cursor == {"mark": "2026-11-01T17:00:00+00:00", "ids": [rid(7)]}


# --- Failures ---------------------------------------------------------------------------------
def test_app_store_a_key_apple_does_not_know_is_an_auth_failure_with_apple_s_detail(store, make_connector, keys):
    wrong = make_connector("app_store", credentials=credentials(keys["wrong"]),
                           config={"app_id": APP_ID, "api_base": store.url})
    store.add_review(review(1, "2026-11-01T10:00:00Z"))
    outcome = poll_connector(wrong.pk)
    assert outcome.error.startswith("App Store Connect answered 401 NOT_AUTHORIZED: Provide a properly configured")
    row = Connector.objects.get(pk=wrong.pk)
    assert (row.health, row.cursor) == (Health.DEGRADED, {})
    assert row.last_error.startswith("ProviderAuthError:")
    assert len(store.calls(r".*")) == 2 and store.tokens == []  # signed afresh once, refused twice
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"private_key": "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----"},
         "private_key is not the text of an App Store Connect .p8 key"),
        ({"private_key": ""}, "no private_key configured"),
        ({"key_id": "2X9R4HXF34\nx: y"}, "key_id and issuer_id must be as App Store Connect shows them"),
    ],
)
def test_app_store_malformed_credentials_are_named_without_quoting_them(store, make_connector, keys, overrides,
                                                                        reason):
    bad = make_connector("app_store", credentials=credentials(keys["right"], **overrides),
                         config={"app_id": APP_ID, "api_base": store.url})
    outcome = poll_connector(bad.pk)
    assert reason in outcome.error and "c2VjcmV0" not in outcome.error
    assert Connector.objects.get(pk=bad.pk).last_error.startswith("AppStoreAuthError:")
    assert store.calls(r".*") == []


def test_app_store_an_rsa_key_is_not_a_p8_key(store, make_connector):
    from cryptography.hazmat.primitives.asymmetric import rsa

    rsa_pem = rsa.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    bad = make_connector("app_store", credentials={"key_id": KEY_ID, "issuer_id": ISSUER_ID, "private_key": rsa_pem},
                         config={"app_id": APP_ID, "api_base": store.url})
    with pytest.raises(AppStoreAuthError, match="a PEM P-256 key") as caught:
        bad.get_backend().poll({})
    assert not caught.value.retryable


@pytest.mark.parametrize(
    ("page", "reason"),
    [
        (b"<html>Service Temporarily Unavailable</html>", "body must be an object"),
        ({"links": {}}, "missing field data"),
        ({"data": {"type": "customerReviews"}}, "field data must be list"),
        ({"data": [], "included": {}}, "field included must be list"),
        ({"data": [], "links": {"next": "https://evil.example/v1/apps/1/customerReviews?cursor=x"}},
         "links.next points outside api_base"),
        ({"data": [], "links": {"next": 5}}, "links.next points outside api_base"),
    ],
)
def test_app_store_a_malformed_page_is_a_recorded_failure_that_keeps_the_cursor(store, poller, page, reason):
    store.add_review(review(1, "2026-11-01T10:00:00Z"))
    assert poll_connector(poller.pk).created == 1
    cursor = Connector.objects.get(pk=poller.pk).cursor
    store.script("reviews", Reply(200, page))
    outcome = poll_connector(poller.pk, force=True)
    assert "App Store Connect answered a malformed reviews page" in outcome.error and reason in outcome.error
    row = Connector.objects.get(pk=poller.pk)
    assert row.last_error.startswith("PayloadInvalid:")
    assert (row.cursor, row.health) == (cursor, Health.DEGRADED)
    store.script("reviews", Reply(200, page))
    with pytest.raises(PayloadInvalid, match=reason):
        row.get_backend().poll({})


def test_app_store_an_odd_review_is_skipped_and_logged_without_blocking_the_rest(store, poller, caplog):
    odd = [
        {**review(2, "2026-11-01T09:00:00Z"), "type": "apps"},
        {**review(3, "2026-11-01T08:00:00Z"), "id": "../../apps/1"},
        review(4, "yesterday"),
        review(5, "2026-11-01T07:00:00Z", rating=0),
    ]
    page = {"data": [review(1, "2026-11-01T10:00:00Z"), *odd], "links": {}}
    store.script("reviews", Reply(200, page))
    outcome = poll_connector(poller.pk)
    assert (outcome.error, outcome.created) == ("", 1)
    assert stored() == [rid(1)]
    for reason in ("data[1] is not a customerReviews resource", "data[2].id is not a review id",
                   "createdDate must be an ISO 8601 timestamp", "rating must be a star rating from 1 to 5"):
        assert reason in caplog.text


def test_app_store_rate_limit_headroom_is_noted_and_a_429_waits(store, poller):
    backend = poller.get_backend()
    store.remaining = 3546
    backend.poll({})
    assert backend.rate_limit == RateLimit(remaining=3545, limit=3600)
    store.script("reviews", Reply(429, fixture("error_rate_limit")))
    store.remaining = 1
    with pytest.raises(ProviderRateLimited, match="RATE_LIMIT_EXCEEDED: We've received too many requests") as caught:
        backend.poll({})
    assert caught.value.retry_after == 60.0
    assert backend.rate_limit == RateLimit(remaining=0, limit=3600)
    store.script("reviews", Reply(429, fixture("error_rate_limit")))
    outcome = poll_connector(poller.pk)
    row = Connector.objects.get(pk=poller.pk)
    assert row.last_error.startswith("ProviderRateLimited:") and "RATE_LIMIT_EXCEEDED" in outcome.error
    assert (row.rate_limit["remaining"], row.rate_limit["limit"]) == (0, 3600)  # shown on Sources


def test_app_store_api_base_pointing_inward_is_refused_in_production(store, poller, settings):
    settings.ALLOW_PRIVATE_URLS = False
    assert "resolves to a non-public address" in poll_connector(poller.pk).error
    assert store.calls(r".*") == []


# --- Check, backfill --------------------------------------------------------------------------
def test_app_store_check_connection_names_the_app_and_stores_nothing(store, poller):
    backend = poller.get_backend()
    assert backend.check_connection() == "Reached Acme Coffee (com.acme.coffee) on App Store Connect."
    [call] = store.calls(r"/v1/apps/.*")
    assert call.query == {"fields[apps]": "name,bundleId"}
    store.script("app", Reply(200, fixture("app")))
    assert backend.check_connection() == "Reached Acme Coffee (com.acme.coffee) on App Store Connect."
    store.script("app", Reply(403, fixture("error_forbidden")))
    with pytest.raises(ProviderAuthError, match="FORBIDDEN_ERROR: The API key in use does not allow this request"):
        backend.check_connection()
    store.script("app", Reply(200, {"data": []}))
    with pytest.raises(ProviderUnavailable, match="without the app's attributes"):
        backend.check_connection()
    poller.config = {"app_id": "999", "api_base": store.url}
    with pytest.raises(ProviderRejected, match="There is no resource of type 'apps' with id '999'"):
        AppStoreConnector(poller).check_connection()
    assert not Message.objects.exists()


def test_app_store_backfill_walks_back_until_reviews_are_older_than_since(store, poller):
    poller.config = {**poller.config, "page_size": 2}
    poller.save()
    for n in range(1, 8):  # one a day, Nov 1 to 7
        store.add_review(review(n, f"2026-11-0{n}T12:00:00Z"))
    backend = poller.get_backend()
    since = datetime(2026, 11, 3, 0, 0, tzinfo=UTC)
    pages, state, more = [], {}, True
    while more:
        page = backend.backfill(since, state)
        pages.append([m.external_id for m in page.messages])
        state, more = page.cursor, page.more
        ingest_messages(poller, page.messages)
    assert pages == [[rid(7), rid(6)], [rid(5), rid(4)], [rid(3)]]
    assert state == {}
    assert stored() == [rid(n) for n in range(3, 8)]
    assert AppStoreConnector.supports_backfill
    # A next link that is not the API's is never followed: the walk starts over instead.
    backend.backfill(since, {"next": "https://evil.example/v1/apps/1/customerReviews"})
    assert store.calls(r".*customerReviews")[-1].query.get("cursor") is None


def test_app_store_backfill_through_the_worker_stores_back_to_the_date_once(
        store, poller, django_capture_on_commit_callbacks):
    poller.config = {**poller.config, "page_size": 2}
    poller.save()
    now = timezone.now()
    for n in range(1, 8):  # one review a day, the newest an hour short of a day old
        store.add_review(review(n, (now - timedelta(days=n) + timedelta(hours=1)).isoformat()))
    assert poll_connector(poller.pk).created == 2  # the first poll takes one page
    with django_capture_on_commit_callbacks(execute=True):
        backfill.start(poller, now - timedelta(days=5))
    row = Connector.objects.get(pk=poller.pk)
    assert row.backfill["finished_at"] and not row.backfill["error"]
    assert (row.backfill["created"], row.backfill["duplicates"]) == (3, 2)
    assert stored() == [rid(n) for n in range(1, 6)]
    assert row.rate_limit["limit"] == 3600
    assert poll_connector(poller.pk, force=True).created == 0


def test_app_store_backfill_brings_responses_too_and_polling_then_stores_only_new(store, poller):
    add_recorded(store)
    page = poller.get_backend().backfill(datetime(2026, 10, 31, tzinfo=UTC), {})
    assert [m.external_id for m in page.messages] == [REFUND, PRAISE, PRAISE_RESPONSE]
    assert (page.more, page.cursor) == (False, {})
    ingest_messages(poller, page.messages)
    outcome = poll_connector(poller.pk)
    assert (outcome.created, outcome.duplicates) == (1, 3)  # the first poll's page: only SLOW is new
    assert Message.objects.count() == 4


# --- Replies ----------------------------------------------------------------------------------
def respond(review_id: str = REFUND, text: str = "Sorry about the double charge: it is refunded.") -> OutboundReply:
    return OutboundReply(text=text, channel="app_store", recipient_id=f"reviewer:{review_id}", thread_id=review_id,
                         in_reply_to=review_id, idempotency_key="k1")


def test_app_store_send_creates_the_response_and_a_second_replaces_it(store, poller):
    add_recorded(store)
    backend = poller.get_backend()
    first = backend.send(respond())
    [call] = store.calls(r"/v1/customerReviewResponses")
    assert call.json() == {"data": {"type": "customerReviewResponses",
                                    "attributes": {"responseBody": "Sorry about the double charge: it is refunded."},
                                    "relationships": {"review": {"data": {"type": "customerReviews", "id": REFUND}}}}}
    response = store.responses[REFUND]
    assert first == f"{response['id']}@{response['attributes']['lastModifiedDate']}"
    second = backend.send(respond(text="Update: the refund has arrived."))
    assert store.responses[REFUND]["id"] == response["id"]  # one response per review, replaced
    assert second != first and second.startswith(f"{response['id']}@")
    store.script("respond", Reply(201, fixture("response_created")))
    assert backend.send(respond()) == "9d8c7b6a-1e2f-4a3b-8c4d-5e6f7a8b9c0d@2026-11-02T10:04:33.512-08:00"


def test_app_store_send_refuses_what_apple_would_before_calling(store, poller):
    backend = poller.get_backend()
    with pytest.raises(ProviderRejected, match="at most 5970 characters; this one is 5971"):
        backend.send(respond(text="x" * 5971))
    with pytest.raises(ProviderRejected, match="no App Store review to answer"):
        backend.send(respond(review_id="../v1/apps"))
    with pytest.raises(ProviderRejected, match="cannot be empty"):
        backend.send(respond(text="\n"))
    assert store.calls(r".*") == []


@pytest.mark.parametrize(
    ("reply", "error", "check"),
    [
        (Reply(409, fixture("error_state")), ProviderRejected,
         lambda e: not e.retryable and e.reason == "App Store Connect answered 409 STATE_ERROR: The customer review "
                                                   "is no longer available for a response."),
        (Reply(403, fixture("error_forbidden")), ProviderAuthError, lambda e: "FORBIDDEN_ERROR" in e.reason),
        (Reply(429, fixture("error_rate_limit")), ProviderRateLimited, lambda e: e.retry_after == 60.0),
        (Reply(500, apple_error(500, "UNEXPECTED_ERROR", "An unexpected error occurred.", "Try again later.")),
         ProviderUnavailable, lambda e: e.retryable and "UNEXPECTED_ERROR: Try again later." in e.reason),
        (Reply(201, {"data": {"type": "customerReviewResponses"}}), ProviderUnavailable,
         lambda e: "sending again replaces it with the same text" in e.reason),
    ],
)
def test_app_store_send_maps_apple_errors(store, poller, reply, error, check):
    add_recorded(store)
    store.script("respond", reply)
    with pytest.raises(error) as caught:
        poller.get_backend().send(respond())
    assert check(caught.value)


def test_app_store_send_to_an_unknown_review_is_rejected_with_apple_s_detail(store, poller):
    with pytest.raises(ProviderRejected, match="There is no resource of type 'customerReviews'"):
        poller.get_backend().send(respond("00000000-0000-0000-0000-000000000404"))


def test_app_store_reply_rules_say_5970_characters_and_replacement():
    rules = AppStoreConnector.reply_rules(None, "app_store")
    assert (rules.max_chars, rules.window_hours, rules.media) == (5970, None, False)
    assert "replaces the previous one" in rules.when_closed
    assert AppStoreConnector.idempotent_sends


# --- A reply through the console's delivery ------------------------------------------------------
@pytest.fixture
def store_case(store, poller, settings, django_user_model):
    settings.CXM_CLASSIFY_ON_INGEST = False
    team = Team.objects.create(name="Apps", slug="apps")
    ensure_default_queues(team)
    team.connectors.add(poller)
    store.add_review(fixture("customer_reviews")["data"][0])
    assert poll_connector(poller.pk).created == 1
    message = Message.objects.get(connector=poller)
    classify(message)
    route_messages([message.pk])
    agent = make_user(django_user_model, "agent_ios", Role.AGENT, [team])
    return Case.objects.get(conversation=message.conversation), agent


def test_app_store_console_reply_is_delivered_as_the_review_s_response(
        store_case, store, django_capture_on_commit_callbacks):
    case, agent = store_case
    with django_capture_on_commit_callbacks(execute=True):
        reply = replies.send_reply(agent, case.pk, "Sorry about the double charge: it is refunded.")
    reply.refresh_from_db()
    assert reply.status == CaseReply.Status.DELIVERED
    response = store.responses[REFUND]
    assert response["attributes"]["responseBody"] == "Sorry about the double charge: it is refunded."
    out = Message.objects.get(pk=reply.message_id)
    assert out.external_id == f"{response['id']}@{response['attributes']['lastModifiedDate']}"
    assert out.conversation_id == case.conversation_id and out.direction == "out"


def test_app_store_console_refuses_an_overlong_reply_and_reports_apple_s_refusal(
        store_case, store, django_capture_on_commit_callbacks):
    case, agent = store_case
    with pytest.raises(InvalidRequest, match="replies are at most 5970 characters; this one is 5971"):
        replies.send_reply(agent, case.pk, "x" * 5971)
    store.script("respond", Reply(409, fixture("error_state")))
    with django_capture_on_commit_callbacks(execute=True):
        reply = replies.send_reply(agent, case.pk, "Hello again")
    reply.refresh_from_db()
    assert reply.status == CaseReply.Status.FAILED and reply.attempts == 1
    assert "The customer review is no longer available for a response." in reply.last_error
    assert store.responses == {}


# --- Configuration ----------------------------------------------------------------------------
def test_app_store_is_registered_with_its_config_and_credentials():
    assert get_connector_class("app_store") is AppStoreConnector
    assert AppStoreConnector.required_credentials == ("key_id", "issuer_id", "private_key")
    assert set(AppStoreConnector.credential_help) == set(AppStoreConnector.credential_fields)
    assert set(AppStoreConnector.config_help) == set(AppStoreConnector.config_defaults)
    assert AppStoreConnector.validate_config({"app_id": APP_ID}) == {
        "app_id": APP_ID, "first_poll_pages": 1, "page_size": 200, "api_base": "https://api.appstoreconnect.apple.com"}


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ({}, "app_id must be the app's Apple ID"),
        ({"app_id": 1479321043}, "app_id must be the app's Apple ID"),
        ({"app_id": "14/../1"}, "app_id must be the app's Apple ID"),
        ({"app_id": APP_ID, "page_size": 201}, "page_size must be an integer from 1 to 200"),
        ({"app_id": APP_ID, "first_poll_pages": 0}, "first_poll_pages must be an integer from 1 to 50"),
        ({"app_id": APP_ID, "api_base": "ftp://x"}, "api_base must be an http(s) URL with no path"),
        ({"app_id": APP_ID, "token": "x"}, "unknown config keys for app_store: token"),
    ],
)
def test_app_store_invalid_config_is_refused_with_the_key(config, reason):
    with pytest.raises(ConfigInvalid, match=reason.replace("(", r"\(").replace(")", r"\)")):
        AppStoreConnector.validate_config(config)
