"""Outbound webhooks: admins subscribe a URL to event types; each event becomes one delivery row
per subscription, sent by a Celery task, signed, retried with backoff and jitter for a day, and
logged. A subscription that keeps failing is switched off and the admins' consoles are told.

Signature (Stripe's scheme): `X-CXM-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>.<body>" with the subscription's secret>`; `X-CXM-Delivery` is the event's unique id (a
receiver drops a repeat by it: delivery is at least once), `X-CXM-Event` its type.

Events come from what already happens on commit: messages stored (listening's messages_ingested)
and classified (learning's messages_classified), console events written with cases and replies,
alerts recorded, connectors failing. Fanning out and sending run in workers, never in the request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import secrets
import threading
import time
import uuid
from datetime import timedelta

import httpx
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from listening import crypto, http
from listening.exceptions import ProviderError
from responses import access, event_types, events, signals
from responses.exceptions import CaseNotFound, InvalidRequest
from responses.models import WebhookDelivery, WebhookSubscription

log = logging.getLogger(__name__)

EVENT_TYPES = {
    "message.received": "A message arrived",
    "message.classified": "A message was classified",
    "case.created": "A case was opened",
    "case.updated": "A case changed (status, assignee, tags, priority)",
    "case.resolved": "A case was resolved or closed",
    "reply.delivered": "A reply reached the customer's channel",
    "reply.failed": "A reply could not be delivered",
    "alert.raised": "A spike alert was raised",
    "connector.failing": "A source stopped working",
}
RETRY_FOR = timedelta(days=1)
MAX_BACKOFF_SECONDS = 3600.0
_local = threading.local()


# --- Subscriptions ---------------------------------------------------------------------------------
def subscribe(by, name: str, url: str, event_types) -> tuple[WebhookSubscription, str]:
    """A new subscription and its secret (returned once, stored encrypted)."""
    access.require_admin(by)
    name = (name or "").strip()
    if not name or len(name) > 120:
        raise InvalidRequest("name the subscription (up to 120 characters)")
    check_url(url)
    chosen = sorted(set(event_types or []))
    unknown = [e for e in chosen if e not in EVENT_TYPES]
    if not chosen or unknown:
        raise InvalidRequest(f"choose event types among {', '.join(EVENT_TYPES)}")
    secret = "whsec_" + secrets.token_urlsafe(32)
    row = WebhookSubscription.objects.create(name=name, url=url, events=chosen, created_by=by,
                                             secret_encrypted=crypto.encrypt_text(secret))
    return row, secret


def check_url(url: str) -> None:
    """An http(s) URL to a public address (private, loopback and link-local ones are refused in
    production by listening.http's guard)."""
    if not isinstance(url, str) or len(url) > 500:
        raise InvalidRequest("the URL is up to 500 characters")
    try:
        http.guard_url(url)
    except ProviderError as exc:
        raise InvalidRequest(f"this URL cannot receive webhooks: {exc.reason}")


def get_subscription(by, subscription_id) -> WebhookSubscription:
    access.require_admin(by)
    try:
        found = WebhookSubscription.objects.filter(pk=int(subscription_id)).first()
    except (TypeError, ValueError, OverflowError):
        found = None
    if found is None:
        raise CaseNotFound("no such subscription")
    return found


def update_subscription(by, subscription_id, *, name: str | None = None, url: str | None = None,
                        event_types=None) -> WebhookSubscription:
    """Rename, point elsewhere (checked like a new URL) or change the event types; the secret
    stays. Deliveries already made keep their event."""
    row = get_subscription(by, subscription_id)
    if name is not None:
        name = name.strip()
        if not name or len(name) > 120:
            raise InvalidRequest("name the subscription (up to 120 characters)")
        row.name = name
    if url is not None and url != row.url:
        check_url(url)
        row.url = url
    if event_types is not None:
        chosen = sorted(set(event_types))
        if not chosen or any(e not in EVENT_TYPES for e in chosen):
            raise InvalidRequest(f"choose event types among {', '.join(EVENT_TYPES)}")
        row.events = chosen
    row.save(update_fields=["name", "url", "events"])
    return row


def unsubscribe(by, subscription_id) -> None:
    """Delete the subscription and its delivery log; nothing more is sent to it."""
    get_subscription(by, subscription_id).delete()


def set_enabled(by, subscription_id, enabled: bool) -> WebhookSubscription:
    row = get_subscription(by, subscription_id)
    WebhookSubscription.objects.filter(pk=row.pk).update(
        enabled=enabled, consecutive_failures=0 if enabled else row.consecutive_failures,
        disabled_reason="" if enabled else "switched off by an admin")
    row.refresh_from_db()
    if enabled:
        # The admin says the receiver works again: what was waiting out its backoff goes now.
        WebhookDelivery.objects.filter(subscription_id=row.pk, status=WebhookDelivery.Status.PENDING).update(
            next_attempt_at=timezone.now())
        send_due()
    return row


def replay(by, delivery_id) -> WebhookDelivery:
    """Send a delivery again by hand, as a new attempt with the same event id."""
    access.require_admin(by)
    try:
        delivery = WebhookDelivery.objects.filter(pk=int(delivery_id)).first()
    except (TypeError, ValueError, OverflowError):
        delivery = None
    if delivery is None:
        raise CaseNotFound("no such delivery")
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=WebhookDelivery.Status.PENDING, next_attempt_at=timezone.now(), created_at=timezone.now(),
        sending_until=None)
    _enqueue([delivery.pk])
    delivery.refresh_from_db()
    return delivery


