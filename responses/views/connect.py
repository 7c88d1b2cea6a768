"""Connecting and running a source, for admins, inside the product: pick a kind, fill in the form
its connector class generates, see the webhook URL and the secrets to paste into the provider,
connect through OAuth, test the connection, edit, and backfill from a date.

Credentials are write-only here: no page or answer ever carries a saved secret. A secret CXM
generates is shown once, on the page right after it is made; until then it waits in the session
encrypted with the credentials keys (listening.crypto), as does the OAuth flow's PKCE verifier, so
a session store that leaks (a database dump, a Redis snapshot) leaks no secret. Every change is
audited.
"""

from __future__ import annotations

import logging
from datetime import datetime, time
from urllib.parse import urlsplit

from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_date

from cxm.exceptions import CXMError
from listening import audit, backfill, crypto, oauth
from listening.connectors import UnknownConnectorKind, connector_kinds, get_connector_class
from listening.crypto import CredentialsUnreadable
from listening.exceptions import ProviderError
from listening.models import Connector
from responses import access
from responses.connect_forms import connect_form, new_secret
from responses.exceptions import CaseNotFound, InvalidRequest
from responses.views.base import CSP, body, console_context, console_view, text, wants_json
from responses.views.connectors import client_ip, connector_or_404, connector_row, json_row, recent_audit

log = logging.getLogger(__name__)

SHOWN_ONCE = "cxm_new_secrets"  # session key: {connector_id: {name: value}}, encrypted
TESTED = "cxm_connection_test"  # session key: {connector_id: the test's result}, shown once
OAUTH_PENDING = "cxm_oauth_pending"  # session key: the flow's state and PKCE verifier, encrypted


def keep_secret(request: HttpRequest, key: str, value: dict) -> None:
    """Keep `value` in the session as ciphertext only."""
    request.session[key] = crypto.encrypt_json(value)


def take_secret(request: HttpRequest, key: str) -> dict | None:
    """Pop what keep_secret kept; None when nothing is there or no configured key reads it (the
    keys were rotated meanwhile: the admin starts again)."""
    token = request.session.pop(key, None)
    if not isinstance(token, str) or not token:
        return None
    try:
        return crypto.decrypt_json(token)
    except CredentialsUnreadable:
        return None


def _kind_class(kind: str):
    try:
        return get_connector_class(kind)
    except UnknownConnectorKind:
        raise CaseNotFound("no such source kind") from None


@console_view("GET")
def connect_choose(request: HttpRequest) -> HttpResponse:
    access.require_admin(request.user)
    kinds = []
    for kind in connector_kinds():
        cls = get_connector_class(kind)
        kinds.append({"kind": kind, "label": cls.label, "doc": cls.description,
                      "webhook": cls.receives_webhooks, "polls": cls.polls, "replies": cls.can_reply,
                      "oauth": cls.oauth is not None, "backfill": cls.supports_backfill})
    return render(request, "console/connect_choose.html", {**console_context(request), "kinds": kinds})


