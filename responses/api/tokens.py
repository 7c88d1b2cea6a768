"""API tokens: made (shown once), found by their hash, revoked. The console pages and the
authentication class call these; nothing else reads ApiToken rows.

A token is "cxm_" followed by 43 URL-safe characters (32 random bytes). Only its SHA-256 is kept,
so a leaked database does not leak usable tokens; the recognisable prefix lets secret scanners
(and people) tell a CXM token when they see one.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from responses import access
from responses.exceptions import CaseNotFound, InvalidRequest, NotAllowed
from responses.models import ApiToken, Role

PREFIX = "cxm_"
AREAS = ("messages", "cases", "customers", "learning", "insight", "admin")
SCOPES = tuple(f"{area}:{level}" for area in AREAS for level in ("read", "write"))
MAX_DAYS = 366
# last_used_at is written at most this often per token: a busy integration must not turn every
# read into a write.
TOUCH_EVERY = timedelta(seconds=60)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class Made:
    token: ApiToken
    secret: str  # shown once, never stored


def clean_scopes(scopes) -> list[str]:
    if isinstance(scopes, str):
        scopes = scopes.split()
    if not isinstance(scopes, list | tuple) or not scopes:
        raise InvalidRequest("choose at least one scope")
    chosen = sorted({str(s).strip() for s in scopes})
    unknown = [s for s in chosen if s not in SCOPES]
    if unknown:
        raise InvalidRequest(f"unknown scope {unknown[0][:40]!r}; scopes are area:read or area:write, "
                             f"areas {', '.join(AREAS)}")
    return chosen


def create_token(by, name: str, scopes, *, days: int | None = 90, user=None,
                 kind: str = ApiToken.Kind.PERSONAL) -> Made:
    """A new token acting as `user` (default: `by`). Anyone with console access makes personal
    tokens for themselves; only admins make tokens for someone else (service tokens) and tokens
    with admin scopes are for admins only (a token never grants more than its user has anyway)."""
    if not access.can_use_console(by):
        raise NotAllowed("you have no console access")
    user = user or by
    if user.pk != by.pk or kind == ApiToken.Kind.SERVICE:
        access.require_admin(by)
    if not access.can_use_console(user):
        raise InvalidRequest("that user has no console role; give them one first")
    name = (name or "").strip()
    if not name or len(name) > 120:
        raise InvalidRequest("name the token (up to 120 characters): what will use it?")
    chosen = clean_scopes(scopes)
    if any(s.startswith("admin:") for s in chosen) and access.role_of(user) != Role.ADMIN:
        raise InvalidRequest("admin scopes are for admins' tokens")
    if days is not None and not (1 <= int(days) <= MAX_DAYS):
        raise InvalidRequest(f"a token lasts 1 to {MAX_DAYS} days")
    secret = PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, created_by=by, kind=kind, name=name, prefix=secret[len(PREFIX):len(PREFIX) + 8],
        digest=digest(secret), scopes=chosen,
        expires_at=timezone.now() + timedelta(days=int(days)) if days is not None else None,
    )
    return Made(token, secret)


def find_live(secret: str) -> ApiToken | None:
    """The live token with this secret, or None (unknown, revoked, expired, or its user inactive)."""
    if not secret.startswith(PREFIX) or len(secret) > 200:
        return None
    token = ApiToken.objects.select_related("user").filter(digest=digest(secret)).first()
    if token is None or not token.is_live or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > TOUCH_EVERY:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def visible_tokens(user):
    """An admin sees every token; anyone else their own."""
    tokens = ApiToken.objects.select_related("user", "created_by", "revoked_by")
    if access.role_of(user) == Role.ADMIN:
        return tokens
    return tokens.filter(user=user)


def revoke_token(by, token_id) -> ApiToken:
    """Revoke at once (the next request with it is a 401). Its owner or an admin may."""
    try:
        token_id = int(token_id)
    except (TypeError, ValueError):
        raise CaseNotFound("no such token")
    with transaction.atomic():
        token = visible_tokens(by).select_for_update(of=("self",)).filter(pk=token_id).first()
        if token is None:
            raise CaseNotFound("no such token")
        if token.revoked_at is None:
            token.revoked_at, token.revoked_by = timezone.now(), by
            token.save(update_fields=["revoked_at", "revoked_by"])
    return token


def service_accounts():
    """Users an admin may make a service token for: anyone with a console role."""
    return (get_user_model().objects.filter(is_active=True)
            .filter(access.admin_q() | Q(cxm_profile__isnull=False)).distinct().order_by("username"))
