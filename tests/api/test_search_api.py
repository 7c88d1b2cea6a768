"""GET /api/v1/search: the console's search for a token, with the same scope, filters and bad-input
answers (400 with a reason, never a 500)."""

from __future__ import annotations

import pytest

from responses.models import Case, CaseStatus
from tests.api.conftest import Api, token_for
from tests.responses.conftest import open_case

SECRET = "quetzal"


@pytest.fixture
def found(connector_a, connector_b):
    mine = open_case(connector_a, f"My {SECRET} order never came", author="cust-a", name="Ana Alves")
    resolved = open_case(connector_a, f"The {SECRET} arrived, thanks", author="cust-a2", name="Ben Brook")
    Case.objects.filter(pk=resolved.pk).update(status=CaseStatus.RESOLVED)
    theirs = open_case(connector_b, f"Team B's {SECRET} question", author="cust-b", name="Cy Team-B")
    return {"mine": mine, "resolved": resolved, "theirs": theirs}


def _cases(data) -> set[int]:
    return {g["case"] for g in data["groups"]}


def test_search_api_agent_finds_own_teams_matches_with_filters(agent_a, found):
    api = Api(token_for(agent_a))
    data = api.get("/search", {"q": SECRET}).json()
    assert _cases(data) == {found["mine"].pk, found["resolved"].pk}
    assert data["count"] == 2 and data["count_label"] == "2"
    hit = data["groups"][0]["hits"][0]
    assert hit["matches"] == [SECRET] and SECRET in hit["snippet"]
    assert _cases(api.get("/search", {"q": SECRET, "status": "active"}).json()) == {found["mine"].pk}
    assert _cases(api.get("/search", {"status": "resolved"}).json()) == {found["resolved"].pk}  # filters alone


def test_search_api_outsider_sees_nothing_of_team_a(agent_b, found):
    response = Api(token_for(agent_b)).get("/search", {"q": SECRET})
    assert response.status_code == 200
    assert _cases(response.json()) == {found["theirs"].pk}
    assert "Ana Alves" not in response.content.decode() and "never came" not in response.content.decode()


@pytest.mark.parametrize(("params", "reason"), [
    ({"q": "x" * 10_000}, "at most 500"),
    ({"q": "-only -excluded"}, "not only words to leave out"),
    ({"q": "a", "lane": "nonsense"}, "lane must be one of"),
    ({"q": "a", "since": "yesterday"}, "since must be a date"),
    ({"q": "a", "days": "-3"}, "days must be a whole number"),
    ({"q": "a", "limit": "500"}, "limit must be from 1 to 100"),
    ({"q": "a", "limit": "ten"}, "limit must be a positive whole number"),
])
def test_search_api_bad_input_is_a_400_with_the_reason(agent_a, found, params, reason):
    response = Api(token_for(agent_a)).get("/search", params)
    assert response.status_code == 400, response.content
    assert reason in response.content.decode()


def test_search_api_hostile_text_is_just_text(agent_a, found):
    api = Api(token_for(agent_a))
    for text in ['"unclosed', "a\x00b", "x:* & !y | (z", "' OR 1=1 --", "NEAR(a b) OR", "🦜 " + SECRET]:
        response = api.get("/search", {"q": text})
        assert response.status_code == 200, (text, response.content)
    # A symbol is not a word: it is dropped, and the rest is searched.
    assert _cases(api.get("/search", {"q": "🦜 " + SECRET}).json()) == {found["mine"].pk, found["resolved"].pk}


def test_search_api_is_in_the_schema():
    from django.test import Client

    schema = Client().get("/api/v1/schema").content.decode()  # YAML
    assert "/api/v1/search:" in schema and "operationId: search\n" in schema
