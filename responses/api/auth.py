"""How the API knows who is calling: `Authorization: Bearer cxm_...`, and what the token may do.

Every endpoint is token-only (no session, so no CSRF surface); the schema and its docs page are
public. A token acts as its user, so every view reads through responses.access as the console
does; the scopes only narrow that further.
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions, throttling
from rest_framework.request import Request

from responses.api import tokens
from responses.models import ApiToken

READ_METHODS = {"GET", "HEAD", "OPTIONS"}


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


class TokenRateThrottle(throttling.SimpleRateThrottle):
    """Per token, at settings.CXM_API_RATE (e.g. "600/min"), read on each request so it can be
    changed in tests and without a restart of DRF's settings cache."""

    scope = "token"

    def get_rate(self) -> str:
        from django.conf import settings

        return settings.CXM_API_RATE

    def allow_request(self, request, view) -> bool:
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_cache_key(self, request: Request, view) -> str | None:
        token = request.auth
        if not isinstance(token, ApiToken):
            return None  # unauthenticated requests fail before any work; not counted per token
        return f"cxm.api.throttle.{token.pk}"
