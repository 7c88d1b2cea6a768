"""The API's personas are the console's (tests/responses/conftest.py): an agent, a supervisor and a
brand manager on team A, an outsider agent on team B, an admin. Each gets a token here."""

from __future__ import annotations

import pytest
from django.test import Client

from responses.api import tokens
from tests.responses.conftest import (  # noqa: F401 (fixtures)
    admin_user,
    agent_a,
    agent_a2,
    agent_b,
    connector_a,
    connector_b,
    manager_a,
    settings_no_classify,
    supervisor_a,
    team_a,
    team_b,
)
from tests.responses.test_proactive import graph, whatsapp  # noqa: F401 (the fake Graph API and its WhatsApp source)

ALL_SCOPES = list(tokens.SCOPES)


def token_for(user, scopes=None, **kwargs) -> str:
    """A token acting as `user` with `scopes` (default: every scope the user's role may hold)."""
    from responses import access
    from responses.models import Role

    if scopes is None:
        scopes = [s for s in ALL_SCOPES if access.role_of(user) == Role.ADMIN or not s.startswith("admin:")]
    return tokens.create_token(user, "test", scopes, **kwargs).secret


class Api:
    """A test client that sends a token and JSON: api.get("/cases"), api.post(path, {...})."""

    def __init__(self, secret: str | None) -> None:
        self.client = Client()
        self.secret = secret

    def _headers(self, headers: dict | None) -> dict:
        out = {"HTTP_AUTHORIZATION": f"Bearer {self.secret}"} if self.secret else {}
        for name, value in (headers or {}).items():
            out["HTTP_" + name.upper().replace("-", "_")] = value
        return out

    def get(self, path: str, params: dict | None = None, headers: dict | None = None):
        return self.client.get("/api/v1" + path, params or {}, **self._headers(headers))

    def send(self, method: str, path: str, data=None, headers: dict | None = None):
        call = getattr(self.client, method.lower())
        return call("/api/v1" + path, data if data is not None else {}, content_type="application/json",
                    **self._headers(headers))

    def post(self, path: str, data=None, headers: dict | None = None):
        return self.send("POST", path, data, headers)

    def patch(self, path: str, data=None, headers: dict | None = None):
        return self.send("PATCH", path, data, headers)


@pytest.fixture
def api_for():
    def make(user, scopes=None, **kwargs) -> Api:
        return Api(token_for(user, scopes, **kwargs))

    return make
