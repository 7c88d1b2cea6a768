"""The Google Play connector end to end: the service account's JWT bearer grant (verified by the
fake with the key's public half), review polling with token paging, edits, developer replies, and
replies from the console, against a fake Google over real HTTP (tests/fakes/google_play.py)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from listening import backfill
from listening.connectors import get_connector_class, google_play as google_play_module
from listening.connectors.base import OutboundReply
from listening.connectors.google_play import GooglePlayAuthError, GooglePlayConnector
from listening.exceptions import (
    ConfigInvalid,
    NotSupported,
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
from tests.fakes.google_play import SCOPE, FakeGooglePlay, google_error
from tests.fakes.http import Reply
from tests.responses.conftest import classify, make_user

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "google_play"
FIXTURE_NOW = 1793534400  # the recorded payloads' "now": tests move their times to the real now
PACKAGE = "com.acme.coffee"
CLIENT_EMAIL = "cxm-reviews@acme-coffee-prod.iam.gserviceaccount.com"
CRASH, LOYALTY, FILIALE = (
    "gp:AOqpTOGk7Qm3vXyFz9pL2sHq1bWcN4eR8tUaJdK6oYiE0nMfV5hBxZgC",
    "gp:AOqpTOHb2Lr8sWqN5xKd1cYvE7mZu0aT3gFjP9iRo6BhQ4lMnC",
    "gp:AOqpTOEw9Jc4nTbR6yHs3kVaD8pXq1uL5fZm2iGo7KeB0tNrW",
)


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.fixture(scope="module")
def keys() -> dict[str, rsa.RSAPrivateKey]:
    """Throwaway keys made for this run: the service account's, and one Google does not know."""
    return {name: rsa.generate_private_key(public_exponent=65537, key_size=2048) for name in ("right", "wrong")}


@pytest.fixture(autouse=True)
def _no_cached_tokens():
    google_play_module._tokens.clear()
    yield
    google_play_module._tokens.clear()


@pytest.fixture
def play(fake_provider, keys) -> FakeGooglePlay:
    return FakeGooglePlay(fake_provider, public_key=keys["right"].public_key(), client_email=CLIENT_EMAIL,
                          package_name=PACKAGE)


def service_account(play: FakeGooglePlay, key: rsa.RSAPrivateKey, **overrides: Any) -> str:
    """A service-account JSON key as Google Cloud downloads it, as an admin pastes it."""
    return json.dumps({
        "type": "service_account", "project_id": "acme-coffee-prod", "private_key_id": "8f3c2a1b9d7e6f5a4b3c",
        "private_key": _pem(key), "client_email": CLIENT_EMAIL, "client_id": "104711251183412769341",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": play.token_uri,
        "universe_domain": "googleapis.com", **overrides,
    })


@pytest.fixture
def poller(make_connector, play, keys):
    return make_connector("google_play", slug="gp", poll_interval_seconds=300,
                          credentials={"service_account_json": service_account(play, keys["right"])},
                          config={"package_name": PACKAGE, "api_base": play.url})


def recorded_reviews() -> list[dict[str, Any]]:
    """The recorded page's reviews, their times moved so "now" is the real now."""
    shift = int(time.time()) - FIXTURE_NOW
    reviews = fixture("reviews_page")["reviews"]
    for review in reviews:
        for comment in review["comments"]:
            stamp = next(iter(comment.values()))["lastModified"]
            stamp["seconds"] = str(int(stamp["seconds"]) + shift)
    return reviews


def review(n: int, ago: int, *, rating: int = 3, text: str = "ok") -> dict[str, Any]:
    seconds = str(int(time.time()) - ago)
    return {"reviewId": f"gp:r{n}", "authorName": f"User {n}", "comments": [{"userComment": {
        "text": text, "lastModified": {"seconds": seconds, "nanos": 0}, "starRating": rating,
        "reviewerLanguage": "en", "device": "oriole", "androidOsVersion": 35, "appVersionCode": 1,
        "appVersionName": "1.0", "thumbsUpCount": 0, "thumbsDownCount": 0}}]}


