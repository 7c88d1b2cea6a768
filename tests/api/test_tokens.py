"""Tokens: stored hashed, shown once, and a token that is revoked, expired, out of scope or of
another team gets 401, 403 or 404, and nothing changes. The console pages that make and revoke them."""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from responses.api import tokens
from responses.models import ApiToken, Case, Note, Reply
from tests.api.conftest import Api, token_for
from tests.responses.conftest import open_case

pytestmark = pytest.mark.django_db


def test_token_stored_hashed_with_prefix(agent_a):
    made = tokens.create_token(agent_a, "crm", ["cases:read"])
    assert made.secret.startswith("cxm_") and len(made.secret) == 4 + 43
    row = ApiToken.objects.get(pk=made.token.pk)
    assert row.digest == hashlib.sha256(made.secret.encode()).hexdigest()
    assert made.secret not in str(row.__dict__)
    assert made.secret[4:12] == row.prefix


def test_token_authenticates_and_records_last_use(agent_a, connector_a):
    open_case(connector_a)
    made = tokens.create_token(agent_a, "crm", ["cases:read"])
    response = Api(made.secret).get("/cases")
    assert response.status_code == 200
    assert len(response.json()["results"]) == 1
    assert ApiToken.objects.get(pk=made.token.pk).last_used_at is not None


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer cxm_nope", "Bearer not-a-cxm-token", "Basic abc"])
def test_token_missing_or_unknown_is_401(agent_a, header):
    client = Client()
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.get("/api/v1/cases", **extra)
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_token_revoked_is_401_and_nothing_changes(agent_a, connector_a):
    case = open_case(connector_a)
    made = tokens.create_token(agent_a, "crm", ["cases:read", "cases:write"])
    tokens.revoke_token(agent_a, made.token.pk)
    api = Api(made.secret)
    assert api.get("/cases").status_code == 401
    assert api.post(f"/cases/{case.pk}/notes", {"text": "hello"}).status_code == 401
    assert api.patch(f"/cases/{case.pk}", {"status": "resolved"}).status_code == 401
    assert not Note.objects.exists()
    assert Case.objects.get(pk=case.pk).status == case.status