# --- Fan-out ---------------------------------------------------------------------------------------
def fan_out(event_type: str, payload: dict, order_key: int = 0) -> list[int]:
    """One pending delivery per enabled subscription to this event type; they are sent on commit."""
    subscriptions = [s for s in WebhookSubscription.objects.filter(enabled=True).only("id", "events")
                     if event_type in s.events]
    if not subscriptions:
        return []
    body = {"type": event_type, "created_at": timezone.now().isoformat(), "data": payload}
    rows = WebhookDelivery.objects.bulk_create([
        WebhookDelivery(subscription_id=s.pk, event_id=uuid.uuid4(), event_type=event_type, order_key=order_key,
                        payload=body) for s in subscriptions])
    ids = [r.pk for r in rows if r.pk] or list(
        WebhookDelivery.objects.filter(event_id__in=[r.event_id for r in rows]).values_list("id", flat=True))
    transaction.on_commit(lambda: _enqueue(ids))
    return ids


def _enqueue(ids: list[int]) -> None:
    """Ask for the sends (responses.outbound_tasks enqueues them)."""
    signals.webhook_deliveries_due.send(sender=WebhookDelivery, delivery_ids=list(ids))


# --- Sending ---------------------------------------------------------------------------------------
def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, tolerance: int = 300, now: float | None = None) -> bool:
    """What a receiver does (also in the README): check the HMAC and that the time is recent."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs((now or time.time()) - timestamp) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), f"t={timestamp},v1={parts.get('v1', '')}")


def backoff(attempt: int) -> float:
    """Exponential with full jitter: about 10 s, 20 s, 40 s... capped at an hour."""
    return random.uniform(0.5, 1.0) * min(MAX_BACKOFF_SECONDS, 10.0 * 2 ** max(0, attempt - 1))


def deliver(delivery_id: int) -> float | None:
    """Send one delivery now. Returns seconds until it should be tried again, or None when done
    (delivered, failed for good, waiting behind an earlier event of its conversation, or taken)."""
    claimed = _claim(delivery_id)
    if claimed is None:
        return None
    delivery, secret, url = claimed
    body = json.dumps({"id": str(delivery.event_id), **delivery.payload}, separators=(",", ":")).encode()
    timestamp = int(time.time())
    headers = {"Content-Type": "application/json", "User-Agent": "CXM-Webhooks/1",
               "X-CXM-Delivery": str(delivery.event_id), "X-CXM-Event": delivery.event_type,
               "X-CXM-Signature": signature(secret, timestamp, body)}
    status, error = None, ""
    try:
        response = _client().post(url, content=body, headers=headers, timeout=settings.CXM_WEBHOOK_TIMEOUT)
        status = response.status_code
        if not 200 <= status < 300:
            error = f"the receiver answered {status}"
    except ProviderError as exc:
        error = exc.reason[:300]
    except httpx.TimeoutException:
        error = f"no answer within {settings.CXM_WEBHOOK_TIMEOUT:g} s"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {http.redact_url(str(exc))[:250]}"
    return _record(delivery, status, error)


def _client() -> httpx.Client:
    """One guarded client per sending thread: connections to a receiver are reused between
    deliveries (each new connection still passes the address guard). No redirects: a 3xx could
    point anywhere, a private address included, and counts as a failure."""
    found = getattr(_local, "client", None)
    if found is None:
        found = _local.client = http.client(follow_redirects=False)
    return found


def _claim(delivery_id: int):
    """Take a delivery for one attempt: read it with its subscription, then one conditional UPDATE
    that only succeeds if nobody took it meanwhile (same status, attempts and sending_until as
    read: optimistic, so no transaction and no row lock is held while deciding). Two round trips
    instead of a locked read-modify-write transaction's four (bench/api.py: fan-out per second)."""
    now = timezone.now()
    delivery = (WebhookDelivery.objects.select_related("subscription")
                .filter(pk=delivery_id, status=WebhookDelivery.Status.PENDING).first())
    if delivery is None or not delivery.subscription.enabled:
        return None
    if (delivery.sending_until and delivery.sending_until > now) or delivery.next_attempt_at > now:
        return None
    if delivery.order_key and WebhookDelivery.objects.filter(
            subscription_id=delivery.subscription_id, order_key=delivery.order_key,
            status=WebhookDelivery.Status.PENDING, id__lt=delivery.pk).exists():
        return None  # an earlier event of this conversation goes first; the sweep comes back
    until = now + timedelta(seconds=settings.CXM_WEBHOOK_TIMEOUT * 3 + 30)
    taken = WebhookDelivery.objects.filter(
        pk=delivery.pk, status=WebhookDelivery.Status.PENDING, attempts=delivery.attempts,
        sending_until=delivery.sending_until).update(sending_until=until, attempts=F("attempts") + 1)
    if not taken:
        return None  # another sender claimed it first
    delivery.sending_until, delivery.attempts = until, delivery.attempts + 1
    subscription = delivery.subscription
    return delivery, _secret(subscription), subscription.url


