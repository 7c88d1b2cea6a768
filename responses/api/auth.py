"""How the API knows who is calling: `Authorization: Bearer cxm_...`, and what the token may do.

Every endpoint is token-only (no session, so no CSRF surface); the schema and its docs page are
public. A token acts as its user, so every view reads through responses.access as the console
does; the scopes only narrow that further.
"""

from __future__ import annotations

import logging
import time

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions, throttling
from rest_framework.request import Request

from responses.api import tokens
from responses.models import ApiToken

try:
    from redis.exceptions import RedisError
except ImportError:  # Redis is optional (the trial runs without it)
    RedisError = OSError

log = logging.getLogger(__name__)
READ_METHODS = {"GET", "HEAD", "OPTIONS"}
CACHE_ERRORS = (RedisError, ConnectionError, TimeoutError)


class TokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("the Authorization header is 'Bearer <token>'")
        try:
            secret = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("the token is not ASCII")
        token = tokens.find_live(secret)
        if token is None:
            # One answer for unknown, revoked and expired tokens: nothing to probe.
            raise exceptions.AuthenticationFailed("the token is unknown, revoked or expired")
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="cxm"'  # makes DRF answer 401 (not 403) without credentials


class TokenScheme(OpenApiAuthenticationExtension):
    target_class = TokenAuthentication
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "bearerFormat": "cxm_<43 characters>"}


class HasScope(permissions.BasePermission):
    """The view's `scope_area` read (safe methods) or write (the others); write implies read."""

    message = "this token's scopes do not allow it"

    def has_permission(self, request: Request, view) -> bool:
        token = request.auth
        if not isinstance(token, ApiToken):
            return False
        area = getattr(view, "scope_area", None)
        if area is None:
            return False  # a view that forgot to say is closed, not open
        needed = {f"{area}:write"} if request.method not in READ_METHODS else {f"{area}:read", f"{area}:write"}
        if not needed & set(token.scopes):
            self.message = f"this token lacks the {area}:{'read' if request.method in READ_METHODS else 'write'} scope"
            return False
        return True


class TokenRateThrottle(throttling.BaseThrottle):
    """Per token, at settings.CXM_API_RATE (e.g. "600/min", read on each request so tests and a
    settings change need no restart), counted in a fixed window in the "api" cache.

    One atomic increment per request (Redis INCR), so every server process shares one count: DRF's
    SimpleRateThrottle reads a list of timestamps and writes it back, and two processes doing that
    at once lose each other's requests. A fixed window may let up to twice the rate through across
    a window's edge; that is the usual price for one round trip and no lock."""

    def allow_request(self, request, view) -> bool:
        from django.conf import settings

        token = request.auth
        if not isinstance(token, ApiToken):
            return True  # unauthenticated requests fail before any work; not counted per token
        limit, seconds = throttling.SimpleRateThrottle.parse_rate(None, settings.CXM_API_RATE)
        # The random prefix too: a test database's ids restart, a shared Redis remembers.
        self.wait_s, allowed = hit(f"throttle:{token.pk}:{token.prefix}", limit, seconds)
        return allowed

    def wait(self) -> float | None:
        return self.wait_s


def hit(key: str, limit: int, seconds: int, now: float | None = None) -> tuple[float, bool]:
    """Count one request under `key` in the current window of `seconds`: (seconds until the window
    ends, whether this request is within `limit`). If the cache is down the API stays up, uncounted."""
    from django.core.cache import caches

    now = time.time() if now is None else now
    window = int(now // seconds)
    cache, key = caches["api"], f"cxm.api.{key}:{window}"
    try:
        cache.add(key, 0, timeout=seconds + 1)
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr (the window's last instant)
            cache.add(key, 1, timeout=seconds + 1)
            count = 1
    except CACHE_ERRORS as exc:
        log.warning("API rate limit not counted: the cache is unreachable (%s)", type(exc).__name__)
        return 0.0, True
    return (window + 1) * seconds - now, count <= limit
