"""Sources, for admins: every connector's health at a glance, and pausing or resuming one.

Pausing sets `Connector.enabled` off: polling skips it and its webhook answers 403, so the
provider keeps (and retries) what it could not deliver. Every change is audited (listening.audit).
"""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from cxm.client_address import client_ip
from listening import audit
from listening.models import AuditEvent, Connector, Message
from responses import access
from responses.exceptions import CaseNotFound
from responses.views.base import console_context, console_view, done, object_id, wants_json

RECENT_AUDIT = 20


def _rows(request: HttpRequest) -> list[dict]:
    hour_ago = timezone.now() - timedelta(hours=1)
    per_hour = dict(Message.objects.filter(received_at__gte=hour_ago).values("connector_id")
                    .annotate(n=Count("id")).values_list("connector_id", "n"))
    return [connector_row(request, connector, _connector_class(connector.kind), per_hour.get(connector.pk, 0))
            for connector in Connector.objects.order_by("name")]


def connector_row(request: HttpRequest, connector: Connector, backend_class, last_hour: int | None = None) -> dict:
    """What Sources shows of one connector: its health, traffic, headroom and how it receives."""
    if last_hour is None:
        last_hour = Message.objects.filter(connector=connector,
                                           received_at__gte=timezone.now() - timedelta(hours=1)).count()
    return {
        "id": connector.pk, "name": connector.name, "kind": connector.kind, "slug": connector.slug,
        "enabled": connector.enabled, "health": connector.health,
        "last_success_at": connector.last_success_at, "last_error": connector.last_error,
        "last_error_at": connector.last_error_at, "consecutive_failures": connector.consecutive_failures,
        "messages_last_hour": last_hour, "messages_received": connector.messages_received,
        "duplicates_received": connector.duplicates_received,
        "deliveries_rejected": connector.deliveries_rejected,
        "webhook_url": request.build_absolute_uri(reverse("webhook", kwargs={"ref": connector.slug}))
        if backend_class and backend_class.receives_webhooks else "",
        "polls": bool(backend_class and backend_class.wants_polling(connector.config or {})),
        "rate_limit": headroom(connector.rate_limit),
        "backfill_running": bool(connector.backfill and not connector.backfill.get("finished_at")),
    }


def headroom(rate_limit: dict) -> dict | None:
    """The provider's last reported rate-limit headroom, with its reset time parsed."""
    if not rate_limit or rate_limit.get("remaining") is None:
        return None
    resets = parse_datetime(rate_limit["resets_at"]) if rate_limit.get("resets_at") else None
    seen = parse_datetime(rate_limit["seen_at"]) if rate_limit.get("seen_at") else None
    limit = rate_limit.get("limit")
    share = round(100 * rate_limit["remaining"] / limit) if limit else None
    return {"remaining": rate_limit["remaining"], "limit": limit, "share": share, "resets_at": resets,
            "seen_at": seen, "low": share is not None and share < 10}


def recent_audit(connector: Connector | None = None) -> list[AuditEvent]:
    events = AuditEvent.objects.select_related("connector")
    if connector is not None:
        events = events.filter(connector=connector)
    return list(events[:RECENT_AUDIT])


def _connector_class(kind: str):
    """The registered class of a kind, or None for a kind this release no longer has."""
    from listening.connectors import UnknownConnectorKind, get_connector_class

    try:
        return get_connector_class(kind)
    except UnknownConnectorKind:
        return None


def json_row(row: dict) -> dict:
    return {k: _jsonable(v) for k, v in row.items()}


def _jsonable(value):
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


@console_view("GET")
def connector_list(request: HttpRequest) -> HttpResponse:
    access.require_admin(request.user)
    rows = _rows(request)
    if wants_json(request):
        return JsonResponse({"connectors": [json_row(r) for r in rows]})
    return render(request, "console/connectors.html",
                  {**console_context(request), "rows": rows, "audit": recent_audit()})


def connector_or_404(connector_id: str) -> Connector:
    connector = Connector.objects.filter(pk=object_id(connector_id, "connector")).first()
    if connector is None:
        raise CaseNotFound("no such connector")
    return connector


def _set_enabled(request: HttpRequest, connector_id: str, enabled: bool) -> HttpResponse:
    access.require_admin(request.user)
    connector = connector_or_404(connector_id)
    if connector.enabled != enabled:
        with audit.changing(connector.pk, request.user, "resumed" if enabled else "paused",
                            ip=client_ip(request)) as connector:
            connector.enabled = enabled
    return done(request, {"connector": {"id": connector.pk, "enabled": connector.enabled}},
                reverse("console:connectors"))


@console_view("POST")
def connector_pause(request: HttpRequest, connector_id: str) -> HttpResponse:
    return _set_enabled(request, connector_id, False)


@console_view("POST")
def connector_resume(request: HttpRequest, connector_id: str) -> HttpResponse:
    return _set_enabled(request, connector_id, True)
