"""The kinds of signal CXM understands, declared once: a name, a label people read, and the fields
its payload must or may carry. Adding a kind is one `register(...)` call here; entry points
(webhook, API, MQTT, CSV) and the rules page read this registry and never branch on a type.

A payload is a JSON object. Declared fields are type-checked; other keys are kept as they came
(a device's firmware version, a store's name) as long as the whole payload stays under
CXM_SIGNAL_PAYLOAD_MAX_BYTES once serialised.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from listening.exceptions import PayloadInvalid

TYPE_NAMES = {str: "text", int: "a whole number", float: "a number", bool: "true or false"}


@dataclass(frozen=True)
class PayloadField:
    name: str
    kind: type
    required: bool = False
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    max_chars: int = 500

    def check(self, value: Any, where: str) -> Any:
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, self.kind) or (self.kind is not bool and isinstance(value, bool)):
            raise PayloadInvalid(f"{where}.{self.name} must be {TYPE_NAMES[self.kind]}")
        if self.kind is str and len(value) > self.max_chars:
            raise PayloadInvalid(f"{where}.{self.name} is over {self.max_chars} characters")
        if self.choices and value not in self.choices:
            raise PayloadInvalid(f"{where}.{self.name} must be one of {', '.join(map(str, self.choices))}")
        if self.minimum is not None and value < self.minimum:
            raise PayloadInvalid(f"{where}.{self.name} must be at least {self.minimum:g}")
        if self.maximum is not None and value > self.maximum:
            raise PayloadInvalid(f"{where}.{self.name} must be at most {self.maximum:g}")
        return value


@dataclass(frozen=True)
class SignalType:
    name: str
    label: str
    description: str
    fields: tuple[PayloadField, ...] = field(default_factory=tuple)
    # Shown in the case's reason list: "{code}" placeholders read from the payload.
    summary: str = ""

    def clean(self, payload: Any, where: str = "payload") -> dict[str, Any]:
        """The payload, checked against the declared fields and the size bound, or PayloadInvalid."""
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            raise PayloadInvalid(f"{where} must be an object")
        for spec in self.fields:
            if spec.name in payload and payload[spec.name] is not None:
                payload = {**payload, spec.name: spec.check(payload[spec.name], where)}
            elif spec.required:
                raise PayloadInvalid(f"{where}.{spec.name} is required for a {self.name} signal")
        size = len(json.dumps(payload, ensure_ascii=False, default=str).encode())
        limit = settings.CXM_SIGNAL_PAYLOAD_MAX_BYTES
        if size > limit:
            raise PayloadInvalid(f"{where} is {size} bytes; at most {limit}")
        return payload

    def describe(self, payload: dict[str, Any]) -> str:
        """A short line for people: the label, then the summary filled from the payload."""
        if not self.summary:
            return self.label
        try:
            return f"{self.label}: {self.summary.format_map(_Blank(payload))}"[:200]
        except (ValueError, IndexError, AttributeError):
            return self.label


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return "?"


SIGNAL_TYPES: dict[str, SignalType] = {}


def register(signal_type: SignalType) -> SignalType:
    SIGNAL_TYPES[signal_type.name] = signal_type
    return signal_type


def get_type(name: Any) -> SignalType:
    signal_type = SIGNAL_TYPES.get(name) if isinstance(name, str) else None
    if signal_type is None:
        raise PayloadInvalid(f"unknown signal type {str(name)[:40]!r}; known: {', '.join(sorted(SIGNAL_TYPES))}")
    return signal_type


def choices() -> list[tuple[str, str]]:
    return [(t.name, t.label) for t in sorted(SIGNAL_TYPES.values(), key=lambda t: t.label)]


register(SignalType(
    "device_error", "Device error", "A device reported a fault.",
    (PayloadField("code", str, required=True, max_chars=80), PayloadField("message", str),
     PayloadField("severity", str, choices=("info", "warning", "error", "critical"))),
    summary="{code}",
))
register(SignalType(
    "payment_failed", "Payment failed", "A charge or renewal was declined.",
    (PayloadField("amount", float, minimum=0), PayloadField("currency", str, max_chars=3),
     PayloadField("reason", str)),
    summary="{reason}",
))
register(SignalType(
    "order_shipped", "Order shipped", "An order left the warehouse.",
    (PayloadField("order_id", str, required=True, max_chars=80), PayloadField("carrier", str, max_chars=80)),
    summary="order {order_id}",
))
register(SignalType(
    "order_delayed", "Order delayed", "An order will arrive later than promised.",
    (PayloadField("order_id", str, required=True, max_chars=80), PayloadField("days", int, minimum=0, maximum=365)),
    summary="order {order_id}",
))
register(SignalType(
    "subscription_cancelled", "Subscription cancelled", "The customer ended a subscription.",
    (PayloadField("plan", str, max_chars=80), PayloadField("reason", str)),
    summary="{plan}",
))
register(SignalType(
    "store_visit", "Store visit", "The customer was seen in a store.",
    (PayloadField("store_id", str, required=True, max_chars=80), PayloadField("store_name", str, max_chars=120)),
    summary="{store_id}",
))
register(SignalType(
    "nps_answer", "NPS answer", "The customer answered the would-you-recommend question.",
    (PayloadField("score", int, required=True, minimum=0, maximum=10), PayloadField("comment", str, max_chars=2000)),
    summary="score {score}",
))
register(SignalType(
    "device_heartbeat", "Device heartbeat", "A device said it is alive (rules can notice when it stops).",
    (PayloadField("uptime_s", int, minimum=0),),
))