def _secret(subscription: WebhookSubscription) -> str:
    """The decrypted secret, kept per sending thread while the stored ciphertext is unchanged."""
    cache = getattr(_local, "secrets", None)
    if cache is None:
        cache = _local.secrets = {}
    key = (subscription.pk, subscription.secret_encrypted)
    if key not in cache:
        if len(cache) > 1000:
            cache.clear()
        cache[key] = crypto.decrypt_text(subscription.secret_encrypted)
    return cache[key]


def _record(delivery: WebhookDelivery, status: int | None, error: str) -> float | None:
    now = timezone.now()
    changes = {"sending_until": None, "response_status": status, "last_error": error}
    retry_in = None
    if not error:
        changes.update(status=WebhookDelivery.Status.DELIVERED, delivered_at=now)
    elif now - delivery.created_at >= RETRY_FOR:
        changes.update(status=WebhookDelivery.Status.FAILED)
    else:
        retry_in = backoff(delivery.attempts)
        changes.update(next_attempt_at=now + timedelta(seconds=retry_in))
    subscriptions = WebhookSubscription.objects.filter(pk=delivery.subscription_id)
    if not error and not delivery.subscription.consecutive_failures:
        # The common case, one statement: nothing to forgive (a failure counted since is forgiven
        # by the next success that reads it).
        WebhookDelivery.objects.filter(pk=delivery.pk).update(**changes)
    else:
        with transaction.atomic():
            WebhookDelivery.objects.filter(pk=delivery.pk).update(**changes)
            # Counters without a row lock: senders of one subscription must not queue behind each other.
            if not error:
                subscriptions.filter(consecutive_failures__gt=0).update(consecutive_failures=0)
            else:
                subscriptions.update(consecutive_failures=F("consecutive_failures") + 1)
                limit = settings.CXM_WEBHOOK_DISABLE_AFTER
                # The update that switches it off happens once, however many senders fail together.
                if subscriptions.filter(enabled=True, consecutive_failures__gte=limit).update(enabled=False):
                    _disable(subscriptions.get(), error)
                    retry_in = None
    if not error:
        # The next event of the same conversation was waiting for this one.
        follower = (WebhookDelivery.objects.filter(subscription_id=delivery.subscription_id,
                                                   order_key=delivery.order_key, status=WebhookDelivery.Status.PENDING,
                                                   id__gt=delivery.pk).order_by("id").values_list("id", flat=True)
                    .first() if delivery.order_key else None)
        if follower:
            transaction.on_commit(lambda: _enqueue([follower]))
    return retry_in


def _disable(subscription: WebhookSubscription, error: str) -> None:
    reason = f"switched off after {subscription.consecutive_failures} failed deliveries in a row; last: {error}"
    subscription.disabled_reason = reason[:300]
    subscription.save(update_fields=["disabled_reason"])
    from django.contrib.auth import get_user_model

    admins = get_user_model().objects.filter(access.admin_q(), is_active=True).values_list("pk", flat=True)
    for user_id in admins.distinct():
        events.emit(event_types.WEBHOOK_DISABLED, {"subscription": {"id": subscription.pk, "name": subscription.name},
                                         "reason": reason[:300]}, user_id=user_id)


def send_due(limit: int = 500) -> int:
    """Enqueue the pending deliveries whose time has come (the beat sweep; also after a restart)."""
    now = timezone.now()
    ids = list(WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now,
                                              subscription__enabled=True)
               .exclude(sending_until__gt=now).order_by("id").values_list("id", flat=True)[:limit])
    _enqueue(ids)
    return len(ids)
