"""Every API error is `application/problem+json` (RFC 9457): type, title, status, detail, and the
project's short `reason` code. Domain errors (CXMError subclasses) keep the status their app gave
them, so the API and the console answer the same thing for the same mistake."""

from __future__ import annotations

from http import HTTPStatus

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions
from rest_framework.decorators import (
    api_view,
    authentication_classes,
    permission_classes,
    schema,
    throttle_classes,
)
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import exception_handler

from cxm.exceptions import CXMError

PROBLEM = "application/problem+json"
TYPE_BASE = "https://cxm.invalid/problems/"  # stable identifiers, not links


def problem(status: int, reason: str, detail, headers: dict | None = None) -> Response:
    title = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    body = {"type": TYPE_BASE + reason, "title": title, "status": status, "reason": reason}
    if isinstance(detail, dict | list):
        body["detail"] = "the request has invalid fields"
        body["errors"] = detail
    else:
        body["detail"] = str(detail)
    response = Response(body, status=status, headers=headers, content_type=PROBLEM)
    return response


def problem_handler(exc: Exception, context) -> Response | None:
    if isinstance(exc, CXMError):
        headers = {}
        retry_after = getattr(exc, "retry_after", None)
        if retry_after:
            headers["Retry-After"] = str(int(retry_after))
        return problem(exc.status_code, exc.code, exc.reason, headers)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("no such object")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None:
        return None  # a bug: Django's 500 handling (which hides the Authorization header)
    detail = exc.detail if isinstance(exc, exceptions.APIException) else response.data
    if isinstance(detail, dict) and set(detail) == {"detail"}:
        detail = detail["detail"]
    reason = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
    if not isinstance(reason, str):
        reason = "invalid"
    headers = {k: v for k, v in response.items() if k in ("Retry-After", "WWW-Authenticate", "Allow")}
    return problem(response.status_code, reason, detail, headers)


@api_view(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
@authentication_classes([])
@permission_classes([AllowAny])
@throttle_classes([])
@schema(None)
def no_such_route(request, *args, **kwargs) -> Response:
    return problem(404, "not_found", "no such route in /api/v1/")