def stored() -> list[str]:
    return sorted(Message.objects.values_list("external_id", flat=True))


def seconds_of(review: dict[str, Any], kind: str = "userComment") -> int:
    return int(next(c[kind] for c in review["comments"] if kind in c)["lastModified"]["seconds"])


# --- Polling ----------------------------------------------------------------------------------
def test_google_play_poll_stores_reviews_with_rating_author_and_developer_replies(play, poller):
    for item in recorded_reviews():
        play.add_review(item)
    outcome = poll_connector(poller.pk)
    assert (outcome.error, outcome.created) == ("", 4)
    crash_at = seconds_of(play.reviews[CRASH])
    crash = Message.objects.get(external_id=f"{CRASH}:{crash_at}")
    assert crash.text == ("★★☆☆☆ (2/5)\n\nApp crashes every time I open the order history. "
                          "Reinstalled twice <still broken>.")
    assert crash.sent_at == datetime.fromtimestamp(crash_at, tz=UTC).replace(microsecond=417000)
    assert (crash.channel, crash.direction) == ("google_play", "in")
    assert crash.conversation.external_id == CRASH
    assert crash.conversation.subject == "★★☆☆☆ (2/5) review of com.acme.coffee"
    assert (crash.author.external_id, crash.author.display_name) == (f"reviewer:{CRASH}", "Marta Kowalska")
    user = crash.raw["userComment"]
    assert (user["starRating"], user["reviewerLanguage"], user["device"], user["appVersionName"]) == (
        2, "en", "a52q", "4.2.1")
    assert user["deviceMetadata"]["manufacturer"] == "Samsung"
    # The reply already under the loyalty review is outbound, after and in answer to the review.
    loyalty_at, answered_at = seconds_of(play.reviews[LOYALTY]), seconds_of(play.reviews[LOYALTY], "developerComment")
    answer = Message.objects.get(external_id=f"{LOYALTY}:reply:{answered_at}")
    assert (answer.direction, answer.text) == ("out", "Thank you! Enjoy your coffee.")
    assert answer.parent.external_id == f"{LOYALTY}:{loyalty_at}"
    assert answer.conversation_id == answer.parent.conversation_id
    # Two "A Google user"s are two people: the review, not the name, keys the contact.
    assert answer.parent.author.external_id == f"reviewer:{LOYALTY}"
    assert Conversation.objects.count() == 3
    [listing] = play.calls(r"/androidpublisher/v3/applications/.*/reviews")
    assert listing.path == f"/androidpublisher/v3/applications/{PACKAGE}/reviews"
    assert listing.query == {"maxResults": "100"}
    assert listing.headers["authorization"] == "Bearer ya29.fake-token-1"
    poller.refresh_from_db()
    assert "token" not in json.dumps(poller.cursor) and "ya29" not in json.dumps(poller.cursor)
    assert poller.health == Health.OK


def test_google_play_token_is_a_signed_jwt_bearer_grant_fetched_once_for_many_polls(play, poller, keys):
    play.add_review(review(1, 600))
    for _ in range(3):
        assert poll_connector(poller.pk, force=True).error == ""
    [grant] = play.calls(r"/token")
    form = grant.form()
    assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    header = jwt.get_unverified_header(form["assertion"])
    assert (header["alg"], header["kid"]) == ("RS256", "8f3c2a1b9d7e6f5a4b3c")
    [claims] = play.assertions  # the fake verified the signature with the public key
    assert (claims["iss"], claims["aud"], claims["scope"]) == (CLIENT_EMAIL, play.token_uri, SCOPE)
    assert 0 < claims["exp"] - claims["iat"] <= 3600
    assert [c.headers["authorization"] for c in play.calls(r".*/reviews")] == ["Bearer ya29.fake-token-1"] * 3
    play.expire_tokens()  # Google revoked it early: one 401, a fresh grant, the same poll succeeds
    assert poll_connector(poller.pk, force=True).error == ""
    assert len(play.calls(r"/token")) == 2
    assert [c.headers["authorization"] for c in play.calls(r".*/reviews")][-2:] == [
        "Bearer ya29.fake-token-1", "Bearer ya29.fake-token-2"]


