"""Schemathesis against the API, from the API's own schema, through the Django WSGI app with an
admin's token (every scope, every route): no answer is a 5xx, and every answer (4xx included)
conforms to the schema (status documented, content type, body against its schema). Bounded: a
few examples per operation (CXM_FUZZ_EXAMPLES raises it in a nightly run)."""

from __future__ import annotations

import os

import hypothesis
import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, settings as hsettings
from schemathesis.generation.modes import GenerationMode

from insight.models import Alert
from tests.api.conftest import token_for
from tests.responses.conftest import open_case

# No 5xx, and every answer as documented. Not "positive data acceptance": a schema-valid body
# may still be refused by the domain with a 4xx and a reason (an unknown lane, a tag with a slash).
C = schemathesis.checks
CHECKS = [C.not_a_server_error, C.status_code_conformance, C.content_type_conformance,
          C.response_schema_conformance, C.response_headers_conformance]
EXAMPLES = int(os.environ.get("CXM_FUZZ_EXAMPLES", "20"))


@pytest.fixture
def fuzz_world(team_a, connector_a, agent_a, admin_user, settings):
    settings.CXM_API_RATE = "1000000/min"
    case = open_case(connector_a, "Fuzz me", email="f@example.com", email_verified=True)
    now = timezone.now()
    Alert.objects.create(team=team_a, kind="volume", dimension="team", key="team-a", label="x",
                         window_start=now, window_end=now, observed=9, expected=1, score=5)
    return case


@pytest.mark.django_db
@pytest.mark.timeout(600)
def test_fuzz_api_no_5xx_and_answers_conform(fuzz_world, admin_user):
    raw = Client().get("/api/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    app = get_wsgi_application()
    # As Django's test client does: a request must not close the test's database connection.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        _fuzz(raw, app, admin_user)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def _fuzz(raw: dict, app, admin_user) -> None:
    schema = schemathesis.openapi.from_dict(raw)
    headers = {"Authorization": f"Bearer {token_for(admin_user)}"}
    failures, calls = [], 0
    for result in schema.get_all_operations():
        operation = result.ok()
        # Valid data, then data that breaks the schema (wrong types, missing fields, junk ids).
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @hsettings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                       suppress_health_check=list(HealthCheck),
                       phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate])
            @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
            def run(case):
                nonlocal calls
                calls += 1
                response = case.call(app=app, headers=headers)
                case.validate_response(response, checks=CHECKS, headers=headers)

            try:
                run()
            except Exception as exc:  # collected, so one run reports every failing operation
                failures.append(f"{operation.label} ({mode}): {str(exc)[:800]}")
    assert calls >= 10 * len(raw["paths"])
    assert not failures, "\n\n".join(failures[:10])
