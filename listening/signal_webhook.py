"""Signals over the signed generic webhook: the same URL, secret and signature as messages
(listening.connectors.webhook), with a body of `{"signals": [...]}` (schema in README,
"Signals"). All or nothing: one refused signal refuses the delivery with a 400 naming it, and
nothing of it is stored; a redelivery of stored ids answers 200 and counts them as duplicates."""

from __future__ import annotations

from typing import Any

from listening.connectors.base import WebhookRequest
from listening.exceptions import PayloadInvalid
from listening.models import Connector
from listening.signal_actions import ingest_signals, parse_signal

MAX_SIGNALS_PER_DELIVERY = 1000


def is_signal_delivery(request: WebhookRequest) -> bool:
    """A body that is an object with a "signals" key. The cheap byte test keeps message
    deliveries from being parsed twice."""
    if b'"signals"' not in request.body:
        return False
    payload = request.json()
    return isinstance(payload, dict) and "signals" in payload


def source_for(connector: Connector) -> str:
    # The id, not the slug: a renamed connector must not make its old signal ids new again.
    return f"webhook:{connector.pk}"


def receive(connector: Connector, request: WebhookRequest) -> dict[str, Any]:
    payload = request.json()
    if set(payload) != {"signals"}:
        raise PayloadInvalid('a signal delivery is {"signals": [...]} and nothing else')
    items = payload["signals"]
    if not isinstance(items, list) or not items:
        raise PayloadInvalid("signals must be a non-empty list")
    if len(items) > MAX_SIGNALS_PER_DELIVERY:
        raise PayloadInvalid(f"at most {MAX_SIGNALS_PER_DELIVERY} signals per delivery")
    parsed = [parse_signal(item, f"signals[{i}]") for i, item in enumerate(items)]
    return ingest_signals(source_for(connector), parsed, strict=True).as_dict()