def test_google_play_same_review_polled_three_times_is_stored_once(play, poller):
    for item in recorded_reviews():
        play.add_review(item)
    assert poll_connector(poller.pk).created == 4
    for _ in range(2):
        again = poll_connector(poller.pk, force=True)
        assert (again.error, again.created, again.duplicates) == ("", 0, 0)  # the cursor knew them
    Connector.objects.filter(pk=poller.pk).update(cursor={})  # a lost cursor: ingest still dedupes
    lost = poll_connector(poller.pk, force=True)
    assert (lost.created, lost.duplicates) == (0, 4)
    assert Message.objects.count() == 4


def test_google_play_an_edited_review_is_a_new_message_in_the_same_conversation(play, poller):
    play.add_review(review(1, 7200, rating=1, text="Payment failed twice."))
    assert poll_connector(poller.pk).created == 1
    edited_at = int(time.time()) - 60
    play.edit_review("gp:r1", "Support refunded me, thanks.", 4, edited_at)
    outcome = poll_connector(poller.pk, force=True)
    assert (outcome.created, outcome.duplicates) == (1, 0)
    first, second = Message.objects.order_by("sent_at")
    assert second.external_id == f"gp:r1:{edited_at}"
    assert second.text == "★★★★☆ (4/5)\n\nSupport refunded me, thanks."
    assert first.text == "★☆☆☆☆ (1/5)\n\nPayment failed twice."  # the first version is kept
    assert first.conversation_id == second.conversation_id
    assert Conversation.objects.get().external_id == "gp:r1"
    assert poll_connector(poller.pk, force=True).created == 0


def test_google_play_poll_pages_with_the_token_and_resumes_a_walk(play, poller):
    poller.config = {**poller.config, "page_size": 2}
    poller.save()
    for n in range(1, 6):
        play.add_review(review(n, n * 100))
    outcome = poll_connector(poller.pk)
    assert (outcome.error, outcome.pages, outcome.created) == ("", 3, 5)
    tokens = [c.query.get("token") for c in play.calls(r".*/reviews")]
    assert tokens[0] is None and len(set(tokens[1:])) == 2 and all(tokens[1:])
    poller.refresh_from_db()
    assert "page_token" not in poller.cursor and len(poller.cursor["seen"]) == 5
    # A walk cut short (max_pages) resumes from its page token at the next poll.
    Connector.objects.filter(pk=poller.pk).update(cursor={})
    Message.objects.all().delete()
    assert poll_connector(poller.pk, force=True, max_pages=1).created == 2
    assert Connector.objects.get(pk=poller.pk).cursor["page_token"] == tokens[1]
    assert poll_connector(poller.pk, force=True).created == 3
    assert stored() == sorted(f"gp:r{n}:{seconds_of(play.reviews[f'gp:r{n}'])}" for n in range(1, 6))


def test_google_play_a_page_token_google_refuses_restarts_the_walk(play, poller):
    play.add_review(review(1, 100))
    Connector.objects.filter(pk=poller.pk).update(cursor={"seen": {}, "page_token": "c3RhbGU="})
    play.script("list", Reply(400, google_error(400, "INVALID_ARGUMENT", "Invalid pagination token.")))
    outcome = poll_connector(poller.pk)
    assert (outcome.error, outcome.created) == ("", 1)
    assert [c.query.get("token") for c in play.calls(r".*/reviews")] == ["c3RhbGU=", None]


