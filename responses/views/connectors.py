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
    rows = []
    for connector in Connector.objects.order_by("name"):
        backend_class = _connector_class(connector.kind)
        rows.append({
            "id": connector.pk, "name": connector.name, "kind": connector.kind, "slug": connector.slug,
            "enabled": connector.enabled, "health": connector.health,
            "last_success_at": connector.last_success_at, "last_error": connector.last_error,
            "last_error_at": connector.last_error_at, "consecutive_failures": connector.consecutive_failures,
            "messages_last_hour": per_hour.get(connector.pk, 0), "messages_received": connector.messages_received,
            "duplicates_received": connector.duplicates_received,
            "deliveries_rejected": connector.deliveries_rejected,
            "webhook_url": request.build_absolute_uri(reverse("webhook", kwargs={"ref": connector.slug}))
            if backend_class and backend_class.receives_webhooks else "",
            "polls": bool(backend_class and backend_class.wants_polling(connector.config or {})),
        })
    return rows


def _connector_class(kind: str):
    """The registered class of a kind, or None for a kind this release no longer has."""
    from listening.connectors import UnknownConnectorKind, get_connector_class

    try:
        return get_connector_class(kind)
    except UnknownConnectorKind:
        return None


def _json_row(row: dict) -> dict:
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in row.items()}


@console_view("GET")
def connector_list(request: HttpRequest) -> HttpResponse:
    access.require_admin(request.user)
    rows = _rows(request)
    if wants_json(request):
        return JsonResponse({"connectors": [_json_row(r) for r in rows]})
    recent = AuditEvent.objects.select_related("connector")[:RECENT_AUDIT]
    return render(request, "console/connectors.html", {**console_context(request), "rows": rows, "audit": recent})


def _set_enabled(request: HttpRequest, connector_id: str, enabled: bool) -> HttpResponse:
    access.require_admin(request.user)
    connector = Connector.objects.filter(pk=object_id(connector_id, "connector")).first()
    if connector is None:
        raise CaseNotFound("no such connector")
    if connector.enabled != enabled:
        before = audit.snapshot(connector)
        connector.enabled = enabled
        connector.save(update_fields=["enabled", "updated_at"])
        audit.record(request.user, "resumed" if enabled else "paused", connector, before, audit.snapshot(connector),
                     ip=request.META.get("REMOTE_ADDR"))
    return done(request, {"connector": {"id": connector.pk, "enabled": connector.enabled}},
                reverse("console:connectors"))


@console_view("POST")
def connector_pause(request: HttpRequest, connector_id: str) -> HttpResponse:
    return _set_enabled(request, connector_id, False)


@console_view("POST")
def connector_resume(request: HttpRequest, connector_id: str) -> HttpResponse:
    return _set_enabled(request, connector_id, True)
