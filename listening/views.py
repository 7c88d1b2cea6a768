from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from listening.connectors.base import WebhookRequest
from listening.exceptions import PayloadTooLarge
from listening.group_commit import group_commit
from listening.webhooks import WebhookOutcome, receive_webhook


@csrf_exempt
def webhook(request: HttpRequest, ref: str) -> HttpResponse:
    """POST /hooks/<id-or-slug>/ (and GET for providers' verification handshakes)."""
    return _response(receive_webhook(ref, _webhook_request(request)))


async def webhook_grouped(request: HttpRequest, ref: str) -> HttpResponse:
    """The same, under ASGI (cxm.middleware.WebhookASGIHandler): on the event loop, with the
    database work in this process's group-commit thread (listening.group_commit), answered once
    the delivery's transaction has committed."""
    webhook_request = _webhook_request(request)  # no database: the body is already read
    return _response(await group_commit().submit(ref, webhook_request))


def _webhook_request(request: HttpRequest) -> WebhookRequest:
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if declared.isdigit() and int(declared) > settings.WEBHOOK_MAX_BYTES:
        raise PayloadTooLarge(f"body is over the {settings.WEBHOOK_MAX_BYTES}-byte limit")
    body = request.read(settings.WEBHOOK_MAX_BYTES + 1)
    return WebhookRequest(
        method=request.method or "",
        url=request.build_absolute_uri(),
        headers={name.lower(): value for name, value in request.headers.items()},
        query={key: request.GET.get(key, "") for key in request.GET},
        body=body,
    )


def _response(outcome: WebhookOutcome) -> HttpResponse:
    if isinstance(outcome.body, dict):
        return JsonResponse(outcome.body, status=outcome.status)
    return HttpResponse(outcome.body, status=outcome.status, content_type=outcome.content_type)


# Signed machine-to-machine POSTs: cxm.middleware.MachineRouteMiddleware calls this view before
# the session, auth, CSRF and messages middleware, which such a request does not use.
webhook.machine_to_machine = True  # type: ignore[attr-defined]
# What WebhookASGIHandler awaits instead, on the event loop, when it serves this route.
webhook.grouped = webhook_grouped  # type: ignore[attr-defined]