def test_google_play_only_the_last_week_is_returned_and_the_cursor_forgets_older(play, poller):
    play.add_review(review(1, 8 * 86400))  # Google's API no longer returns it
    play.add_review(review(2, 3600))
    Connector.objects.filter(pk=poller.pk).update(cursor={"seen": {"gp:old": [int(time.time()) - 9 * 86400, 0]}})
    assert poll_connector(poller.pk).created == 1
    assert stored() == [f"gp:r2:{seconds_of(play.reviews['gp:r2'])}"]
    assert list(Connector.objects.get(pk=poller.pk).cursor["seen"]) == ["gp:r2"]


def test_google_play_translation_language_is_asked_and_the_original_kept(play, poller):
    poller.config = {**poller.config, "translation_language": "en"}
    poller.save()
    play.add_review(recorded_reviews()[2])
    assert poll_connector(poller.pk).created == 1
    assert play.calls(r".*/reviews")[0].query["translationLanguage"] == "en"
    message = Message.objects.get()
    assert message.text.endswith("[en] Gute App, aber die Filialsuche ist langsam.")
    assert message.raw["userComment"]["originalText"] == "Gute App, aber die Filialsuche ist langsam."


# --- Failures ---------------------------------------------------------------------------------
def test_google_play_a_key_google_does_not_know_is_an_auth_failure_that_stores_nothing(
        play, make_connector, keys):
    wrong = make_connector("google_play", credentials={"service_account_json": service_account(play, keys["wrong"])},
                           config={"package_name": PACKAGE, "api_base": play.url})
    play.add_review(review(1, 60))
    outcome = poll_connector(wrong.pk)
    assert outcome.error == "Google refused the service account's key: invalid_grant: Invalid JWT Signature."
    row = Connector.objects.get(pk=wrong.pk)
    assert (row.health, row.cursor) == (Health.DEGRADED, {})
    assert row.last_error.startswith("GooglePlayAuthError:")
    assert "PRIVATE KEY" not in row.last_error
    assert play.calls(r".*/reviews") == [] and not Message.objects.exists()


@pytest.mark.parametrize(
    ("credential", "reason"),
    [
        ("{not json", "service_account_json is not valid JSON"),
        (json.dumps({"type": "authorized_user", "client_id": "x"}), "its type must be service_account"),
        ("missing-email", "service_account_json has no client_email"),
        ("bad-key", "private_key is not a PEM RSA private key"),
        ("", "no service_account_json configured"),
    ],
)
def test_google_play_a_malformed_service_account_key_is_named_without_quoting_it(
        play, make_connector, keys, credential, reason):
    if credential == "missing-email":
        credential = service_account(play, keys["right"], client_email="")
    elif credential == "bad-key":
        credential = service_account(play, keys["right"], private_key="-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END")
    bad = make_connector("google_play", credentials={"service_account_json": credential},
                         config={"package_name": PACKAGE, "api_base": play.url})
    outcome = poll_connector(bad.pk)
    assert reason in outcome.error
    assert "c2VjcmV0" not in outcome.error
    assert Connector.objects.get(pk=bad.pk).health == Health.DEGRADED
    assert play.calls(r".*") == []


@pytest.mark.parametrize(
    ("answer", "error", "expected"),
    [
        (Reply(403, fixture("error_permission_denied")), "ProviderAuthError",
         "Google Play answered 403 PERMISSION_DENIED: The current user has insufficient permissions"),
        (Reply(429, fixture("error_quota"), {"retry-after": "120"}), "ProviderRateLimited", "RESOURCE_EXHAUSTED"),
        (Reply(503, "<html>Service Unavailable</html>"), "ProviderUnavailable", "answered 503"),
    ],
)
def test_google_play_api_errors_are_recorded_with_google_s_reason(play, poller, answer, error, expected):
    play.script("list", answer)
    before = datetime.now(tz=UTC)
    outcome = poll_connector(poller.pk)
    assert expected in outcome.error
    row = Connector.objects.get(pk=poller.pk)
    assert row.last_error.startswith(f"{error}:") and row.health == Health.DEGRADED
    if error == "ProviderRateLimited":
        assert row.next_poll_at >= before + timedelta(seconds=120)


