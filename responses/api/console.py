"""The console's API tokens page: list, make (the token is shown on the answer to that POST and
never again) and revoke. A user sees and revokes their own tokens; an admin everyone's, and makes
service tokens for other accounts."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache

from responses import access
from responses.api import tokens
from responses.exceptions import InvalidRequest
from responses.models import ApiToken, Role
from responses.views.base import body, console_context, console_view, done, object_id, text


def _page(request: HttpRequest, *, made: tokens.Made | None = None, error: str = "", status: int = 200):
    is_admin = access.role_of(request.user) == Role.ADMIN
    context = {
        **console_context(request), "tokens": tokens.visible_tokens(request.user)[:500], "made": made,
        "error": error, "areas": tokens.AREAS, "is_admin": is_admin,
        "accounts": tokens.service_accounts() if is_admin else [],
    }
    return render(request, "console/api_tokens.html", context, status=status)


@never_cache
@console_view("GET", "POST")
def token_list(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return _page(request)
    data = body(request)
    scopes = data.get("scopes") or []
    scopes = [scopes] if isinstance(scopes, str) else scopes
    days = text(data, "days", required=False, max_chars=4) or "90"
    if not days.isdigit():
        return _page(request, error="days must be a number", status=400)
    user, kind = request.user, ApiToken.Kind.PERSONAL
    account = text(data, "user", required=False, max_chars=19)
    if account and account != str(request.user.pk):
        access.require_admin(request.user)
        user = get_user_model().objects.filter(pk=object_id(account, "user"), is_active=True).first()
        if user is None:
            return _page(request, error="no such account", status=400)
        kind = ApiToken.Kind.SERVICE
    try:
        made = tokens.create_token(request.user, text(data, "name", required=False, max_chars=120), scopes,
                                   days=int(days), user=user, kind=kind)
    except InvalidRequest as exc:
        return _page(request, error=exc.reason, status=400)
    # never_cache marks the page no-store: it holds the token, so no cache and no back button.
    return _page(request, made=made, status=201)


@console_view("POST")
def token_revoke(request: HttpRequest, token_id: str) -> HttpResponse:
    token = tokens.revoke_token(request.user, object_id(token_id, "token"))
    return done(request, {"token": {"id": token.pk, "revoked_at": token.revoked_at.isoformat()}},
                reverse("console:tokens"))
