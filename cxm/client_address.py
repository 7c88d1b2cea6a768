"""The client's address, seen through the reverse proxies the deployment trusts.

Behind a proxy every request arrives from the proxy's address, so a lockout keyed on REMOTE_ADDR
locks everyone out together, and an audit log of REMOTE_ADDR names the proxy. The proxy appends
the address it saw to X-Forwarded-For; anything before it came from the client and may be forged.
So the header is read only when the request comes from a trusted proxy (CXM_TRUSTED_PROXIES, one
entry per hop, outermost first, each an address or a CIDR network), and then exactly as many hops
back as there are trusted proxies: python-ipware validates the chain against the list and picks
that position. A request from anywhere else is its REMOTE_ADDR, whatever headers it carries.

The login lockout (django-axes, AXES_CLIENT_IP_CALLABLE) and the audit log ("from where") both
read the address here, so they always agree.
"""

from __future__ import annotations

from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest
from python_ipware import IpWare


@lru_cache(maxsize=4)
def _ipware(proxies: tuple[str, ...]) -> IpWare:
    return IpWare(precedence=("HTTP_X_FORWARDED_FOR",), proxy_list=list(proxies))


def check_trusted_proxies(proxies: list[str]) -> None:
    """Raise ValueError for an entry python-ipware cannot match (settings fail at start-up)."""
    if proxies:
        _ipware(tuple(proxies))


def client_ip(request: HttpRequest) -> str | None:
    remote = request.META.get("REMOTE_ADDR") or None
    proxies = tuple(settings.CXM_TRUSTED_PROXIES)
    if not proxies or remote is None:
        return remote
    forwarded = str(request.META.get("HTTP_X_FORWARDED_FOR") or "").strip()
    if not forwarded:
        return remote
    # The peer is the last hop: the chain is valid only when it and the hops before it are the
    # trusted proxies, in order (non-strict: a client may have sent a forged prefix of its own).
    ip, trusted = _ipware(proxies).get_client_ip({"HTTP_X_FORWARDED_FOR": f"{forwarded}, {remote}"}, strict=False)
    return str(ip) if ip is not None and trusted else remote
