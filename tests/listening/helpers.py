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
