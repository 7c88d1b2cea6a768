"""Builders shared by listening tests."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

from listening.connectors.base import InboundAuthor, InboundMessage
from listening.connectors.webhook import sign

BASE_TIME = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def inbound(external_id: str, text: str = "hello", *, author: str = "u1", minutes: int = 0,
            channel: str = "web", thread_id: str = "", parent: str = "", **author_fields) -> InboundMessage:
    return InboundMessage(
        external_id=external_id,
        text=text,
        author=InboundAuthor(external_id=author, **author_fields),
        sent_at=BASE_TIME + timedelta(minutes=minutes),
        channel=channel,
        thread_id=thread_id,
        parent_external_id=parent,
        raw={"id": external_id, "text": text},
    )


def signed_webhook_post(client, connector, payload, *, secret: str = "s3cret", timestamp: int | None = None):
    """POST a generic-webhook delivery signed with `secret`."""
    body = json.dumps(payload).encode() if not isinstance(payload, bytes) else payload
    headers = sign(secret, timestamp if timestamp is not None else int(time.time()), body)
    return client.post(
        f"/hooks/{connector.slug}/",
        data=body,
        content_type="application/json",
        headers=headers,
    )


def run_concurrently(target, count: int, timeout: float = 180.0) -> list:
    """Run `target()` in `count` threads released at the same instant; return their results.
    Each thread closes its own database connection, so the test database can be dropped."""
    import threading

    from django.db import connection

    barrier = threading.Barrier(count)
    results: list = []

    def run() -> None:
        try:
            barrier.wait()
            results.append(target())
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    return results
