"""Outbound HTTP to providers: always with a timeout, and with failures mapped to the
ProviderError family that drives health and backoff."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpcore
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
    """Refuse URLs that point into our own network, unless private URLs are allowed. A check of
    the name only: the connection itself is checked again by GuardedTransport, which connects to
    the address it checked (a second lookup could answer differently: DNS rebinding)."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ProviderRejected(f"not an http(s) URL: {redact_url(url)[:200]}")
    guard_host(parts.hostname, parts.port or 443)


def guard_host(hostname: str, port: int) -> list[str]:
    """The addresses `hostname` resolves to, once each is known to be public (URLs, and mail
    servers for listening.connectors.email); refused when any is not, unless private URLs are
    allowed. Connect to what this returns, never to the name again."""
    addresses = resolve(hostname, port)
    if not settings.ALLOW_PRIVATE_URLS:
        for address in addresses:
            kind = refusal(ipaddress.ip_address(address))
            if kind:
                raise ProviderRejected(f"{hostname} resolves to a non-public address ({kind}: {address})")
    return addresses


def resolve(hostname: str, port: int) -> list[str]:
    """The host's addresses, in the resolver's order: the one DNS lookup of a connection."""
    try:
        infos = socket.getaddrinfo(hostname, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise ProviderUnavailable(f"cannot resolve {hostname}: {exc}") from None
    addresses = list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))
    if not addresses:
        raise ProviderUnavailable(f"cannot resolve {hostname}: no address")
    return addresses


# IPv6 forms that carry an IPv4 address a gateway will connect to: NAT64 (RFC 6052, RFC 8215),
# 6to4 (RFC 3056) and Teredo (RFC 4380). Python's is_global calls some of them public.
NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
SIX_TO_FOUR = ipaddress.ip_network("2002::/16")
TEREDO = ipaddress.ip_network("2001::/32")


def refusal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """The kind of address an outbound connection is refused to ("" for a public unicast one)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return "IPv4-mapped"
        if any(address in network for network in NAT64):
            return "NAT64"
        if address in TEREDO:
            return "Teredo"
        if address in SIX_TO_FOUR and address.sixtofour is not None and refusal(address.sixtofour):
            return f"6to4 of {refusal(address.sixtofour)}"
    kinds = (("loopback", address.is_loopback), ("unspecified", address.is_unspecified),
             ("link-local", address.is_link_local), ("multicast", address.is_multicast),
             ("reserved", address.is_reserved), ("private", address.is_private),
             ("non-public", not address.is_global))
    for kind, matches in kinds:
        if matches:
            return kind
    return ""


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's network backend, with the name resolved and checked once per connection and
    the socket opened to that checked address. TLS still names the host (httpcore passes the URL's
    host as SNI and checks the certificate against it) and the Host header is the URL's."""

    def __init__(self) -> None:
        self._sockets = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        failure: Exception | None = None
        for address in guard_host(host, port):
            try:
                return self._sockets.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                                 socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None  # guard_host returns at least one address
        raise failure

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Any = None) -> httpcore.NetworkStream:
        raise ProviderRejected("unix sockets are not an outbound destination")

    def sleep(self, seconds: float) -> None:
        self._sockets.sleep(seconds)


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport over GuardedBackend: every connection goes to an address that was
    checked, whatever the DNS answers later. No proxies: a proxy would connect by name again."""

    def __init__(self, *, verify: bool = True, retries: int = 0) -> None:
        # Not super().__init__: it builds its pool without a way to pass the network backend.
        # HTTPTransport's other methods use nothing but self._pool.
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify), retries=retries,
            network_backend=GuardedBackend(),
        )


def client(**kwargs: Any) -> httpx.Client:
    """An httpx client whose every connection passes the address guard. trust_env is off so that
    no HTTP(S)_PROXY variable routes around it (the CA bundle variables still apply)."""
    return httpx.Client(transport=GuardedTransport(), trust_env=False, **kwargs)


class ResponseTooLarge(ProviderRejected):
    """A provider's answer was over the size cap; it was refused while being read."""


def read_capped(response: httpx.Response, limit: int, safe_url: str = "") -> bytes:
    """A streamed response's body, decoded, refused (ResponseTooLarge) as soon as it passes
    `limit` bytes: the declared Content-Length first, then the bytes as they arrive, so at most
    `limit` plus one chunk is ever held, whatever the server declares or compresses."""
    where = safe_url or redact_url(str(response.request.url))
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit and not response.headers.get("content-encoding"):
        response.close()
        raise ResponseTooLarge(f"{where} is too large: it declares {declared} bytes, over the {limit}-byte limit")
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            response.close()
            raise ResponseTooLarge(f"{where} is too large: over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


ErrorMapper = Callable[[httpx.Response, str], ProviderError]


def request(method: str, url: str, *, error_mapper: ErrorMapper | None = None, max_bytes: int | None = None,
            **kwargs: Any) -> httpx.Response:
    """Make one provider call and return the response if it succeeded (2xx or 304).

    The connection goes only to a checked public address (GuardedTransport) and the body is read
    with a cap (`max_bytes`, default CXM_PROVIDER_MAX_RESPONSE_BYTES): ResponseTooLarge past it.
    Raises ProviderUnavailable (network, timeout, 5xx), ProviderRateLimited (429),
    ProviderAuthError (401, 403) or ProviderRejected (other 4xx); a provider whose errors are
    told apart by their body passes `error_mapper(response, safe_url)` to classify them instead.
    Messages never include the URL's query string, which may carry tokens."""
    guard_url(url)
    timeout = kwargs.pop("timeout", settings.PROVIDER_HTTP_TIMEOUT)
    headers = {"User-Agent": USER_AGENT, **kwargs.pop("headers", {})}
    limit = max_bytes if max_bytes is not None else settings.PROVIDER_MAX_RESPONSE_BYTES
    safe_url = redact_url(url)
    try:
        with client(timeout=timeout) as session, session.stream(method, url, headers=headers, **kwargs) as streamed:
            body = read_capped(streamed, limit, safe_url)
    except httpx.TimeoutException:
        raise ProviderUnavailable(f"timed out calling {safe_url}") from None
    except httpx.HTTPError as exc:
        raise ProviderUnavailable(f"cannot reach {safe_url}: {type(exc).__name__}") from None
    response = _read_response(streamed, body)
    if error_mapper is not None and response.status_code >= 400:
        raise error_mapper(response, safe_url)
    raise_for_status(response, safe_url)
    return response


def _read_response(streamed: httpx.Response, body: bytes) -> httpx.Response:
    """The streamed response as a read one holding `body` (already decoded, so the headers that
    described the encoding on the wire are dropped)."""
    wire = {"content-encoding", "content-length", "transfer-encoding"}
    headers = [(name, value) for name, value in streamed.headers.multi_items() if name.lower() not in wire]
    return httpx.Response(streamed.status_code, headers=headers, content=body, request=streamed.request,
                          extensions=streamed.extensions)


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
