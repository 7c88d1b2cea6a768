"""The webhook action: find the connector, answer handshakes, verify, parse and ingest, and
announce the delivery reports on sent replies that some deliveries carry."""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DataError
from django.db.models import F
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from listening import signal_webhook
from listening.actions import IngestResult, ingest_messages, validate_messages
from listening.connectors import UnknownConnectorKind
from listening.connectors.base import InboundMessage, WebhookRequest
from listening.crypto import CredentialsUnreadable
from listening.exceptions import (
    ConnectorDisabled,
    ConnectorNotFound,
    DeliveryRejected,
    MethodNotAllowed,
    PayloadInvalid,
    PayloadTooLarge,
    SecretNotConfigured,
)
from listening.models import Connector
from listening.signals import delivery_status

logger = logging.getLogger(__name__)


@dataclass
class WebhookOutcome:
    status: int
    content_type: str
    body: str | dict
    result: IngestResult | None = None


ID_MAX_DIGITS = 18  # ids are bigints; a longer number is no id (and would overflow the query)


# Connectors by the id or slug deliveries name, kept per process for CONNECTOR_TTL_S seconds: one
# query less per delivery. Saving or deleting a connector in this process forgets them all; in
# another process (a second web host) a change (paused, new secret, deleted) takes effect within
# CONNECTOR_TTL_S, so for up to that long a delivery may still be verified with the previous
# secret, or stored for a connector just paused. Refused refs are not kept.
CONNECTOR_TTL_S = 2.0
CONNECTOR_CACHE_MAX = 1000
_connectors: dict[str, tuple[float, Connector]] = {}
_connectors_lock = threading.Lock()
_connectors_generation = [0]


def find_connector(ref: str) -> Connector:
    now = time.monotonic()
    kept = _connectors.get(ref)
    if kept is not None and now < kept[0]:
        connector = copy.copy(kept[1])  # callers may set attributes; the kept row stays as read
    else:
        generation = _connectors_generation[0]
        connector = _read_connector(ref)
        with _connectors_lock:
            if _connectors_generation[0] == generation:  # not saved or deleted while we read
                if len(_connectors) >= CONNECTOR_CACHE_MAX:
                    _connectors.clear()
                _connectors[ref] = (now + CONNECTOR_TTL_S, copy.copy(connector))
    if not connector.enabled:
        raise ConnectorDisabled("this connector is paused")
    return connector


def _read_connector(ref: str) -> Connector:
    # isdigit() is true for "²" and "٣" too, which int() refuses or reads as another number.
    is_id = ref.isascii() and ref.isdigit() and len(ref) <= ID_MAX_DIGITS
    query = Connector.objects.filter(pk=int(ref)) if is_id else Connector.objects.filter(slug=ref)
    connector = query.first()
    if connector is None:
        raise ConnectorNotFound("no connector with this id or slug")
    return connector


@receiver(post_save, sender=Connector, dispatch_uid="listening.webhooks.connector_saved")
@receiver(post_delete, sender=Connector, dispatch_uid="listening.webhooks.connector_deleted")
def _connectors_changed(sender, **kwargs) -> None:
    with _connectors_lock:
        _connectors.clear()
        _connectors_generation[0] += 1


def receive_webhook(ref: str, request: WebhookRequest) -> WebhookOutcome:
    """Handle one delivery to /hooks/<ref>/. Raises a DeliveryRejected subclass (4xx) for
    anything unknown, unsigned, oversized or malformed, having stored nothing."""
    prepared = prepare_webhook(ref, request)
    if isinstance(prepared, WebhookOutcome):
        return prepared
    return finish_webhook(prepared)


@dataclass
class PreparedDelivery:
    """A verified, parsed delivery whose messages are not stored yet (listening.group_commit
    stores several of them in one transaction; finish_webhook stores one)."""

    connector: Connector
    backend: Any
    statuses: list
    messages: list[InboundMessage]


def prepare_webhook(ref: str, request: WebhookRequest) -> PreparedDelivery | WebhookOutcome:
    """Everything of receive_webhook before storing: find the connector, answer a handshake or a
    signal delivery (a WebhookOutcome), else verify and parse. Raises DeliveryRejected (4xx)."""
    if len(request.body) > settings.WEBHOOK_MAX_BYTES:
        raise PayloadTooLarge(f"body is over the {settings.WEBHOOK_MAX_BYTES}-byte limit")
    connector = find_connector(ref)
    try:
        backend = connector.get_backend()
    except UnknownConnectorKind:
        raise ConnectorNotFound("this connector's kind is not installed") from None
    if not backend.receives_webhooks:
        raise MethodNotAllowed(f"{connector.kind} connectors do not receive webhooks")
    with _rejections(connector):
        handshake = backend.handshake(request)
        if handshake is not None:
            status, content_type, body = handshake
            return WebhookOutcome(status, content_type, body)
        if request.method != "POST":
            raise MethodNotAllowed("webhooks are delivered with POST")
        backend.verify(request)
        if getattr(backend, "receives_signals", False) and signal_webhook.is_signal_delivery(request):
            return WebhookOutcome(200, "application/json", signal_webhook.receive(connector, request))
        statuses = backend.parse_statuses(request)
        messages = list(backend.parse_webhook(request))
    return PreparedDelivery(connector, backend, statuses, messages)


def finish_webhook(prepared: PreparedDelivery) -> WebhookOutcome:
    """Store one prepared delivery in its own transaction and answer it."""
    with _rejections(prepared.connector):
        result = ingest_messages(prepared.connector, prepared.messages)
    return answer_webhook(prepared, result)


def check_delivery(prepared: PreparedDelivery) -> None:
    """What finish_webhook would refuse before writing (an id too long, a NUL, a payload shape
    the parser let through), raised as the same 4xx: a group commit checks each delivery with
    this first, so one delivery's bad item is its own 4xx, not its neighbours' rollback."""
    with _rejections(prepared.connector):
        validate_messages(prepared.messages)


def answer_webhook(prepared: PreparedDelivery, result: IngestResult) -> WebhookOutcome:
    """The answer to a delivery whose messages are committed."""
    statuses, connector = prepared.statuses, prepared.connector
    if statuses:  # outside the try: a receiver's bug is ours, not a malformed delivery
        delivery_status.send(sender=Connector, connector_id=connector.pk, statuses=statuses)
    answer = prepared.backend.acknowledge(result.created, result.duplicates)
    if answer is not None:
        return WebhookOutcome(*answer, result=result)
    return WebhookOutcome(
        200, "application/json", {"stored": result.created, "duplicates": result.duplicates}, result
    )


@contextmanager
def _rejections(connector: Connector) -> Iterator[None]:
    """Map what a malformed or unsigned delivery raises to a 4xx, counted on the connector."""
    try:
        yield
    except CredentialsUnreadable:
        _count_rejection(connector)
        raise SecretNotConfigured("this connector's secret cannot be read; re-enter it") from None
    except DeliveryRejected:
        _count_rejection(connector)
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError, OverflowError,
            DataError) as exc:
        # A payload shape the parser did not foresee: reject it with a reason rather than a 500.
        logger.warning("connector %s: unparseable delivery: %r", connector.pk, exc)
        _count_rejection(connector)
        raise PayloadInvalid(f"payload has an unexpected shape ({type(exc).__name__})") from None


def _count_rejection(connector: Connector) -> None:
    Connector.objects.filter(pk=connector.pk).update(deliveries_rejected=F("deliveries_rejected") + 1)
