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
