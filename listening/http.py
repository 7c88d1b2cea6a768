"""Outbound HTTP to providers: always with a timeout, and with failures mapped to the
ProviderError family that drives health and backoff."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.utils import timezone

from listening.exceptions import (
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
)

USER_AGENT = "CXM/0.1 (+https://github.com/cxm)"


def retry_after_seconds(value: str | None) -> float | None:
    """Parse Retry-After as seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - timezone.now()).total_seconds())


def guard_url(url: str) -> None:
    """Refuse URLs that point into our own network, unless private URLs are allowed."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ProviderRejected(f"not an http(s) URL: {redact_url(url)[:200]}")
    guard_host(parts.hostname, parts.port or 443)


def guard_host(hostname: str, port: int) -> None:
    """Refuse a host that resolves to a private, loopback or otherwise non-public address
    (URLs, and mail servers for listening.connectors.email), unless private URLs are allowed."""
    if settings.ALLOW_PRIVATE_URLS:
        return
    try:
        infos = socket.getaddrinfo(hostname, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise ProviderUnavailable(f"cannot resolve {hostname}: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise ProviderRejected(f"{hostname} resolves to a non-public address")


ErrorMapper = Callable[[httpx.Response, str], ProviderError]


def request(method: str, url: str, *, error_mapper: ErrorMapper | None = None, **kwargs: Any) -> httpx.Response:
    """Make one provider call and return the response if it succeeded (2xx or 304).

    Raises ProviderUnavailable (network, timeout, 5xx), ProviderRateLimited (429),
    ProviderAuthError (401, 403) or ProviderRejected (other 4xx); a provider whose errors are
    told apart by their body passes `error_mapper(response, safe_url)` to classify them instead.
    Messages never include the URL's query string, which may carry tokens."""
    guard_url(url)
    kwargs.setdefault("timeout", settings.PROVIDER_HTTP_TIMEOUT)
    headers = {"User-Agent": USER_AGENT, **kwargs.pop("headers", {})}
    safe_url = redact_url(url)
    try:
        response = httpx.request(method, url, headers=headers, **kwargs)
    except httpx.TimeoutException:
        raise ProviderUnavailable(f"timed out calling {safe_url}") from None
    except httpx.HTTPError as exc:
        raise ProviderUnavailable(f"cannot reach {safe_url}: {type(exc).__name__}") from None
    if error_mapper is not None and response.status_code >= 400:
        raise error_mapper(response, safe_url)
    raise_for_status(response, safe_url)
    return response


def json_or_none(response: httpx.Response) -> Any:
    """The response's JSON, or None when the body is not JSON (a proxy's error page)."""
    try:
        return response.json()
    except ValueError:
        return None


def raise_for_status(response: httpx.Response, safe_url: str) -> None:
    if response.status_code >= 400:
        raise status_error(response, safe_url)


def status_error(response: httpx.Response, safe_url: str, reason: str = "") -> ProviderError:
    """The ProviderError for an error response, judged by its HTTP status alone; `reason` is the
    provider's own words when a connector could read them (default: the status and body)."""
    status = response.status_code
    if not reason:
        detail = response.text[:200].replace("\n", " ")
        reason = f"{safe_url} answered {status}: {detail}"
    retry_after = retry_after_seconds(response.headers.get("retry-after"))
    if status == 429:
        return ProviderRateLimited(reason, retry_after=retry_after, status=status)
    if status in (401, 403):
        return ProviderAuthError(reason, status=status)
    if status >= 500:
        return ProviderUnavailable(reason, retry_after=retry_after, status=status)
    return ProviderRejected(reason, status=status)


def redact_url(url: str) -> str:
    """Drop the query string and anything that looks like a token in the path."""
    parts = urlsplit(url)
    path = "/".join("***" if _looks_secret(segment) else segment for segment in parts.path.split("/"))
    return f"{parts.scheme}://{parts.netloc}{path}"


def _looks_secret(segment: str) -> bool:
    # Telegram puts the bot token in the path: /bot123456:AA.../sendMessage
    return segment.startswith("bot") and ":" in segment
