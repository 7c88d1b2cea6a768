"""What every console view shares: login and console access, the Content-Security-Policy,
parsing form or JSON bodies, and answering JSON to `fetch` and a redirect to plain forms."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme

from responses import access
from responses.exceptions import CaseNotFound, InvalidRequest, NotAllowed
from responses.models import AgentProfile, ConsoleEvent

# No inline script or style anywhere in the console: customer text that slipped past escaping
# still could not run. Websockets go to the same host.
CSP = ("default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; style-src 'self'; "
       "script-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
MAX_ID = 2**62  # larger ids cannot exist; refusing them early keeps the database from overflowing


def with_csp(view: Callable) -> Callable:
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        response = view(request, *args, **kwargs)
        if "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = CSP
        return response

    return wrapper


def console_view(*methods: str) -> Callable:
    """Login (else a redirect to the login page), console access (else 403), allowed methods
    (else 405), and the CSP header on the answer."""
    allowed = methods or ("GET",)

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not access.can_use_console(request.user):
                if wants_json(request) or request.method != "GET":
                    raise NotAllowed("you have no access to the console")
                return render(request, "console/no_access.html", status=403)
            if request.method not in allowed and not (request.method == "HEAD" and "GET" in allowed):
                response = JsonResponse({"error": "method_not_allowed", "reason": f"use {' or '.join(allowed)}"},
                                        status=405)
                response["Allow"] = ", ".join(allowed)
                return response
            return view(request, *args, **kwargs)

        return with_csp(wrapper)

    return decorate


def wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "") or request.content_type == "application/json"


def body(request: HttpRequest) -> dict:
    """The fields of a JSON object body or of a form post."""
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise InvalidRequest("the body is not valid JSON")
        if not isinstance(data, dict):
            raise InvalidRequest("the body must be a JSON object")
        return data
    data: dict = {key: request.POST.get(key) for key in request.POST}
    for key in request.POST:
        values = request.POST.getlist(key)
        if len(values) > 1 or key == "ids":
            data[key] = values
    return data


def text(data: dict, name: str, *, required: bool = True, max_chars: int = 10_000) -> str:
    value = data.get(name, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be text")
    if required and not value.strip():
        raise InvalidRequest(f"{name} is required")
    if len(value) > max_chars:
        raise InvalidRequest(f"{name} is {len(value)} characters; at most {max_chars}")
    return value


def flag(data: dict, name: str) -> bool:
    value = data.get(name)
    if isinstance(value, str):
        return value.lower() in ("1", "true", "on", "yes")
    return value is True


def object_id(value, what: str = "case") -> int:
    """A path or body id; anything that is not a plausible id is simply not found."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        number = int(value)
    else:
        raise CaseNotFound(f"no such {what}")
    if not 0 < number < MAX_ID:
        raise CaseNotFound(f"no such {what}")
    return number


def done(request: HttpRequest, data: dict, fallback: str, *, status: int = 200) -> HttpResponse:
    """JSON for fetch; for a plain form, back to the page it came from (or `fallback`)."""
    if wants_json(request):
        return JsonResponse({"ok": True, **data}, status=status)
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()):
        target = fallback
    return redirect(target)


def last_event_id(user) -> int:
    """The newest event the user's console could be sent: the page shows everything up to it."""
    teams = access.team_ids(user)
    newest = (ConsoleEvent.objects.filter(Q(team_id__in=teams) | Q(user_id=user.pk))
              .order_by("-id").values_list("id", flat=True).first())
    return newest or 0


def console_context(request: HttpRequest) -> dict:
    user = request.user
    role = access.role_of(user)
    profile = AgentProfile.objects.filter(user=user).only("presence").first()
    return {
        "role": role,
        "is_supervisor": role in access.SUPERVISE_ROLES,
        "can_reply": role in access.REPLY_ROLES,
        "presence": profile.presence if profile else "",
        "has_profile": profile is not None,
        "last_event_id": last_event_id(user),
    }
