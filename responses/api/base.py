"""What every API view shares: keyset pagination, a checked integer from the query string, and
the Idempotency-Key rule for writes that create something."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils.dateparse import parse_datetime
from rest_framework import status as http
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from responses.exceptions import CaseNotFound, InvalidRequest
from responses.models import ApiIdempotencyKey

KEY_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_:.")


class IdCursor(CursorPagination):
    """Keyset pagination on the id, newest first: a page costs the same at row 10 or 10 million,
    and rows arriving meanwhile never shift a page (no OFFSET)."""

    ordering = "-id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


def schema_only(view) -> bool:
    """drf-spectacular builds the schema with a fake view and no user: it gets an empty queryset
    (to learn the model, hence the id's type) instead of an access check that has no one to check."""
    return getattr(view, "swagger_fake_view", False)


def by_id(queryset, pk, what: str):
    """The row with this id in the queryset (what the user may see), or a 404 naming what."""
    try:
        found = queryset.filter(pk=int(pk)).first()
    except (TypeError, ValueError, OverflowError):
        found = None
    if found is None:
        raise CaseNotFound(f"no such {what}")
    return found


def query_int(params, name: str) -> int | None:
    raw = params.get(name)
    if raw in (None, ""):
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
        raise InvalidRequest(f"{name} must be a positive whole number")
    return int(raw)


def query_time(params, name: str) -> datetime | None:
    raw = params.get(name)
    if raw in (None, ""):
        return None
    try:
        value = parse_datetime(raw)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None or not 2000 <= value.year <= 2199:
        raise InvalidRequest(f"{name} must be an ISO 8601 time with its offset, e.g. 2026-01-31T08:00:00Z")
    return value


def idempotency_key(request) -> str:
    return idempotency_key_value(request.headers.get("Idempotency-Key", ""))


def idempotency_key_value(key: str) -> str:
    key = key.strip()
    if key and (len(key) > 64 or not set(key) <= KEY_CHARS):
        raise InvalidRequest("Idempotency-Key: up to 64 letters, digits, '-', '_', ':' or '.'")
    return key


def fingerprint(request, data) -> str:
    body = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(f"{request.method} {request.path}\n{body}".encode()).hexdigest()


def replayed(request, key: str, print_: str) -> Response | None:
    """The stored answer to an earlier request with this key; 422 when that request differed."""
    if not key:
        return None
    row = ApiIdempotencyKey.objects.filter(user=request.user, key=key).first()
    if row is None:
        return None
    if row.fingerprint != print_:
        raise Unprocessable("this Idempotency-Key was used with a different request; use a new key")
    return Response(row.response, status=row.status_code, headers={"Idempotent-Replayed": "true"})


def remember(request, key: str, print_: str, response: Response) -> Response:
    """Keep the answer under the key. A concurrent twin that stored first wins, and its answer is
    returned (the action itself is idempotent under the same key, so nothing was done twice)."""
    if not key or response.status_code >= 500:
        return response
    try:
        with transaction.atomic():
            ApiIdempotencyKey.objects.create(user=request.user, key=key, fingerprint=print_,
                                             status_code=response.status_code, response=response.data)
    except IntegrityError:
        return replayed(request, key, print_) or response
    return response


class Unprocessable(InvalidRequest):
    status_code = http.HTTP_422_UNPROCESSABLE_ENTITY
    code = "idempotency_key_reused"