def test_token_expired_is_401(agent_a, connector_a):
    case = open_case(connector_a)
    made = tokens.create_token(agent_a, "crm", ["cases:write"], days=1)
    ApiToken.objects.filter(pk=made.token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = Api(made.secret).post(f"/cases/{case.pk}/replies", {"text": "hi"})
    assert response.status_code == 401
    assert not Reply.objects.exists()


def test_token_of_inactive_user_is_401(agent_a):
    secret = token_for(agent_a, ["cases:read"])
    agent_a.is_active = False
    agent_a.save()
    assert Api(secret).get("/cases").status_code == 401


def test_token_out_of_scope_is_403_and_nothing_changes(agent_a, connector_a):
    case = open_case(connector_a)
    reader = Api(token_for(agent_a, ["cases:read"]))
    assert reader.get(f"/cases/{case.pk}").status_code == 200
    response = reader.post(f"/cases/{case.pk}/notes", {"text": "hello"})
    assert response.status_code == 403
    assert "cases:write" in response.json()["detail"]
    assert reader.patch(f"/cases/{case.pk}", {"status": "resolved"}).status_code == 403
    assert not Note.objects.exists()
    assert Case.objects.get(pk=case.pk).status == case.status
    # Another area's scope does not open this one.
    assert Api(token_for(agent_a, ["messages:read"])).get("/cases").status_code == 403


def test_token_foreign_team_sees_nothing_and_changes_nothing(agent_b, connector_a, connector_b):
    case = open_case(connector_a)
    api = Api(token_for(agent_b))
    assert api.get("/cases").json()["results"] == []
    assert api.get(f"/cases/{case.pk}").status_code == 404
    assert api.patch(f"/cases/{case.pk}", {"status": "resolved", "tags": ["x"]}).status_code == 404
    assert api.post(f"/cases/{case.pk}/replies", {"text": "hi"}).status_code == 404
    assert api.post(f"/cases/{case.pk}/notes", {"text": "hi"}).status_code == 404
    case.refresh_from_db()
    assert case.status != "resolved" and case.tags == []
    assert not Reply.objects.exists() and not Note.objects.exists()


def test_token_admin_scopes_only_for_admins(agent_a, admin_user):
    with pytest.raises(Exception, match="admin scopes"):
        tokens.create_token(agent_a, "x", ["admin:read"])
    assert tokens.create_token(admin_user, "x", ["admin:read"]).token.pk


def test_token_never_in_logs_or_error_bodies(agent_a, connector_a, caplog):
    case = open_case(connector_a)
    secret = token_for(agent_a, ["cases:read"])
    api = Api(secret)
    with caplog.at_level(logging.DEBUG):
        bodies = [api.get("/cases/999999").content, api.post(f"/cases/{case.pk}/notes", {"text": "x"}).content,
                  Api(secret + "x").get("/cases").content]
    assert all(secret.encode() not in body for body in bodies)
    assert secret not in caplog.text
    # Django's error reports (DEBUG pages, admin mails) hide the Authorization header.
    from django.test import RequestFactory
    from django.views.debug import SafeExceptionReporterFilter

    request = RequestFactory().get("/api/v1/cases", HTTP_AUTHORIZATION=f"Bearer {secret}")
    meta = SafeExceptionReporterFilter().get_safe_request_meta(request)
    assert secret not in str(meta)


# --- Console pages ---------------------------------------------------------------------------------


def _login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_token_page_shows_new_token_once(agent_a):
    client = _login(agent_a)
    response = client.post("/console/tokens/", {"name": "CRM sync", "scopes": ["cases:read", "messages:read"],
                                                "days": "30"})
    assert response.status_code == 201
    assert "no-store" in response["Cache-Control"]
    row = ApiToken.objects.get(user=agent_a)
    page = response.content.decode()
    secret = page.split('<code class="secret">')[1].split("</code>")[0]
    assert hashlib.sha256(secret.encode()).hexdigest() == row.digest
    assert row.scopes == ["cases:read", "messages:read"]
    listing = client.get("/console/tokens/").content.decode()
    assert "CRM sync" in listing and secret not in listing and f"cxm_{row.prefix}" in listing


def test_token_page_refuses_bad_scopes(agent_a):
    response = _login(agent_a).post("/console/tokens/", {"name": "x", "scopes": ["admin:write"]})
    assert response.status_code == 400
    assert not ApiToken.objects.exists()


def test_token_revoke_by_owner_or_admin_only(agent_a, agent_a2, admin_user):
    made = tokens.create_token(agent_a, "mine", ["cases:read"])
    other = _login(agent_a2).post(f"/console/tokens/{made.token.pk}/revoke/", HTTP_ACCEPT="application/json")
    assert other.status_code == 404
    assert ApiToken.objects.get(pk=made.token.pk).revoked_at is None
    assert made.token.name not in _login(agent_a2).get("/console/tokens/").content.decode()
    owner = _login(agent_a).post(f"/console/tokens/{made.token.pk}/revoke/", HTTP_ACCEPT="application/json")
    assert owner.status_code == 200
    assert Api(made.secret).get("/cases").status_code == 401
    second = tokens.create_token(agent_a, "second", ["cases:read"])
    assert _login(admin_user).post(f"/console/tokens/{second.token.pk}/revoke/").status_code == 302
    assert ApiToken.objects.get(pk=second.token.pk).revoked_at is not None


def test_token_service_token_only_by_admin(agent_a, agent_a2, admin_user):
    refused = _login(agent_a).post("/console/tokens/", {"name": "bot", "scopes": ["cases:read"],
                                                        "user": str(agent_a2.pk)}, HTTP_ACCEPT="application/json")
    assert refused.status_code == 403
    made = _login(admin_user).post("/console/tokens/", {"name": "bot", "scopes": ["cases:read"],
                                                        "user": str(agent_a2.pk)})
    assert made.status_code == 201
    row = ApiToken.objects.get(name="bot")
    assert row.user == agent_a2 and row.kind == ApiToken.Kind.SERVICE and row.created_by == admin_user
