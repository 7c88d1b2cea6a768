"""What one signed single-message delivery costs in queries, and that it takes the lean route
past the browser middleware (cxm.middleware.MachineRouteMiddleware)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from listening.models import Contact, Conversation, Message
from tests.listening.helpers import signed_webhook_post

# Without SAVEPOINT/RELEASE (the test's transaction turns the delivery's BEGIN/COMMIT into them).
# PostgreSQL, the deployment: connector lookup, duplicate check, author, thread, one INSERT ...
# RETURNING for the message, the thread's and the author's counters, one statement for the
# orphan links and the connector's tally; a new author and a new thread add one INSERT ...
# RETURNING each. (It was 14 and 11 before, 10 for the naive path.)
BOUNDS = {"postgresql": {"new": 10, "follow-up": 8, "replay": 3},
          "sqlite": {"new": 12, "follow-up": 10, "replay": 3}}


@pytest.fixture
def connector(make_connector):
    return make_connector("webhook", slug="queries-chat", credentials={"signing_secret": "s3cret"})


def _message(external_id: str, *, author: str = "cust-q", thread: str = "thread-q") -> dict:
    return {"id": external_id, "text": f"message {external_id}", "author": {"id": author, "name": "Ada"},
            "thread_id": thread, "sent_at": "2026-11-01T10:00:00Z"}


def _deliver(client, connector, payload) -> tuple[dict, int]:
    with CaptureQueriesContext(connection) as ctx:
        response = signed_webhook_post(client, connector, payload)
    assert response.status_code == 200, response.content
    sql = [q["sql"] for q in ctx.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]
    return response.json(), len(sql)


def _bounds() -> dict[str, int]:
    return BOUNDS["postgresql" if connection.vendor == "postgresql" else "sqlite"]


@pytest.mark.django_db(transaction=False)
def test_webhook_queries_single_delivery_within_bound(client, connector, django_capture_on_commit_callbacks):
    bounds = _bounds()
    with django_capture_on_commit_callbacks(execute=False) as announced:
        answer, new = _deliver(client, connector, _message("q1"))
    assert answer == {"stored": 1, "duplicates": 0}
    assert new <= bounds["new"], f"{new} queries for a new author and thread"
    assert len(announced) == 1  # the stored message is announced once, on commit

    answer, follow_up = _deliver(client, connector, _message("q2"))
    assert answer == {"stored": 1, "duplicates": 0}
    assert follow_up <= bounds["follow-up"], f"{follow_up} queries for a known author and thread"

    answer, replay = _deliver(client, connector, _message("q2"))
    assert answer == {"stored": 0, "duplicates": 1}
    assert replay <= bounds["replay"], f"{replay} queries for a duplicate"

    conversation = Conversation.objects.get(connector=connector, external_id="thread-q")
    contact = Contact.objects.get(channel="web", external_id="cust-q")
    assert (conversation.message_count, contact.message_count, conversation.contact_id) == (2, 2, contact.pk)
    connector.refresh_from_db()
    assert (connector.messages_received, connector.duplicates_received) == (2, 1)
    assert connector.last_success_at is not None


def test_webhook_queries_reply_before_parent_is_linked(client, connector):
    _deliver(client, connector, {**_message("child"), "in_reply_to": "parent"})
    _deliver(client, connector, _message("parent"))
    child = Message.objects.get(connector=connector, external_id="child")
    assert child.parent_id == Message.objects.get(connector=connector, external_id="parent").pk


def test_webhook_queries_delivery_skips_browser_middleware(client, connector):
    response = signed_webhook_post(client, connector, _message("lean-1"))
    assert response.status_code == 200
    # X-Frame-Options and the session's Vary: Cookie come from middleware a delivery skips.
    assert "X-Frame-Options" not in response.headers
    assert "Cookie" not in response.headers.get("Vary", "")
    assert response.headers["Content-Length"] == str(len(response.content))
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "X-Frame-Options" in client.get("/healthz").headers  # everything else keeps the full stack


def test_webhook_queries_lean_route_keeps_domain_errors(client, connector):
    missing = client.post("/hooks/no-such-connector/", data=b"{}", content_type="application/json")
    assert missing.status_code == 404
    assert missing.json()["error"] == "unknown_connector"
    unsigned = client.post(f"/hooks/{connector.slug}/", data=b"{}", content_type="application/json")
    assert unsigned.status_code == 401
    assert "reason" in unsigned.json()
    assert not Message.objects.filter(connector=connector).exists()


def _run_on_commit(callbacks) -> list[str]:
    with CaptureQueriesContext(connection) as ctx:
        for callback in callbacks:
            callback()
    return [q["sql"] for q in ctx.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]


def test_webhook_queries_profile_receiver_reads_no_message_back(client, connector, settings,
                                                               django_capture_on_commit_callbacks):
    """learn_from_messages works from what ingestion knew (IngestResult.profile): the customer's
    channel is learned without reading the message back, and a delivery without a location or a
    time zone and without a customer costs the receivers nothing but the subscription check."""
    settings.CXM_CLASSIFY_ON_INGEST = False  # the classifier's own reads are not the receivers'
    verified = {**_message("p1", author="cust-v"),
                "author": {"id": "cust-v", "name": "Vera", "email": "vera@example.com", "email_verified": True}}
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert signed_webhook_post(client, connector, verified).status_code == 200
    sql = _run_on_commit(callbacks)
    assert not [q for q in sql if 'FROM "listening_message"' in q], sql
    customer = Contact.objects.get(channel="web", external_id="cust-v").customer
    assert customer is not None and customer.learned_channel == "web"

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert signed_webhook_post(client, connector, _message("p2", author="cust-plain")).status_code == 200
    sql = _run_on_commit(callbacks)
    assert len(sql) <= 1, sql  # at most the subscriptions check (kept for a moment per process)


def test_webhook_queries_location_still_learned_from_the_hint(client, connector, django_capture_on_commit_callbacks):
    located = {**_message("loc-1", author="cust-l"), "location": {"lat": 48.8566, "lon": 2.3522}}
    with django_capture_on_commit_callbacks(execute=True):
        assert signed_webhook_post(client, connector, located).status_code == 200
    customer = Contact.objects.get(channel="web", external_id="cust-l").customer
    assert (customer.location_lat, customer.location_lon, customer.location_source) == (48.8566, 2.3522, "web")


def test_webhook_queries_connector_lookup_kept_and_forgotten_on_save(client, connector):
    _, first = _deliver(client, connector, _message("c1"))
    _, second = _deliver(client, connector, _message("c2"))
    assert second < first  # the connector row is kept for a moment: no lookup
    connector.enabled = False
    connector.save()  # forgets the kept rows: paused at once in this process
    paused = signed_webhook_post(client, connector, _message("c3"))
    assert paused.status_code in (403, 409, 423), paused.content
    assert not Message.objects.filter(connector=connector, external_id="c3").exists()
    connector.enabled = True
    connector.save()
    assert signed_webhook_post(client, connector, _message("c3")).status_code == 200


@pytest.mark.django_db(transaction=False)
def test_webhook_queries_new_subscription_gets_the_next_delivery(client, connector, django_capture_on_commit_callbacks):
    from listening import crypto
    from responses.models import WebhookDelivery, WebhookSubscription

    with django_capture_on_commit_callbacks(execute=True):
        signed_webhook_post(client, connector, _message("s1"))  # nobody listens: the answer is kept
    # Saved in this process: the kept "nobody listens" is forgotten at once (another process
    # sees it within responses.outbound_tasks.LISTENING_TTL_S).
    WebhookSubscription.objects.create(name="listener", url="http://127.0.0.1:9/", events=["message.received"],
                                       secret_encrypted=crypto.encrypt_text("unused"))
    with django_capture_on_commit_callbacks(execute=True):
        assert signed_webhook_post(client, connector, _message("s2")).status_code == 200
    events = list(WebhookDelivery.objects.values_list("event_type", flat=True))
    assert events == ["message.received"]
