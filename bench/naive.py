"""The naive baseline for bench/ingest.py: store each message with one ORM save at a time.

Bench-only code, never imported by the product. It keeps the same rows and fields current as
listening.actions.ingest_messages (contact, conversation, message, the counters) but the obvious
way: get_or_create for the contact and the conversation, an existence check, one save() per
message, each statement in autocommit, no batching.

It is served over HTTP (POST /naive-hooks/<slug>/, same verification and parsing as the real
webhook) by a second Daphne started with DJANGO_SETTINGS_MODULE=bench.naive_settings, so the
naive and the real path are timed the same way; the file-import baseline calls `store_naive`
in-process.
"""

from __future__ import annotations

from django.db import IntegrityError
from django.db.models import F
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from cxm.urls import urlpatterns as product_urlpatterns
from listening.connectors.base import InboundMessage, WebhookRequest
from listening.models import Connector, Contact, Conversation, Direction, Message


def store_naive(connector: Connector, message: InboundMessage) -> bool:
    """Store one message the naive way; False when it was already stored."""
    if Message.objects.filter(connector=connector, external_id=message.external_id).exists():
        return False
    author = message.author
    contact, _ = Contact.objects.get_or_create(
        channel=message.channel,
        external_id=author.external_id,
        defaults={
            "handle": author.handle,
            "display_name": author.display_name,
            "email": author.email,
            "first_seen_at": message.sent_at,
            "last_seen_at": message.sent_at,
        },
    )
    conversation, _ = Conversation.objects.get_or_create(
        connector=connector,
        external_id=message.thread_id or message.external_id,
        defaults={
            "channel": message.channel,
            "contact": contact,
            "started_at": message.sent_at,
            "last_message_at": message.sent_at,
        },
    )
    parent = None
    if message.parent_external_id:
        parent = Message.objects.filter(connector=connector, external_id=message.parent_external_id).first()
    try:
        Message(
            connector=connector,
            external_id=message.external_id,
            channel=message.channel,
            direction=Direction.INBOUND,
            conversation=conversation,
            author=contact,
            text=message.text,
            sent_at=message.sent_at,
            received_at=timezone.now(),
            parent=parent,
            parent_external_id=message.parent_external_id,
            raw=message.raw,
        ).save()
    except IntegrityError:
        return False
    Contact.objects.filter(pk=contact.pk).update(message_count=F("message_count") + 1, last_seen_at=message.sent_at)
    Conversation.objects.filter(pk=conversation.pk).update(
        message_count=F("message_count") + 1, last_message_at=message.sent_at
    )
    Connector.objects.filter(pk=connector.pk).update(messages_received=F("messages_received") + 1)
    return True


@csrf_exempt
def naive_webhook(request: HttpRequest, ref: str) -> HttpResponse:
    """The generic webhook with naive storage: same lookup, signature check and parsing."""
    connector = Connector.objects.get(slug=ref)
    backend = connector.get_backend()
    delivery = WebhookRequest(
        method=request.method or "",
        url=request.build_absolute_uri(),
        headers={name.lower(): value for name, value in request.headers.items()},
        query={},
        body=request.body,
    )
    backend.verify(delivery)
    stored = duplicates = 0
    for message in backend.parse_webhook(delivery):
        if store_naive(connector, message):
            stored += 1
        else:
            duplicates += 1
    return JsonResponse({"stored": stored, "duplicates": duplicates})


urlpatterns = [path("naive-hooks/<str:ref>/", naive_webhook), *product_urlpatterns]