@console_view("GET", "POST")
def connect_new(request: HttpRequest, kind: str) -> HttpResponse:
    access.require_admin(request.user)
    cls = _kind_class(kind)
    form = connect_form(cls, data=body(request) if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        connector = Connector(kind=kind)
        made = form.apply(connector)
        with transaction.atomic():
            connector.save()
            audit.record(request.user, "created", connector, {}, audit.snapshot(connector), ip=client_ip(request))
        _show_once(request, connector, made)
        return redirect("console:connector", connector_id=connector.pk)
    status = 400 if form.is_bound else 200
    return render(request, "console/connect_form.html",
                  {**console_context(request), "form": form, "cls": cls, "kind": kind}, status=status)


@console_view("GET", "POST")
def connector_detail(request: HttpRequest, connector_id: str) -> HttpResponse:
    access.require_admin(request.user)
    connector = connector_or_404(connector_id)
    if request.method == "GET" and wants_json(request):
        return JsonResponse({"connector": _public(request, connector)})
    cls = _kind_class(connector.kind)
    form = connect_form(cls, connector, data=body(request) if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        with audit.changing(connector.pk, request.user, "changed", ip=client_ip(request)) as connector:
            made = form.apply(connector)
        _show_once(request, connector, made)
        return redirect("console:connector", connector_id=connector.pk)
    return _detail_page(request, connector, form, status=400 if form.is_bound else 200)


def _detail_page(request: HttpRequest, connector: Connector, form=None, *, test=None, status=200) -> HttpResponse:
    cls = _kind_class(connector.kind)
    form = form or connect_form(cls, connector)
    shown = (take_secret(request, SHOWN_ONCE) or {}).get(str(connector.pk), {})
    test = test or request.session.pop(TESTED, {}).get(str(connector.pk))
    saved = _saved_names(connector)
    context = {**console_context(request), "connector": connector, "cls": cls, "form": form,
               "row": connector_row(request, connector, cls), "shown": shown, "test": test,
               "missing": [name for name in cls.required_credentials if name not in saved], "saved": sorted(saved),
               "audit": recent_audit(connector), "today": timezone.localdate().isoformat()}
    response = render(request, "console/connector_detail.html", context, status=status)
    origin = _oauth_origin(connector, cls)
    if origin:  # "Connect with …" posts here and is redirected there: CSP checks redirects too
        response["Content-Security-Policy"] = CSP.replace("form-action 'self'", f"form-action 'self' {origin}")
    return response


def _oauth_origin(connector: Connector, cls) -> str:
    if cls.oauth is None:
        return ""
    try:
        parts = urlsplit(oauth.endpoint(cls.oauth.authorize_url, {**cls.config_defaults, **connector.config}))
    except oauth.OAuthFailed:
        return ""
    return f"{parts.scheme}://{parts.netloc}"


def _saved_names(connector: Connector) -> set[str]:
    try:
        return set(connector.credentials)
    except CredentialsUnreadable:
        return set()


def _public(request: HttpRequest, connector: Connector) -> dict:
    row = connector_row(request, connector, _kind_class(connector.kind))
    return {**json_row(row), "backfill": backfill.progress(connector.backfill)}


def _show_once(request: HttpRequest, connector: Connector, made: dict[str, str]) -> None:
    if made:
        keep_secret(request, SHOWN_ONCE, {str(connector.pk): made})


@console_view("POST")
def connector_test(request: HttpRequest, connector_id: str) -> HttpResponse:
    """Call the provider with the saved credentials and say what it answered. Stores nothing."""
    access.require_admin(request.user)
    connector = connector_or_404(connector_id)
    result = check(connector)
    if wants_json(request):
        return JsonResponse(result)
    return _detail_page(request, connector, test=result)


def check(connector: Connector) -> dict:
    try:
        message = connector.get_backend().check_connection()
    except (ProviderError, CXMError, CredentialsUnreadable, UnknownConnectorKind) as exc:
        return {"ok": False, "message": str(exc) or type(exc).__name__}
    except Exception as exc:  # a provider answering nonsense must not become a 500 here
        log.exception("testing connector %s failed", connector.pk)
        return {"ok": False, "message": f"the test failed: {type(exc).__name__}"}
    return {"ok": True, "message": message}


@console_view("POST")
def connector_secret(request: HttpRequest, connector_id: str, name: str) -> HttpResponse:
    """Make a new shared secret (the old one stops working), shown once."""
    access.require_admin(request.user)
    connector = connector_or_404(connector_id)
    if name not in _kind_class(connector.kind).generated_credentials:
        raise InvalidRequest(f"{name} is not a secret CXM generates")
    made = {name: new_secret()}
    with audit.changing(connector.pk, request.user, "secret_rotated", ip=client_ip(request)) as connector:
        connector.credentials = {**connector.credentials, **made}
    _show_once(request, connector, made)
    return redirect("console:connector", connector_id=connector.pk)


@console_view("POST")
def connector_oauth(request: HttpRequest, connector_id: str) -> HttpResponse:
    """Send the admin to the provider's consent page."""
    access.require_admin(request.user)
    connector = connector_or_404(connector_id)
    callback = request.build_absolute_uri(reverse("console:oauth-callback"))
    url, pending = oauth.begin(connector.get_backend(), callback)
    keep_secret(request, OAUTH_PENDING, pending)
    return redirect(url)


@console_view("GET")
def oauth_callback(request: HttpRequest) -> HttpResponse:
    """Where the provider sends the admin back: exchange the code and save the tokens."""
    access.require_admin(request.user)
    pending = take_secret(request, OAUTH_PENDING)
    query = {key: request.GET.get(key, "") for key in ("state", "code", "error", "error_description")}
    code = oauth.check_return(pending, query)
    connector = connector_or_404(str(pending["connector_id"]))
    tokens, settled = oauth.finish(connector.get_backend(), pending, code)
    with audit.changing(connector.pk, request.user, "oauth_connected", ip=client_ip(request),
                        always=True) as connector:
        connector.credentials = {**connector.credentials, **tokens}
        if settled:
            connector.config = _kind_class(connector.kind).validate_config({**connector.config, **settled})
    request.session[TESTED] = {str(connector.pk): check(connector)}
    return redirect("console:connector", connector_id=connector.pk)


@console_view("POST")
def connector_backfill(request: HttpRequest, connector_id: str) -> HttpResponse:
    access.require_admin(request.user)
    connector = connector_or_404(connector_id)
    try:
        day = parse_date(text(body(request), "since", max_chars=10))
    except ValueError:
        day = None
    if day is None:
        raise InvalidRequest("since must be a date like 2026-11-01")
    since = timezone.make_aware(datetime.combine(day, time.min))
    with transaction.atomic():
        connector = Connector.objects.select_for_update().get(pk=connector.pk)
        job = backfill.start(connector, since, actor=request.user, ip=client_ip(request))
    if wants_json(request):
        return JsonResponse({"ok": True, "backfill": backfill.progress(job)}, status=202)
    return redirect("console:connector", connector_id=connector.pk)
