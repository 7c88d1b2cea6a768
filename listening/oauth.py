"""Connecting a source through the provider's OAuth 2 authorization-code flow (RFC 6749), with
PKCE (RFC 7636) where the provider takes it.

`begin` gives the provider's authorize URL to send the admin to, and what to keep in their
session; `finish` checks what the provider sent back, exchanges the code at the token endpoint
and returns the credentials to save (through the connector's `oauth_credentials`). The state is
random, single-use, bound to the admin's session and one connector, and lasts ten minutes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

from cxm.exceptions import CXMError
from listening import http
from listening.connectors.base import BaseConnector, OAuthSpec
from listening.exceptions import ProviderError

STATE_TTL_SECONDS = 600
MAX_CODE_CHARS = 4096


class OAuthFailed(CXMError):
    status_code = 400
    code = "oauth_failed"


def spec_of(backend: BaseConnector) -> OAuthSpec:
    if backend.oauth is None:
        raise OAuthFailed(f"{backend.label} is not connected with OAuth: paste its credentials instead")
    return backend.oauth


def begin(backend: BaseConnector, redirect_uri: str) -> tuple[str, dict[str, Any]]:
    """The authorize URL, and the pending flow to keep in the admin's session."""
    spec = spec_of(backend)
    client_id = str(backend.credentials.get(spec.client_id_field) or "")
    if not client_id:
        raise OAuthFailed(f"save the app's {spec.client_id_field} first, then connect")
    state = secrets.token_urlsafe(32)
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "state": state}
    if spec.scopes:
        params["scope"] = spec.scope_separator.join(spec.scopes)
    verifier = ""
    if spec.pkce:
        verifier = secrets.token_urlsafe(64)
        params["code_challenge"] = challenge(verifier)
        params["code_challenge_method"] = "S256"
    params.update(dict(spec.extra_params))
    authorize = endpoint(spec.authorize_url, backend.config)
    url = f"{authorize}{'&' if urlsplit(authorize).query else '?'}{urlencode(params)}"
    pending = {"state": state, "verifier": verifier, "connector_id": backend.row.pk,
               "redirect_uri": redirect_uri, "created": time.time()}
    return url, pending


def challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def check_return(pending: dict[str, Any] | None, query: dict[str, str]) -> str:
    """The authorization code the provider returned, once the state proves the flow is ours."""
    state = query.get("state", "")
    if not pending or not state or not hmac.compare_digest(str(pending.get("state", "")).encode(), state.encode()):
        raise OAuthFailed("this sign-in was not started here (or was already used): start again from the source's page")
    if time.time() - float(pending.get("created", 0)) > STATE_TTL_SECONDS:
        raise OAuthFailed("this sign-in took longer than ten minutes: start again")
    if query.get("error"):
        detail = query.get("error_description", "")[:200]
        raise OAuthFailed(f"the provider refused: {query['error'][:80]}{': ' + detail if detail else ''}")
    code = query.get("code", "")
    if not code or len(code) > MAX_CODE_CHARS:
        raise OAuthFailed("the provider sent no authorization code back")
    return code


def finish(backend: BaseConnector, pending: dict[str, Any], code: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Exchange the code for tokens: the credentials to add to the connector's, and the config
    the answer settles."""
    spec = spec_of(backend)
    client_id = str(backend.credentials.get(spec.client_id_field) or "")
    client_secret = str(backend.credentials.get(spec.client_secret_field) or "")
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": pending["redirect_uri"]}
    if pending.get("verifier"):
        form["code_verifier"] = pending["verifier"]
    kwargs: dict[str, Any] = {"data": form, "headers": {"Accept": "application/json"}}
    if spec.client_auth == "basic":  # an installed app has no secret: basic auth with an empty one
        kwargs["auth"] = (client_id, client_secret)
    else:
        form["client_id"] = client_id
        if client_secret:
            form["client_secret"] = client_secret
    url = endpoint(spec.token_url, backend.config)
    try:
        response = http.request("POST", url, error_mapper=_token_error, **kwargs)
    except ProviderError as exc:
        raise OAuthFailed(f"the token exchange failed: {exc.reason}") from None
    token = http.json_or_none(response)
    if not isinstance(token, dict) or token.get("ok") is False or not token.get("access_token"):
        error = token.get("error") if isinstance(token, dict) else "not JSON"
        raise OAuthFailed(f"the token endpoint gave no access token ({str(error)[:120]})")
    try:
        return backend.oauth_credentials(token), backend.oauth_config(token)
    except (ProviderError, CXMError) as exc:
        raise OAuthFailed(f"the provider's answer is not usable: {exc}") from None


def _token_error(response, safe_url: str) -> ProviderError:
    body = http.json_or_none(response)
    if isinstance(body, dict) and body.get("error"):
        words = f"{body['error']}: {body.get('error_description', '')}".strip(": ")
        return http.status_error(response, safe_url, f"{safe_url} answered {response.status_code}: {words[:200]}")
    return http.status_error(response, safe_url)


def endpoint(template: str, config: dict[str, Any]) -> str:
    """A spec URL with its {config_key} parts filled in from the connector's config."""
    values = {key: str(value).rstrip("/") for key, value in config.items() if isinstance(value, str)}
    try:
        url = template.format_map(values)
    except (KeyError, ValueError, IndexError):
        raise OAuthFailed("the source's settings are incomplete: save them before connecting") from None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OAuthFailed("the source's settings give no valid address for its OAuth pages")
    return url
