"""What the admin pages need from the Meta connector, against the fake Graph API over real HTTP: the
connect form's words, "test connection" (GET /me), headroom from Graph's usage headers, no backfill."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from listening.connectors.base import OutboundReply, RateLimit
from listening.connectors.meta import MetaConnector
from listening.exceptions import NotSupported, ProviderAuthError, ProviderRateLimited, SecretNotConfigured
from tests.fakes.meta import APP_RATE_LIMITED, PAGE, TOKEN_EXPIRED, FakeGraph

APP_SECRET, VERIFY_TOKEN, ACCESS_TOKEN = "0f1e2d3c4b5a69788796a5b4c3d2e1f0", "cxm-verify-7f3a", "EAAGtest-token"
CREDENTIALS = {"app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN, "access_token": ACCESS_TOKEN}
PSID = "6934112743300901"


@pytest.fixture
def graph(fake_provider) -> FakeGraph:
    return FakeGraph(fake_provider, token=ACCESS_TOKEN)


@pytest.fixture
def page(make_connector, graph):
    return make_connector("meta", credentials=CREDENTIALS, config={"api_base": graph.url, "page_id": PAGE["id"]})


def send_messenger(backend) -> str:
    return backend.send(OutboundReply(text="On it!", channel="messenger", recipient_id=PSID,
                                      thread_id=f"{PAGE['id']}:{PSID}"))


def test_meta_connect_form_explains_every_key_and_requires_all_three_secrets():
    assert set(MetaConnector.config_help) == set(MetaConnector.config_defaults)
    assert set(MetaConnector.credential_help) == set(MetaConnector.credential_fields)
    assert MetaConnector.required_credentials == ("app_secret", "verify_token", "access_token")
    assert "App secret" in MetaConnector.credential_help["app_secret"]
    assert (MetaConnector.oauth, MetaConnector.supports_backfill) == (None, False)


# --- Test connection -----------------------------------------------------------------------------
def test_meta_check_says_which_page_the_token_speaks_for(graph, page):
    assert page.get_backend().check_connection() == "Signed in as Acme Kettles (682498302938465)."
    [call] = graph.me_calls()
    assert (call.path, call.query) == ("/v21.0/me", {"fields": "id,name"})
    assert call.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"  # never in the URL


def test_meta_check_notes_a_token_for_another_page(make_connector, graph):
    row = make_connector("meta", credentials=CREDENTIALS, config={"api_base": graph.url, "page_id": "111222333"})
    assert row.get_backend().check_connection() == (
        "Signed in as Acme Kettles (682498302938465). Note: page_id is 111222333, but this token speaks for "
        "682498302938465.")


def test_meta_check_with_an_expired_token_is_graphs_words_without_the_token(graph, page):
    graph.fail_next(TOKEN_EXPIRED)
    with pytest.raises(ProviderAuthError) as caught:
        page.get_backend().check_connection()
    assert "Graph error 190/463: Error validating access token: Session has expired." in caught.value.reason
    assert ACCESS_TOKEN not in str(caught.value)


@pytest.mark.parametrize("missing", ["app_secret", "verify_token"])
def test_meta_check_without_the_webhook_secrets_fails_before_calling(make_connector, graph, missing):
    credentials = {k: v for k, v in CREDENTIALS.items() if k != missing}
    row = make_connector("meta", credentials=credentials, config={"api_base": graph.url})
    with pytest.raises(SecretNotConfigured, match=missing):
        row.get_backend().check_connection()
    assert graph.me_calls() == []


# --- Rate limits -------------------------------------------------------------------------------
def test_meta_send_notes_headroom_from_the_app_usage_header(graph, page):
    graph.usage(app={"call_count": 28, "total_cputime": 12, "total_time": 40})
    backend = page.get_backend()
    send_messenger(backend)
    assert backend.rate_limit == RateLimit(remaining=60, limit=100, resets_at=None)


def test_meta_business_use_case_usage_takes_the_busiest_quota_and_its_wait(graph, page):
    graph.usage(business={PAGE["id"]: [
        {"type": "messenger", "call_count": 85, "total_cputime": 10, "total_time": 20,
         "estimated_time_to_regain_access": 7},
        {"type": "pages", "call_count": 3, "total_cputime": 1, "total_time": 2, "estimated_time_to_regain_access": 0},
    ]}, app={"call_count": 50, "total_cputime": 1, "total_time": 1})
    backend = page.get_backend()
    backend.check_connection()
    assert (backend.rate_limit.remaining, backend.rate_limit.limit) == (15, 100)
    assert abs(backend.rate_limit.resets_at - (timezone.now() + timedelta(minutes=7))) < timedelta(seconds=5)


def test_meta_throttled_answer_notes_no_headroom_before_raising(graph, page):
    graph.usage(app={"call_count": 100, "total_cputime": 34, "total_time": 41})
    graph.fail_next(APP_RATE_LIMITED)
    backend = page.get_backend()
    with pytest.raises(ProviderRateLimited):
        send_messenger(backend)
    assert backend.rate_limit == RateLimit(remaining=0, limit=100)


@pytest.mark.parametrize("header", ["not json", '{"call_count": "lots"}', "[28, 12]", '{"123": "x"}',
                                    '{"call_count": NaN}', '{"call_count": 1e999}', "[" * 5000])
def test_meta_junk_usage_headers_are_ignored(graph, page, header):
    graph.usage(raw={"X-App-Usage": header, "X-Business-Use-Case-Usage": header})
    backend = page.get_backend()
    assert send_messenger(backend).startswith("m_")
    assert backend.rate_limit is None


def test_meta_backfill_is_refused_with_the_webhook_only_reason(page):
    with pytest.raises(NotSupported, match="by webhook only"):
        page.get_backend().backfill(datetime(2026, 10, 1, tzinfo=UTC), {})
