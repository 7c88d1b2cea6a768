"""Errors are application/problem+json with a reason; rate limits answer 429 with Retry-After;
the schema is OpenAPI 3.1 and names every route."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from tests.api.conftest import Api, token_for
from tests.api.test_rate_limit import _mid_window
from tests.responses.conftest import open_case

pytestmark = pytest.mark.django_db
PROBLEM_FIELDS = {"type", "title", "status", "detail", "reason"}


def _assert_problem(response, status: int, reason: str | None = None) -> dict:
    assert response.status_code == status
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert set(body) >= PROBLEM_FIELDS
    assert body["status"] == status and body["type"].endswith(body["reason"])
    if reason:
        assert body["reason"] == reason
    return body


def test_problem_shapes(agent_a, connector_a):
    case = open_case(connector_a)
    api = Api(token_for(agent_a))
    _assert_problem(api.get("/cases/123456789"), 404, "not_found")
    _assert_problem(api.get("/cases/1.5"), 404, "not_found")
    _assert_problem(api.get("/no/such/route"), 404, "not_found")
    _assert_problem(api.get("/cases", {"status": "nonsense"}), 400, "invalid")
    _assert_problem(api.get("/cases", {"opened_after": "yesterday"}), 400, "invalid")
    body = _assert_problem(api.post(f"/cases/{case.pk}/notes", {"text": ""}), 400)
    assert "text" in body["errors"]
    _assert_problem(api.send("DELETE", f"/cases/{case.pk}"), 405)
    _assert_problem(api.patch(f"/cases/{case.pk}", {"status": "nope"}), 400)
    # A domain error raised by an action keeps its status and reason.
    _assert_problem(api.patch(f"/cases/{case.pk}", {"tags": ["bad/tag"]}), 400, "invalid")
    _assert_problem(Client().get("/api/v1/cases", HTTP_AUTHORIZATION="Bearer cxm_x"), 401)
    _assert_problem(api.get("/insight/panels/sentiment"), 403, "forbidden")
    _assert_problem(api.post(f"/cases/{case.pk}/replies", "not an object"), 400)


def test_rate_limit_429_with_retry_after(agent_a, agent_a2, settings):
    settings.CXM_API_RATE = "3/min"
    _mid_window()  # a fixed window: the four requests must fall in one
    api = Api(token_for(agent_a, ["cases:read"]))
    assert [api.get("/cases").status_code for _ in range(3)] == [200, 200, 200]
    limited = api.get("/cases")
    body = _assert_problem(limited, 429, "throttled")
    assert 1 <= int(limited["Retry-After"]) <= 60
    assert "second" in body["detail"]
    # Per token: another token (even of a teammate) is not held back.
    assert Api(token_for(agent_a2, ["cases:read"])).get("/cases").status_code == 200


def _api_routes() -> set[str]:
    resolver = next(p for p in get_resolver().url_patterns
                    if isinstance(p, URLResolver) and str(p.pattern) == "api/v1/")
    out = set()

    def walk(patterns, prefix=""):
        for p in patterns:
            if isinstance(p, URLResolver):
                walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern):
                out.add(prefix + str(p.pattern))

    walk(resolver.url_patterns)
    return out


def test_schema_is_openapi_31_with_every_route():
    from drf_spectacular.validation import validate_schema as validate

    response = Client().get("/api/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"] == "3.1.0"
    validate(schema)
    paths = set(schema["paths"])
    routes = {r for r in _api_routes() if r not in ("schema", "docs/", "^.*$")}
    assert len(routes) >= 20
    for route in routes:
        # "cases/(?P<pk>[^/.]+)/notes$" or "insight/panels/<str:name>" -> "/api/v1/cases/{id}/notes"


        path = route.lstrip("^").rstrip("$")
        path = re.sub(r"\(\?P<pk>[^)]*\)", "{id}", path)
        path = re.sub(r"<\w+:pk>", "{id}", path)  # drf-spectacular names a pk "id"
        path = re.sub(r"<\w+:(\w+)>", r"{\1}", path)
        assert "/api/v1/" + path in paths, path
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_docs_page_served_offline():
    page = Client().get("/api/v1/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "swagger-ui" in html and "cdn" not in html.lower()
    assert "/static/drf_spectacular_sidecar/" in html