@pytest.mark.parametrize(
    ("page", "reason"),
    [
        (b"<html>proxy error</html>", "malformed reviews page: body must be an object"),
        ({"reviews": {"reviewId": "gp:x"}}, "malformed reviews page: field reviews must be list"),
        ({"reviews": ["gp:x"]}, "malformed reviews page: field reviews[0] must be an object"),
        ({"reviews": [], "tokenPagination": {"nextPageToken": ["x"]}},
         "field tokenPagination.nextPageToken must be str"),
        ({"reviews": [], "tokenPagination": {"nextPageToken": "x" * 1001}}, "nextPageToken is too long"),
    ],
)
def test_google_play_a_malformed_page_is_a_recorded_failure_that_keeps_the_cursor(play, poller, page, reason):
    play.add_review(review(1, 600))
    assert poll_connector(poller.pk).created == 1
    cursor = Connector.objects.get(pk=poller.pk).cursor
    play.script("list", Reply(200, page))
    outcome = poll_connector(poller.pk, force=True)
    assert reason in outcome.error
    row = Connector.objects.get(pk=poller.pk)
    assert row.last_error.startswith("PayloadInvalid: Google Play answered a malformed reviews page")
    assert (row.cursor, row.health) == (cursor, Health.DEGRADED)
    with pytest.raises(PayloadInvalid, match="malformed reviews page"):
        play.script("list", Reply(200, page))
        row.get_backend().poll({})


def test_google_play_an_odd_review_is_skipped_and_logged_without_blocking_the_rest(play, poller, caplog):
    good = review(1, 600)
    undated = review(3, 300)
    undated["comments"][0]["userComment"]["lastModified"] = {"seconds": "soon"}
    page = {"reviews": [good, review(2, 500, rating=7), undated, {**review(4, 400), "reviewId": "gp:../../evil"},
                        {"reviewId": "gp:r5", "comments": [{"unknownComment": {}}]}]}
    play.script("list", Reply(200, page))
    outcome = poll_connector(poller.pk)
    assert (outcome.error, outcome.created) == ("", 1)
    assert stored() == [f"gp:r1:{seconds_of(good)}"]
    assert "starRating must be a star rating from 1 to 5" in caplog.text
    assert "lastModified.seconds must be Unix seconds" in caplog.text
    assert "reviewId is not a review id" in caplog.text
    assert "gp:r5 has no userComment" in caplog.text


def test_google_play_api_base_pointing_inward_is_refused_in_production(play, poller, settings):
    settings.ALLOW_PRIVATE_URLS = False
    outcome = poll_connector(poller.pk)
    assert "resolves to a non-public address" in outcome.error
    assert play.calls(r".*") == []


# --- Check, backfill --------------------------------------------------------------------------
def test_google_play_check_connection_says_what_the_week_holds_and_stores_nothing(play, poller):
    for item in recorded_reviews():
        play.add_review(item)
    backend = poller.get_backend()
    assert backend.check_connection().startswith("Reached com.acme.coffee: 3 review(s) in the last week")
    poller.config = {**poller.config, "page_size": 2}
    assert GooglePlayConnector(poller).check_connection().startswith("Reached com.acme.coffee: 2+ review(s)")
    assert not Message.objects.exists()
    play.script("list", Reply(404, google_error(404, "NOT_FOUND", "Package not found: com.acme.coffee.")))
    with pytest.raises(ProviderRejected, match="NOT_FOUND: Package not found"):
        backend.check_connection()
    play.script("list", Reply(200, b"<html>captive portal</html>"))
    with pytest.raises(ProviderUnavailable, match="malformed reviews page: body must be an object"):
        backend.check_connection()


def test_google_play_does_not_backfill_beyond_the_api_s_week(poller):
    assert GooglePlayConnector.supports_backfill is False
    with pytest.raises(backfill.BackfillRefused, match="last 7 days"):  # the connector's own reason
        backfill.start(poller, datetime.now(tz=UTC) - timedelta(days=3))
    with pytest.raises(NotSupported, match="last 7 days") as caught:
        poller.get_backend().backfill(datetime.now(tz=UTC) - timedelta(days=30), {})
    assert "import it as CSV" in caught.value.reason


