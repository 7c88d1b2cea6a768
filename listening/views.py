from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from listening.connectors.base import WebhookRequest
from listening.exceptions import PayloadTooLarge
from listening.webhooks import receive_webhook


@csrf_exempt
def webhook(request: HttpRequest, ref: str) -> HttpResponse:
    """POST /hooks/<id-or-slug>/ (and GET for providers' verification handshakes)."""
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if declared.isdigit() and int(declared) > settings.WEBHOOK_MAX_BYTES:
        raise PayloadTooLarge(f"body is over the {settings.WEBHOOK_MAX_BYTES}-byte limit")
    body = request.read(settings.WEBHOOK_MAX_BYTES + 1)
    outcome = receive_webhook(
        ref,
        WebhookRequest(
            method=request.method or "",
            url=request.build_absolute_uri(),
            headers={name.lower(): value for name, value in request.headers.items()},
            query={key: request.GET.get(key, "") for key in request.GET},
            body=body,
        ),
    )
    if isinstance(outcome.body, dict):
        return JsonResponse(outcome.body, status=outcome.status)
    return HttpResponse(outcome.body, status=outcome.status, content_type=outcome.content_type)


# Signed machine-to-machine POSTs: cxm.middleware.MachineRouteMiddleware calls this view before
# the session, auth, CSRF and messages middleware, which such a request does not use.
webhook.machine_to_machine = True  # type: ignore[attr-defined]
