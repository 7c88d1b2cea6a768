"""The client side of an OAuth 2 authorization-code flow, driven by a connector's OAuthSpec the way
the connect page does it (RFC 6749 section 4.1, PKCE per RFC 7636), so tests can prove each spec
and each fake provider's authorize/token endpoints fit together."""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any
from urllib.parse import urlencode

import httpx

from listening.connectors.base import BaseConnector


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge)."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize_url(backend: BaseConnector, redirect_uri: str, state: str, challenge: str = "") -> str:
    spec = backend.oauth
    assert spec is not None
    params = {"response_type": "code", "client_id": backend.credentials[spec.client_id_field],
              "redirect_uri": redirect_uri, "scope": spec.scope_separator.join(spec.scopes), "state": state,
              **dict(spec.extra_params)}
    if spec.pkce:
        params.update(code_challenge=challenge, code_challenge_method="S256")
    return f"{spec.authorize_url.format(**backend.config)}?{urlencode(params)}"


def exchange_code(backend: BaseConnector, code: str, redirect_uri: str, verifier: str = "") -> dict[str, Any]:
    """POST the code to the spec's token URL, authenticating the app as the spec says."""
    spec = backend.oauth
    assert spec is not None
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    if spec.pkce:
        form["code_verifier"] = verifier
    client = (backend.credentials[spec.client_id_field], backend.credentials.get(spec.client_secret_field) or "")
    auth = client if spec.client_auth == "basic" else None
    if spec.client_auth == "body":
        form.update(client_id=client[0], client_secret=client[1])
    response = httpx.post(spec.token_url.format(**backend.config), data=form, auth=auth,
                          headers={"User-Agent": "server:cxm-tests:0.1"}, timeout=5)
    return response.json()