# --- Replies ----------------------------------------------------------------------------------
def answer(review_id: str = "gp:r1", text: str = "Sorry! Version 1.1 fixes it.") -> OutboundReply:
    return OutboundReply(text=text, channel="google_play", recipient_id=f"reviewer:{review_id}",
                         thread_id=review_id, in_reply_to=f"{review_id}:1", idempotency_key="k1")


def test_google_play_send_sets_the_developer_reply_and_returns_its_version(play, poller):
    play.add_review(review(1, 600))
    sent = poller.get_backend().send(answer())
    [call] = play.calls(r".*:reply")
    assert call.path == f"/androidpublisher/v3/applications/{PACKAGE}/reviews/gp:r1:reply"
    assert call.json() == {"replyText": "Sorry! Version 1.1 fixes it."}
    assert call.headers["authorization"].startswith("Bearer ya29.fake-token-")
    assert sent == f"gp:r1:reply:{seconds_of(play.reviews['gp:r1'], 'developerComment')}"
    play.script("reply", Reply(200, fixture("reply_ok")))
    assert poller.get_backend().send(answer()) == "gp:r1:reply:1793534400"


def test_google_play_send_refuses_what_google_would_before_calling(play, poller):
    backend = poller.get_backend()
    with pytest.raises(ProviderRejected, match="at most 350 characters; this one is 351"):
        backend.send(answer(text="x" * 351))
    with pytest.raises(ProviderRejected, match="no Google Play review to answer"):
        backend.send(answer(review_id="gp:r1/../../other"))
    with pytest.raises(ProviderRejected, match="cannot be empty"):
        backend.send(answer(text="  "))
    assert play.calls(r".*") == []


@pytest.mark.parametrize(
    ("reply", "error", "check"),
    [
        (Reply(400, fixture("error_invalid_argument")), ProviderRejected,
         lambda e: not e.retryable and e.reason == "Google Play answered 400 INVALID_ARGUMENT: The review is no "
                                                   "longer available to reply to."),
        (Reply(403, fixture("error_permission_denied")), ProviderAuthError, lambda e: "PERMISSION_DENIED" in e.reason),
        (Reply(429, fixture("error_quota"), {"retry-after": "30"}), ProviderRateLimited,
         lambda e: e.retryable and e.retry_after == 30),
        (Reply(500, google_error(500, "INTERNAL", "Internal error encountered.")), ProviderUnavailable,
         lambda e: e.retryable and "Internal error encountered." in e.reason),
    ],
)
def test_google_play_send_maps_api_errors(play, poller, reply, error, check):
    play.add_review(review(1, 600))
    play.script("reply", reply)
    with pytest.raises(error) as caught:
        poller.get_backend().send(answer())
    assert check(caught.value)
    assert play.replies == []


def test_google_play_send_to_an_unknown_review_is_rejected_with_google_s_reason(play, poller):
    with pytest.raises(ProviderRejected, match="NOT_FOUND: Review not found."):
        poller.get_backend().send(answer("gp:gone"))


def test_google_play_send_with_a_refused_key_fails_at_once(play, make_connector, keys):
    wrong = make_connector("google_play", credentials={"service_account_json": service_account(play, keys["wrong"])},
                           config={"package_name": PACKAGE, "api_base": play.url})
    with pytest.raises(GooglePlayAuthError) as caught:
        wrong.get_backend().send(answer())
    assert not caught.value.retryable


def test_google_play_reply_rules_say_350_characters_and_replacement():
    rules = GooglePlayConnector.reply_rules(None, "google_play")
    assert (rules.max_chars, rules.window_hours, rules.media) == (350, None, False)
    assert "replaces the previous one" in rules.when_closed
    assert GooglePlayConnector.idempotent_sends


