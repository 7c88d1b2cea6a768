"""Outbound webhooks in the console, for admins: the subscriptions with their state (a switched
off one says why), making one (its signing secret is on the answer to that POST, never again),
changing its events, switching it on and off, its delivery log with the receiver's answers, and
sending a delivery again by hand. The same actions as the API (responses.outbound)."""

from __future__ import annotations

from django.db.models import Count, Max, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache

from responses import access, outbound
from responses.exceptions import InvalidRequest
from responses.models import WebhookDelivery, WebhookSubscription
from responses.views.base import body, console_context, console_view, done, flag, object_id, text

LOG_ROWS = 50


def _events(data: dict) -> list[str]:
    chosen = data.get("events") or []
    return [chosen] if isinstance(chosen, str) else list(chosen)


def _event_choices(selected=()) -> list[dict]:
    return [{"value": key, "label": label, "checked": key in selected} for key, label in outbound.EVENT_TYPES.items()]


def _state(row: WebhookSubscription) -> dict:
    """What a person reads about a subscription's state, and whether it is the worrying kind."""
    if row.enabled:
        if row.consecutive_failures:
            return {"label": "Failing", "tone": "degraded",
                    "note": f"{row.consecutive_failures} failed deliveries in a row; switched off after "
                            f"{_limit()}"}
        return {"label": "Active", "tone": "ok", "note": ""}
    if row.disabled_reason.startswith("switched off after"):
        return {"label": "Switched off after failures", "tone": "failing", "note": row.disabled_reason}
    return {"label": "Off", "tone": "off", "note": row.disabled_reason}


def _limit() -> int:
    from django.conf import settings

    return settings.CXM_WEBHOOK_DISABLE_AFTER


def _list_page(request: HttpRequest, *, made=None, secret: str = "", error: str = "", form: dict | None = None,
               status: int = 200) -> HttpResponse:
    rows = (WebhookSubscription.objects.annotate(
        delivered=Count("deliveries", filter=Q(deliveries__status=WebhookDelivery.Status.DELIVERED)),
        pending=Count("deliveries", filter=Q(deliveries__status=WebhookDelivery.Status.PENDING)),
        failed=Count("deliveries", filter=Q(deliveries__status=WebhookDelivery.Status.FAILED)),
        last_at=Max("deliveries__created_at")).order_by("name", "id"))
    labels = outbound.EVENT_TYPES
    subscriptions = [{"row": r, "state": _state(r), "events": [labels.get(e, e) for e in r.events]} for r in rows]
    form = form or {}
    return render(request, "console/webhooks.html", {
        **console_context(request), "subscriptions": subscriptions, "made": made, "secret": secret,
        "error": error, "form": form, "choices": _event_choices(form.get("events", ())),
    }, status=status)


@never_cache
@console_view("GET", "POST")
def webhook_list(request: HttpRequest) -> HttpResponse:
    access.require_admin(request.user)
    if request.method == "GET":
        return _list_page(request)
    data = body(request)
    form = {"name": text(data, "name", required=False, max_chars=120), "url": text(data, "url", required=False,
                                                                                    max_chars=500),
            "events": _events(data)}
    try:
        row, secret = outbound.subscribe(request.user, form["name"], form["url"], form["events"])
    except InvalidRequest as exc:
        return _list_page(request, error=exc.reason, form=form, status=400)
    # never_cache marks the answer no-store: it holds the secret, so no cache and no back button.
    return _list_page(request, made=row, secret=secret, status=201)


def _detail_page(request: HttpRequest, row: WebhookSubscription, *, error: str = "", status: int = 200):
    wanted = request.GET.get("status", "")
    log = row.deliveries.order_by("-id")
    if wanted in WebhookDelivery.Status.values:
        log = log.filter(status=wanted)
    else:
        wanted = ""
    deliveries = list(log[:LOG_ROWS])
    for delivery in deliveries:
        delivery.label = outbound.EVENT_TYPES.get(delivery.event_type, delivery.event_type)
    return render(request, "console/webhook_detail.html", {
        **console_context(request), "sub": row, "state": _state(row), "choices": _event_choices(row.events),
        "deliveries": deliveries, "statuses": WebhookDelivery.Status.choices, "wanted": wanted,
        "error": error, "log_rows": LOG_ROWS,
    }, status=status)


@console_view("GET", "POST")
def webhook_detail(request: HttpRequest, subscription_id: str) -> HttpResponse:
    """The subscription and its log; a POST changes its name, URL or event types."""
    access.require_admin(request.user)  # before anything about the request is read
    row = outbound.get_subscription(request.user, object_id(subscription_id, "subscription"))
    if request.method == "GET":
        return _detail_page(request, row)
    data = body(request)
    try:
        row = outbound.update_subscription(
            request.user, row.pk, name=text(data, "name", required=False, max_chars=120) or None,
            url=text(data, "url", required=False, max_chars=500) or None,
            # The page's form sends events_form, so unticking every box is "none", not "unchanged".
            event_types=_events(data) if "events" in data or "events_form" in data else None)
    except InvalidRequest as exc:
        return _detail_page(request, row, error=exc.reason, status=400)
    return done(request, {"subscription": {"id": row.pk, "events": row.events}},
                reverse("console:webhook", kwargs={"subscription_id": row.pk}))


@console_view("POST")
def webhook_enabled(request: HttpRequest, subscription_id: str) -> HttpResponse:
    """Switch on (failures forgiven, what is due is sent at once) or off."""
    access.require_admin(request.user)  # before anything about the request is read
    row = outbound.set_enabled(request.user, object_id(subscription_id, "subscription"), flag(body(request), "enabled"))
    return done(request, {"subscription": {"id": row.pk, "enabled": row.enabled}},
                reverse("console:webhook", kwargs={"subscription_id": row.pk}))


@console_view("POST")
def webhook_delete(request: HttpRequest, subscription_id: str) -> HttpResponse:
    access.require_admin(request.user)  # before anything about the request is read
    outbound.unsubscribe(request.user, object_id(subscription_id, "subscription"))
    return done(request, {"deleted": True}, reverse("console:webhooks"))


@console_view("POST")
def webhook_replay(request: HttpRequest, delivery_id: str) -> HttpResponse:
    """Send one delivery again now, with its event id (a receiver that saw it can tell)."""
    access.require_admin(request.user)  # before anything about the request is read
    delivery = outbound.replay(request.user, object_id(delivery_id, "delivery"))
    return done(request, {"delivery": {"id": delivery.pk, "status": delivery.status}},
                reverse("console:webhook", kwargs={"subscription_id": delivery.subscription_id}))