# --- A reply through the console's delivery ------------------------------------------------------
@pytest.fixture
def play_case(play, poller, settings, django_user_model):
    settings.CXM_CLASSIFY_ON_INGEST = False
    team = Team.objects.create(name="Apps", slug="apps")
    ensure_default_queues(team)
    team.connectors.add(poller)
    play.add_review(recorded_reviews()[0])
    assert poll_connector(poller.pk).created == 1
    message = Message.objects.get(connector=poller)
    classify(message)
    route_messages([message.pk])
    agent = make_user(django_user_model, "agent_play", Role.AGENT, [team])
    return Case.objects.get(conversation=message.conversation), agent


def test_google_play_console_reply_is_delivered_and_our_reply_polled_back_is_stored_once(
        play_case, play, poller, django_capture_on_commit_callbacks):
    case, agent = play_case
    with django_capture_on_commit_callbacks(execute=True):
        reply = replies.send_reply(agent, case.pk, "Sorry about the crash! 4.2.2 fixes order history.")
    reply.refresh_from_db()
    assert reply.status == CaseReply.Status.DELIVERED
    assert play.replies == [{"reviewId": CRASH, "replyText": "Sorry about the crash! 4.2.2 fixes order history."}]
    out = Message.objects.get(pk=reply.message_id)
    assert out.external_id == f"{CRASH}:reply:{seconds_of(play.reviews[CRASH], 'developerComment')}"
    assert out.conversation_id == case.conversation_id
    again = poll_connector(poller.pk, force=True)  # Google now lists the review with our reply
    assert (again.error, again.created, again.duplicates) == ("", 0, 1)
    assert Message.objects.filter(conversation=case.conversation, direction="out").count() == 1


def test_google_play_console_refuses_a_reply_over_350_characters(play_case, play):
    case, agent = play_case
    with pytest.raises(InvalidRequest, match="replies are at most 350 characters; this one is 351"):
        replies.send_reply(agent, case.pk, "x" * 351)
    assert not CaseReply.objects.exists()
    assert play.calls(r".*:reply") == []


def test_google_play_console_reply_refused_by_google_fails_with_its_reason(
        play_case, play, django_capture_on_commit_callbacks):
    case, agent = play_case
    play.script("reply", Reply(400, fixture("error_invalid_argument")))
    with django_capture_on_commit_callbacks(execute=True):
        reply = replies.send_reply(agent, case.pk, "Hello again")
    reply.refresh_from_db()
    assert reply.status == CaseReply.Status.FAILED and reply.attempts == 1
    assert "The review is no longer available to reply to." in reply.last_error


# --- Configuration ----------------------------------------------------------------------------
def test_google_play_is_registered_with_its_config_and_credentials():
    assert get_connector_class("google_play") is GooglePlayConnector
    assert GooglePlayConnector.required_credentials == ("service_account_json",)
    assert "last 7 days" in GooglePlayConnector.credential_help["service_account_json"]
    assert set(GooglePlayConnector.config_help) == set(GooglePlayConnector.config_defaults)
    assert GooglePlayConnector.validate_config({"package_name": PACKAGE}) == {
        "package_name": PACKAGE, "translation_language": "", "page_size": 100,
        "api_base": "https://androidpublisher.googleapis.com"}


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ({}, "package_name must be an Android package name"),
        ({"package_name": "com.acme/../x"}, "package_name must be an Android package name"),
        ({"package_name": PACKAGE, "translation_language": "english please"}, "translation_language must be"),
        ({"package_name": PACKAGE, "page_size": 101}, "page_size must be an integer from 1 to 100"),
        ({"package_name": PACKAGE, "api_base": "https://x.test/path"}, "api_base must be an http(s) URL with no path"),
        ({"package_name": PACKAGE, "token": "x"}, "unknown config keys for google_play: token"),
    ],
)
def test_google_play_invalid_config_is_refused_with_the_key(config, reason):
    with pytest.raises(ConfigInvalid, match=reason.replace("(", r"\(").replace(")", r"\)")):
        GooglePlayConnector.validate_config(config)
